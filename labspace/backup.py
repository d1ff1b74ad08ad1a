"""``labspace backup``: a consistent copy of everything Labspace keeps, made
while the hub runs (``labspace restore`` puts it back: :mod:`labspace.restore`).

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

No database URL (it may hold a password) is printed; ``pg_dump`` gets the
password in its environment, never on its command line. Putting a backup back
is :mod:`labspace.restore`.
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
from .state import SECRETS_DIR, USERS_DIR, State, private_umask

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
