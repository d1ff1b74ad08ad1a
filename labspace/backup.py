"""``labspace backup`` and ``labspace restore``: a consistent copy of everything
Labspace keeps, made while the hub runs, and put back on a fresh machine.

A backup is a folder (0700, its files 0600) holding:

- ``databases/``: the hub's database and each enabled service's (accounting,
  catalog, data): SQLite copied with SQLite's online backup API (a consistent
  snapshot while the hub writes), PostgreSQL dumped with ``pg_dump`` (custom
  format, one snapshot). Services that share one PostgreSQL database share one
  dump. The accounting outbox (``accounting-outbox.sqlite``) is copied FIRST:
  an event delivered between the outbox's copy and the accounting database's is
  in both, and the service drops duplicates by event id, so none is lost;
- ``secrets/``: the generated secrets (admin password, proxy token, cookie and
  service secrets, the data service's credentials key), modes kept;
- ``tls/``: Caddy's certificates and ACME account, when ``hub.tls`` made any;
- ``settings/``: the settings file;
- ``homes.tar.gz``: the users' homes under ``data_dir/users``, with ``--homes``;
- ``manifest.json``: Labspace's version, when, each database's Alembic
  revision, and every file with its sha256 and mode.

Restore verifies every checksum first, then refuses (one line each) while a hub
runs on the target ``data_dir``, when ``data_dir`` or a target database is not
empty (unless ``force``), and when a database's kind (SQLite, PostgreSQL)
differs between the backup and the settings. No database URL (it may hold a
password) is printed; ``pg_dump``/``pg_restore`` get the password in their
environment, never on their command line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .state import SECRETS_DIR, USERS_DIR, State, StateError, private_umask

if TYPE_CHECKING:
    from .settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
OUTBOX_FILE = "accounting-outbox.sqlite"  # services.accounting.outbox.FILE_NAME
SERVICES = ("accounting", "catalog", "data")
TLS_DIR = "tls"
HOMES_FILE = "homes.tar.gz"
PG_TIMEOUT = 600  # seconds for one pg_dump / pg_restore


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line with the fix."""


# -- what there is to copy ------------------------------------------------------


def databases(settings: Settings) -> dict[str, tuple[str, str]]:
    """``name -> (setting key, SQLAlchemy URL)`` of the hub's database and each
    enabled service's."""
    state = State(settings)
    out = {"hub": ("hub.db_url", state.db_url)}
    for name in SERVICES:
        if settings.get(f"{name}.enabled"):
            out[name] = (f"{name}.db_url", state.service_db_url(name))
    return out


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, None for any other database."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def kind(url: str) -> str:
    return "sqlite" if sqlite_path(url) else "postgresql"


def revision(name: str, url: str, key: str) -> str | None:
    """The Alembic revision stored in database ``name`` at ``url`` (None: none)."""
    from .versions import VERSION_TABLES, stored

    return stored(url, VERSION_TABLES[name], key)[0]


# -- files ----------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` while others write
    it (SQLite's online backup API), opened read-only: never made or changed."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise BackupError(
            f"{source}: cannot be copied: {e} (run as the user that runs Labspace; a "
            "damaged database: restore an older backup)"
        ) from None
    os.chmod(target, 0o600)


def copy_tree(source: Path, target: Path) -> list[Path]:
    """Copy the regular files under ``source`` (modes kept, folders 0700; no
    sockets, no symlinks) to ``target``; returns the files written."""
    written = []
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        os.chmod(dest, stat.S_IMODE(path.stat().st_mode) & 0o700)
        written.append(dest)
    return written


def file_entry(path: Path) -> dict[str, str]:
    return {"sha256": sha256(path), "mode": f"{stat.S_IMODE(path.stat().st_mode):04o}"}


# -- PostgreSQL -----------------------------------------------------------------


def pg_connection(url: str) -> tuple[str, dict[str, str]]:
    """``(libpq URL without the password, environment with PGPASSWORD)``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_run(tool: str, key: str, args: list[str], env: dict[str, str]) -> None:
    exe = shutil.which(tool)
    if exe is None:
        raise BackupError(f"{key}: {tool} not found (apt install postgresql-client)")
    try:
        done = subprocess.run(
            [exe, *args], env=env, capture_output=True, text=True, timeout=PG_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackupError(
            f"{key}: {tool} took more than {PG_TIMEOUT}s (check the server)"
        ) from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise BackupError(f"{key}: {tool} failed: {why}")


def pg_dump(url: str, target: Path, key: str) -> None:
    dbname, env = pg_connection(url)
    pg_run("pg_dump", key, ["--format=custom", "--no-owner", f"--file={target}", dbname], env)
    os.chmod(target, 0o600)


def pg_restore(url: str, source: Path, key: str, clean: bool) -> None:
    dbname, env = pg_connection(url)
    args = ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    if clean:
        args += ["--clean", "--if-exists"]
    pg_run("pg_restore", key, [*args, f"--dbname={dbname}", str(source)], env)


def pg_tables(url: str, key: str) -> int:
    """How many tables the database at ``url`` holds (its search path's schemas)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = ANY (current_schemas(false))"
                )
            ).scalar_one()
    except SQLAlchemyError as e:
        raise BackupError(
            f"{key}: the database cannot be reached ({type(e).__name__}: check {key} "
            "and that the database exists)"
        ) from None
    finally:
        engine.dispose()


# -- backup ---------------------------------------------------------------------


def backup(settings: Settings, to: Path, homes: bool = False) -> tuple[Path, list[str]]:
    """Write a backup of the Labspace with ``settings`` into a new folder under
    ``to``; returns ``(folder, one line per part)``."""
    private_umask()
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise BackupError(f"data_dir: {data_dir} does not exist (nothing to back up)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        to.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = new_folder(to, f"labspace-backup-{stamp}")
    except OSError as e:
        raise BackupError(
            f"--to: {to} cannot be written: {e.strerror} (choose another folder)"
        ) from None
    try:
        return folder, write_backup(settings, folder, homes)
    except (BackupError, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)  # no half backup to mistake for one
        if isinstance(e, BackupError):
            raise
        raise BackupError(
            f"{e.filename or data_dir}: {e.strerror} (run labspace backup as the user that "
            "runs Labspace)"
        ) from None


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name`` made (0700), or ``name-2``, ``name-3``... when taken (two
    backups in one second)."""
    for n in range(1, 100):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(errno.EEXIST, "a hundred backups this second", str(parent))


def write_backup(settings: Settings, folder: Path, homes: bool) -> list[str]:
    data_dir = settings.data_dir
    lines: list[str] = []
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "labspace": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "databases": {},
    }
    dbdir = folder / "databases"
    dbdir.mkdir(mode=0o700)
    outbox = data_dir / OUTBOX_FILE
    if outbox.exists():  # before the accounting database: see the module's docstring
        copy_sqlite(outbox, dbdir / OUTBOX_FILE)
        manifest["outbox"] = f"databases/{OUTBOX_FILE}"
        lines.append(f"outbox: databases/{OUTBOX_FILE}")
    manifest["databases"] = back_up_databases(settings, dbdir, lines)
    secrets = copy_tree(data_dir / SECRETS_DIR, folder / SECRETS_DIR)
    lines.append(f"secrets: {SECRETS_DIR}/ ({len(secrets)} files)")
    if (data_dir / TLS_DIR).is_dir():
        tls = copy_tree(data_dir / TLS_DIR, folder / TLS_DIR)
        lines.append(f"tls: {TLS_DIR}/ ({len(tls)} files: Caddy's certificates and account)")
    if settings.source and settings.source.exists():
        (folder / "settings").mkdir(mode=0o700)
        shutil.copyfile(settings.source, folder / "settings" / settings.source.name)
        os.chmod(folder / "settings" / settings.source.name, 0o600)
        manifest["settings"] = f"settings/{settings.source.name}"
        lines.append(f"settings: settings/{settings.source.name}")
    if homes:
        count = archive_homes(data_dir / USERS_DIR, folder / HOMES_FILE)
        manifest["homes"] = HOMES_FILE
        lines.append(f"homes: {HOMES_FILE} ({count} users)")
    elsewhere = homes_elsewhere(settings)
    if elsewhere:
        lines.append(f"homes: {elsewhere} are not in data_dir: not copied (docs/how-to/backup.md)")
    manifest["files"] = {
        str(p.relative_to(folder)): file_entry(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(folder / MANIFEST, 0o600)
    lines.append(f"manifest: {MANIFEST} ({len(manifest['files'])} files with sha256)")
    return lines


def back_up_databases(settings: Settings, dbdir: Path, lines: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dumped: dict[str, str] = {}  # URL -> file: services sharing one database share a dump
    for name, (key, url) in databases(settings).items():
        path = sqlite_path(url)
        entry: dict[str, Any] = {"kind": kind(url), "revision": revision(name, url, key)}
        if path is not None:
            if not path.exists():
                lines.append(f"{name}: no database yet (skipped)")
                continue
            entry["file"] = f"databases/{name}.sqlite"
            copy_sqlite(path, dbdir / f"{name}.sqlite")
            how = "SQLite online backup"
        elif url in dumped:
            entry["file"] = dumped[url]
            how = "shares the dump above"
        else:
            entry["file"] = dumped[url] = f"databases/{name}.pgdump"
            pg_dump(url, dbdir / f"{name}.pgdump", key)
            how = "pg_dump, custom format"
        out[name] = entry
        lines.append(f"{name}: {entry['file']} ({how}, revision {entry['revision'] or 'none'})")
    return out


def homes_elsewhere(settings: Settings) -> str | None:
    """Where homes live when not under ``data_dir/users`` (the backend keeps them)."""
    backend = settings.get("backend.type")
    if backend == "docker" and settings.get("backend.docker.home") == "volume":
        return "Docker volumes labspace-home-<user>"
    if backend == "kubernetes":
        return "PersistentVolumeClaims home-<user>"
    return None


def archive_homes(users: Path, target: Path) -> int:
    """The users' homes as a gzip tar (owners and modes kept); how many homes."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        count = 0
        if users.is_dir():
            for home in sorted(users.iterdir()):
                tar.add(home, arcname=home.name)
                count += 1
    return count


# -- restore --------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, every file checked against its sha256."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(f"BACKUP: {folder} is not a folder (name a labspace-backup-... folder)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"BACKUP: {folder} has no {MANIFEST} (not a Labspace backup)") from None
    except (OSError, ValueError) as e:
        raise BackupError(f"BACKUP: {path} cannot be read ({e}): the backup is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(
            f"BACKUP: {path} is not a format {FORMAT} manifest (made by another Labspace: "
            "restore it with that version)"
        )
    for name, entry in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise BackupError(f"BACKUP: {name} is missing (the backup is incomplete: use another)")
        if sha256(file) != entry.get("sha256"):
            raise BackupError(
                f"BACKUP: {name} does not match its sha256 in {MANIFEST} (the backup is "
                "damaged: use another)"
            )
    return manifest


def hub_pid(data_dir: Path) -> int | None:
    """The PID of a hub running on ``data_dir`` (its ``jupyterhub.pid``), if any:
    a live process that is a hub (``labspace`` or ``jupyterhub`` in its command
    line), not another one that got the PID of a hub that crashed."""
    try:
        pid = int((data_dir / "jupyterhub.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc to ask: a live process is taken for the hub
    return pid if b"labspace" in cmdline or b"jupyterhub" in cmdline else None


def plan(manifest: dict[str, Any], settings: Settings, force: bool) -> dict[str, tuple[str, str]]:
    """Where each database of the backup goes (``name -> (key, url)``), after
    every refusal: a running hub, a non-empty data_dir or database, a kind that
    differs."""
    data_dir = settings.data_dir
    pid = hub_pid(data_dir)
    if pid is not None:
        raise BackupError(
            f"data_dir: a hub runs on {data_dir} (PID {pid} in jupyterhub.pid): stop it first "
            "(Ctrl-C, or systemctl stop labspace), then restore"
        )
    if not force and data_dir.is_dir() and any(data_dir.iterdir()):
        raise BackupError(
            f"data_dir: {data_dir} is not empty (restore into an empty data_dir, or pass "
            "--force to overwrite what the backup holds)"
        )
    targets = databases(settings)
    out = {}
    for name, entry in manifest.get("databases", {}).items():
        if name not in targets:
            raise BackupError(
                f"{name}.enabled: the backup holds the {name} database and the settings turn "
                f"{name} off (set {name}.enabled: true)"
            )
        key, url = targets[name]
        if kind(url) != entry["kind"]:
            raise BackupError(
                f"{key}: the backup holds a {entry['kind']} database and the settings name "
                f"{kind(url)} (restore with a {entry['kind']} {key}; move it afterwards)"
            )
        path = sqlite_path(url)
        if path is None and not force and pg_tables(url, key):
            raise BackupError(
                f"{key}: the database is not empty (restore into an empty database, or pass "
                "--force to replace its tables)"
            )
        if path is not None and not force and path.exists() and path.stat().st_size:
            raise BackupError(f"{key}: {path} exists (remove it, or pass --force)")
        out[name] = (key, url)
    return out


def restore(
    folder: Path, settings: Settings, force: bool = False, manifest: dict[str, Any] | None = None
) -> list[str]:
    """Put the backup in ``folder`` back for ``settings``; one line per part
    (``manifest``: read and checked already, else read here)."""
    private_umask()
    manifest = manifest or read_manifest(folder)
    targets = plan(manifest, settings, force)
    try:
        return put_back(folder, manifest, settings, targets, force)
    except StateError as e:
        raise BackupError(str(e)) from None
    except OSError as e:
        raise BackupError(
            f"{e.filename or settings.data_dir}: {e.strerror} (run labspace restore as the "
            "user that will run Labspace, with data_dir writable)"
        ) from None


def put_back(
    folder: Path,
    manifest: dict[str, Any],
    settings: Settings,
    targets: dict[str, tuple[str, str]],
    force: bool,
) -> list[str]:
    data_dir = settings.data_dir
    lines = [f"checked: {len(manifest.get('files', {}))} files match their sha256"]
    State(settings).prepare()  # data_dir 0700, secrets/ 0700, users/
    restored: set[str] = set()
    for name, (key, url) in targets.items():
        entry = manifest["databases"][name]
        source = folder / entry["file"]
        path = sqlite_path(url)
        if path is not None:
            put_sqlite(source, path)
        elif entry["file"] in restored:
            lines.append(f"{name}: restored with the dump it shares")
            continue
        else:
            pg_restore(url, source, key, clean=force)
            restored.add(entry["file"])
        lines.append(f"{name}: {entry['file']} (revision {entry.get('revision') or 'none'})")
    if manifest.get("outbox"):
        put_sqlite(folder / manifest["outbox"], data_dir / OUTBOX_FILE)
        lines.append(f"outbox: {data_dir / OUTBOX_FILE}")
    for part in (SECRETS_DIR, TLS_DIR):
        if (folder / part).is_dir():
            count = len(copy_tree(folder / part, data_dir / part))
            lines.append(f"{part}: {data_dir / part} ({count} files, modes kept)")
    if manifest.get("homes"):
        count = extract_homes(folder / manifest["homes"], data_dir / USERS_DIR)
        lines.append(f"homes: {data_dir / USERS_DIR} ({count} users)")
    return lines


def put_sqlite(source: Path, target: Path) -> None:
    """Copy a backed-up SQLite file to ``target`` (0600), in one rename, with
    the journal files of what it replaces removed."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(partial, target)


def extract_homes(archive: Path, users: Path) -> int:
    users.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        tar.extractall(users, filter="tar")  # owners kept when run as root; no paths outside
    return len({m.name.split("/")[0] for m in members})


def restore_settings(folder: Path, manifest_settings: str | None, config: Path) -> str | None:
    """On a fresh machine (no settings file at ``config``), the backup's
    settings file goes there; returns the line saying so."""
    if config.exists() or not manifest_settings:
        return None
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / manifest_settings, config)
    os.chmod(config, 0o600)
    return f"settings: {config} (from the backup)"
