"""``labspace restore``: put a backup (:mod:`labspace.backup`) back, on this
machine or a fresh one.

It verifies every checksum first, then refuses (one line each) while a hub runs
on the target ``data_dir``, when ``data_dir`` or a target database is not empty
(unless ``force``), and when a database's kind (SQLite, PostgreSQL) differs
between the backup and the settings. No database URL (it may hold a password) is
printed; ``pg_restore`` gets the password in its environment, never on its
command line.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backup import (
    FORMAT,
    MANIFEST,
    OUTBOX_FILE,
    TLS_DIR,
    BackupError,
    copy_tree,
    databases,
    kind,
    pg_restore,
    pg_tables,
    sha256,
    sqlite_path,
)
from .state import SECRETS_DIR, USERS_DIR, State, StateError, private_umask, running_pid

if TYPE_CHECKING:
    from .settings import Settings


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
    return running_pid(data_dir / "jupyterhub.pid", "labspace", "jupyterhub")


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
