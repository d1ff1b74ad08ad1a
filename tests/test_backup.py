"""``labspace backup`` / ``labspace restore`` on real SQLite files and a real
PostgreSQL cluster (the hub itself is in tests/e2e/test_backup_hub.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

LABSPACE = [sys.executable, "-m", "labspace.cli"]
VERSION_TABLES = {
    "jupyterhub": "alembic_version",
    "accounting": "alembic_version",
    "catalog": "catalog_alembic_version",
    "data": "data_alembic_version",
}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSPACE_")}
    return subprocess.run(
        [*LABSPACE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def write_settings(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labspace.yaml"
    path.write_text(
        "data_dir: ./data\n"
        "accounting:\n  enabled: true\n"
        "catalog:\n  enabled: true\n"
        "data:\n  enabled: true\n" + extra
    )
    return path


def make_db(path: Path, table: str, revision: str, rows: int = 3) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"CREATE TABLE {table} (version_num TEXT)")
    db.execute(f"INSERT INTO {table} VALUES (?)", (revision,))  # noqa: S608 (the test's names)
    db.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO things (name) VALUES (?)", [(f"t{i}",) for i in range(rows)])
    db.commit()
    db.close()


def make_data_dir(data: Path) -> None:
    """A data_dir as a hub with its services leaves it: databases, secrets, outbox."""
    data.mkdir(mode=0o700)
    (data / "secrets").mkdir(mode=0o700)
    for name, table in VERSION_TABLES.items():
        make_db(data / f"{name}.sqlite", table, f"rev-{name}")
    make_db(data / "accounting-outbox.sqlite", "events", "e1")
    for name in ("admin-password", "cookie-secret", "data-credentials-key"):
        (data / "secrets" / name).write_text(f"{name}-value\n")
        os.chmod(data / "secrets" / name, 0o600)
    home = data / "users" / "ada"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("hello\n")


def rows(path: Path) -> list:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, name FROM things ORDER BY id").fetchall()
    finally:
        db.close()


def backup_folder(result: subprocess.CompletedProcess) -> Path:
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    return Path(first.split(" to ", 1)[1].rstrip(":"))


def test_backup_then_restore_sqlite(tmp_path):
    old = tmp_path / "old"
    write_settings(old)
    make_data_dir(old / "data")
    # a writer holds a transaction open on the hub database: the copy is the last commit
    writer = sqlite3.connect(old / "data" / "jupyterhub.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO things (name) VALUES ('uncommitted')")
    try:
        made = run("backup", "--homes", "--to", str(tmp_path / "backups"), cwd=old)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    folder = backup_folder(made)
    assert folder.parent == tmp_path / "backups"
    out = made.stdout
    for part in ("outbox:", "hub: databases/hub.sqlite", "accounting:", "catalog:", "data:"):
        assert part in out
    assert "secrets: secrets/ (3 files)" in out
    assert "homes: homes.tar.gz (1 users)" in out
    assert "settings: settings/labspace.yaml" in out
    assert rows(folder / "databases" / "hub.sqlite") == [(1, "t0"), (2, "t1"), (3, "t2")]

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["databases"]["hub"]["revision"] == "rev-jupyterhub"
    assert manifest["databases"]["catalog"]["revision"] == "rev-catalog"
    assert manifest["labspace"] and manifest["created"]
    assert manifest["files"]["secrets/admin-password"]["mode"] == "0600"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path

    # a fresh machine: no settings file, no data_dir
    new = tmp_path / "new"
    new.mkdir()
    done = run("restore", str(folder), cwd=new)
    assert done.returncode == 0, done.stderr
    assert "files match their sha256" in done.stdout
    assert f"settings: {new / 'labspace.yaml'} (from the backup)" in done.stdout
    data = new / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in VERSION_TABLES:
        assert rows(data / f"{name}.sqlite") == rows(old / "data" / f"{name}.sqlite")
        assert stat.S_IMODE((data / f"{name}.sqlite").stat().st_mode) == 0o600
    assert rows(data / "accounting-outbox.sqlite") == rows(
        old / "data" / "accounting-outbox.sqlite"
    )
    secret = data / "secrets" / "admin-password"
    assert secret.read_text() == "admin-password-value\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (data / "users" / "ada" / "notes.txt").read_text() == "hello\n"

    # restoring again refuses: data_dir is no longer empty; --force overwrites
    again = run("restore", str(folder), cwd=new)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: data_dir: ")
    assert "is not empty" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert run("restore", str(folder), "--force", cwd=new).returncode == 0


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("edit", "databases/hub.sqlite does not match its sha256"),
        ("remove", "databases/hub.sqlite is missing"),
        ("manifest", "has no manifest.json (not a Labspace backup)"),
    ],
    ids=["changed-file", "missing-file", "no-manifest"],
)
def test_restore_refuses_a_damaged_backup(tmp_path, damage, expected):
    old = tmp_path / "old"
    write_settings(old)
    make_data_dir(old / "data")
    folder = backup_folder(run("backup", cwd=old))
    if damage == "edit":
        with (folder / "databases" / "hub.sqlite").open("ab") as f:
            f.write(b"x")
    elif damage == "remove":
        (folder / "databases" / "hub.sqlite").unlink()
    else:
        (folder / "manifest.json").unlink()
    new = tmp_path / "new"
    write_settings(new)
    done = run("restore", str(folder), cwd=new)
    assert done.returncode == 1
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (new / "data").exists()


def restore_with_pid_of(command: list[str], folder: Path, cwd: Path):
    """``labspace restore`` while jupyterhub.pid names a running ``command``."""
    proc = subprocess.Popen(command)
    try:
        (cwd / "data" / "jupyterhub.pid").write_text(f"{proc.pid}\n")
        return run("restore", str(folder), "--force", cwd=cwd), proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def test_restore_refusals(tmp_path):
    old = tmp_path / "old"
    write_settings(old)
    make_data_dir(old / "data")
    folder = backup_folder(run("backup", cwd=old))

    # a hub running on the target data_dir (a process named jupyterhub stands for it)
    running = tmp_path / "running"
    write_settings(running)
    (running / "data").mkdir()
    hub_like = [sys.executable, "-c", "import time; time.sleep(120)", "jupyterhub"]
    done, pid = restore_with_pid_of(hub_like, folder, running)
    assert done.returncode == 1
    assert f"a hub runs on {running / 'data'} (PID {pid}" in done.stderr
    assert "stop it first" in done.stderr
    # a hub that crashed, its PID now another program's (a sleep): no hub runs
    done, _ = restore_with_pid_of(["sleep", "120"], folder, running)
    assert done.returncode == 0, done.stderr

    # the settings turn a service off whose database the backup holds
    off = tmp_path / "off"
    off.mkdir()
    (off / "labspace.yaml").write_text("data_dir: ./data\naccounting:\n  enabled: false\n")
    done = run("restore", str(folder), cwd=off)
    assert done.returncode == 1
    assert "accounting.enabled: the backup holds the accounting database" in done.stderr

    # the settings name PostgreSQL where the backup holds SQLite
    pg = tmp_path / "pg"
    write_settings(pg, "hub:\n  db_url: postgresql://u:secret-pw@127.0.0.1:1/hub\n")
    done = run("restore", str(folder), cwd=pg)
    assert done.returncode == 1
    assert "hub.db_url: the backup holds a sqlite database and the settings name postgresql" in (
        done.stderr
    )
    assert "secret-pw" not in done.stderr
    assert not (pg / "data").exists()


def test_backup_errors_are_one_line(tmp_path):
    write_settings(tmp_path)
    done = run("backup", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"error: data_dir: {tmp_path / 'data'} does not exist (nothing to back up)"
    )
    make_data_dir(tmp_path / "data")
    (tmp_path / "file").write_text("")
    done = run("backup", "--to", str(tmp_path / "file"), cwd=tmp_path)
    assert done.returncode == 2  # click's usage error
    assert "Invalid value for '--to'" in done.stderr and "is a file" in done.stderr
    done = run("backup", "--to", str(tmp_path / "file" / "sub"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --to: {tmp_path / 'file' / 'sub'} cannot be written")
    (tmp_path / "data" / "catalog.sqlite").write_bytes(b"not a database" * 100)
    done = run("backup", "--to", str(tmp_path / "bk"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {tmp_path / 'data' / 'catalog.sqlite'}: cannot be ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "bk").iterdir()) == []  # no half backup left
    done = run("restore", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 1
    assert "is not a folder" in done.stderr


def test_sqlite_copy_while_writers_commit(tmp_path):
    """The online backup API copies a database others keep writing: the copy
    is a valid database holding a prefix of the commits."""
    from labspace.backup import copy_sqlite

    path = tmp_path / "busy.sqlite"
    make_db(path, "alembic_version", "r1", rows=0)
    stop = threading.Event()

    def write():
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        i = 0
        while not stop.is_set() and i < 20000:
            db.execute("INSERT INTO things (name) VALUES (?)", (f"n{i}",))
            i += 1
        db.close()

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.05)  # the writer has begun
    try:
        copies = []
        for n in range(5):
            copy_sqlite(path, tmp_path / f"copy{n}.sqlite")
            copies.append(rows(tmp_path / f"copy{n}.sqlite"))
    finally:
        stop.set()
        thread.join(timeout=60)
    for n, copied in enumerate(copies):
        check = sqlite3.connect(tmp_path / f"copy{n}.sqlite")
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        check.close()
        assert copied == [(i + 1, f"n{i}") for i in range(len(copied))]
    assert len(copies[-1]) > len(copies[0]) or len(copies[0]) > 0  # copied while it grew


def test_postgresql_round_trip(tmp_path, pg_cluster):
    """pg_dump of a hub database in PostgreSQL, pg_restore into a new one."""
    import psycopg

    source = pg_cluster.create_database("backup_src")
    plain = source.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as c:
        c.execute("CREATE TABLE alembic_version (version_num TEXT)")
        c.execute("INSERT INTO alembic_version VALUES ('pg-rev')")
        c.execute("CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
    old = tmp_path / "old"
    old.mkdir()
    # accounting shares the hub's database (its tables apart): one dump for both
    shared = f"hub:\n  db_url: {plain}\naccounting:\n  db_url: {plain}\n"
    (old / "labspace.yaml").write_text(f"data_dir: ./data\n{shared}")
    (old / "data" / "secrets").mkdir(parents=True)
    made = run("backup", cwd=old)
    folder = backup_folder(made)
    assert "hub: databases/hub.pgdump (pg_dump, custom format, revision pg-rev)" in made.stdout
    assert "accounting: databases/hub.pgdump (shares the dump above" in made.stdout
    assert pg_cluster.password not in made.stdout + made.stderr
    assert stat.S_IMODE((folder / "databases" / "hub.pgdump").stat().st_mode) == 0o600

    target = pg_cluster.create_database("backup_dst").replace("+psycopg", "")
    new = tmp_path / "new"
    new.mkdir()
    shared = f"hub:\n  db_url: {target}\naccounting:\n  db_url: {target}\n"
    (new / "labspace.yaml").write_text(f"data_dir: ./data\n{shared}")
    done = run("restore", str(folder), cwd=new)
    assert done.returncode == 0, done.stderr
    assert "hub: databases/hub.pgdump (revision pg-rev)" in done.stdout
    assert "accounting: restored with the dump it shares" in done.stdout
    with psycopg.connect(target) as c:
        assert c.execute("SELECT name FROM users ORDER BY id").fetchall() == [("ada",), ("grace",)]
        c.execute("INSERT INTO users (name) VALUES ('later')")

    # the database is no longer empty: refused, then replaced with --force
    (new / "data2").mkdir()
    (new / "labspace.yaml").write_text(f"data_dir: ./data2\n{shared}")
    refused = run("restore", str(folder), cwd=new)
    assert refused.returncode == 1
    assert "hub.db_url: the database is not empty" in refused.stderr
    assert pg_cluster.password not in refused.stderr
    assert run("restore", str(folder), "--force", cwd=new).returncode == 0
    with psycopg.connect(target) as c:
        assert c.execute("SELECT name FROM users ORDER BY id").fetchall() == [("ada",), ("grace",)]


@pytest.mark.parametrize(
    ("backend", "line"),
    [
        ("type: docker\n", "homes: Docker volumes labspace-home-<user> are not in data_dir"),
        ("type: kubernetes\n", "homes: PersistentVolumeClaims home-<user> are not in data_dir"),
        ("type: docker\n  docker:\n    home: bind\n", None),
        ("type: local\n", None),
    ],
    ids=["docker-volume", "kubernetes", "docker-bind", "local"],
)
def test_homes_outside_data_dir_are_named(tmp_path, backend, line):
    from labspace import settings as settings_mod
    from labspace.backup import backup

    config = write_settings(tmp_path, f"backend:\n  {backend}")
    make_data_dir(tmp_path / "data")
    _, lines = backup(settings_mod.load(config), tmp_path / "backups", homes=True)
    said = [ln for ln in lines if ln.startswith("homes: ") and "not in data_dir" in ln]
    assert said == ([f"{line}: not copied (docs/how-to/backup.md)"] if line else [])


def test_the_documented_timer_units_verify(tmp_path, need):
    """docs/how-to/backup.md's service and timer pass ``systemd-analyze verify``
    (its labspace and user replaced by ones this machine has)."""
    import re
    import shutil

    found = shutil.which("systemd-analyze")
    need("systemd-analyze", found is not None, "apt install systemd")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "how-to" / "backup.md").read_text()
    service, timer = re.findall(r"```ini\n(.*?)```", doc, re.S)
    assert "ExecStart=/opt/labspace/.venv/bin/labspace backup --config" in service
    service = service.replace("/opt/labspace/.venv/bin/labspace", shutil.which("true"))
    (tmp_path / "labspace-backup.service").write_text(service.replace("User=labspace", "User=root"))
    (tmp_path / "labspace-backup.timer").write_text(timer)
    done = subprocess.run(
        [found, "verify", *(str(p) for p in sorted(tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr
    # and it can fail: a misspelt key
    (tmp_path / "labspace-backup.timer").write_text(timer.replace("OnCalendar", "OnCalender"))
    done = subprocess.run(
        [found, "verify", str(tmp_path / "labspace-backup.timer")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OnCalender" in done.stdout + done.stderr


def test_two_backups_in_one_second_get_two_folders(tmp_path):
    from labspace.backup import new_folder

    first, second = (new_folder(tmp_path, "labspace-backup-x") for _ in range(2))
    assert (first.name, second.name) == ("labspace-backup-x", "labspace-backup-x-2")
    assert stat.S_IMODE(second.stat().st_mode) == 0o700
