"""``labspace backup`` and ``labspace restore`` (the work is in
:mod:`labspace.backup`); ``labspace.cli`` adds :data:`COMMANDS`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import settings as settings_mod
from .cli_api import err, load_settings, out

_CONFIG = click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file. Default: $LABSPACE_CONFIG, else ./labspace.yaml.",
)


def _fail(e: Exception) -> None:
    err.print(f"error: {e}", markup=False)
    sys.exit(1)


@click.command()
@_CONFIG
@click.option(
    "--to",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder that receives the backup (a new labspace-backup-<time> folder in it). "
    "Default: backups/ next to the settings file.",
)
@click.option("--homes", is_flag=True, help="Also copy the users' homes (data_dir/users).")
def backup(config, to, homes):
    """Back up everything Labspace keeps, while the hub runs.

    The hub's and the services' databases (SQLite online backup, PostgreSQL
    pg_dump), the secrets, the accounting outbox, Caddy's certificates, the
    settings file, the homes with --homes; a manifest with sha256 checksums.
    """
    from .backup import BackupError
    from .backup import backup as make

    settings = load_settings(config)
    target = Path(to) if to else settings.base_dir / "backups"
    try:
        folder, lines = make(settings, target.resolve(), homes=homes)
    except BackupError as e:
        _fail(e)
    out.print(f"Backed up {settings.data_dir} to {folder}:", markup=False)
    for line in lines:
        out.print(f"  {line}", markup=False)


@click.command()
@click.argument("backup_dir", metavar="BACKUP", type=click.Path(file_okay=False))
@_CONFIG
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite a data_dir or databases that are not empty.",
)
def restore(backup_dir, config, force):
    """Restore a backup, on this machine or a new one.

    Into data_dir and the databases the settings name. Checks every file's
    sha256 first. Without a settings file (a fresh machine), the backup's
    settings file is written where --config (or
    $LABSPACE_CONFIG, else ./labspace.yaml) says. Refuses while a hub runs on
    data_dir, and when data_dir or a database is not empty (unless --force).
    """
    from .backup import BackupError
    from .restore import read_manifest, restore_settings
    from .restore import restore as put_back

    folder = Path(backup_dir).resolve()
    try:
        manifest = read_manifest(folder)
        wrote = restore_settings(folder, manifest.get("settings"), settings_mod.config_path(config))
    except BackupError as e:
        _fail(e)
    settings = load_settings(config)
    try:
        lines = put_back(folder, settings, force=force, manifest=manifest)
    except BackupError as e:
        _fail(e)
    out.print(f"Restored {folder} to {settings.data_dir}:", markup=False)
    for line in [wrote, *lines]:
        if line:
            out.print(f"  {line}", markup=False)
    again = f" --config {config}" if config else ""
    out.print(f"Start it with: labspace up{again}", markup=False)


COMMANDS: list = [backup, restore]
