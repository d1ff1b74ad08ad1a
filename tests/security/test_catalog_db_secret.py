"""Issue 10, medium: the catalog's ``db_url`` may carry a password, and the
service environment is readable by every process of the hub's OS user (on the
local backend: every workspace, through ``/proc/<pid>/environ``). The URL lives
in ``data_dir/secrets/catalog-db-url`` (0600); the environment names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_catalog_support import catalog_world, close_world

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def catalog_environments(data_dir: Path) -> list[bytes]:
    """The environment of every catalog service process of the hub on ``data_dir``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"labspace.services.catalog" in cmdline and str(data_dir).encode() in environ:
            found.append(environ)
    return found


def test_db_url_password_is_not_in_the_service_environment(tmp_path, proxy_command, pg_cluster):
    db_url = pg_cluster.create_database("catalog_secret")
    world = catalog_world(tmp_path, proxy_command, db_url=db_url)
    try:
        assert world.catalog("alice", "GET", "apps").status_code == 200
        (environ,) = catalog_environments(world.data_dir)
        assert b"LABSPACE_CATALOG_CONFIG" in environ
        assert pg_cluster.password.encode() not in environ
        kept = world.data_dir / "secrets" / "catalog-db-url"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert pg_cluster.password in kept.read_text()
    finally:
        close_world(world)
