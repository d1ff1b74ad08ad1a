"""Secrets on disk: a real hub with the accounting and catalog services keeps
its state private. ``data_dir`` is 0700 and every database in it (the hub's,
each service's, the accounting outbox) is 0600, whatever the umask of the shell
that ran ``labspace up`` and whatever mode an older start left ``data_dir`` in."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from harness import free_port, wait_for

pytestmark = [pytest.mark.e2e]

DATABASES = ["jupyterhub.sqlite", "accounting.sqlite", "catalog.sqlite", "accounting-outbox.sqlite"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The shell that runs ``labspace up`` lets everyone read what it writes."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_data_dir_and_databases_are_private(hub_factory, hub_settings, open_umask):
    data = Path(hub_settings["data_dir"])
    (data / "secrets").mkdir(parents=True)  # left open by an older start
    data.chmod(0o755)
    (data / "secrets").chmod(0o755)
    hub_settings["accounting"] = {"enabled": True, "port": free_port()}
    hub_settings["catalog"] = {"enabled": True, "port": free_port()}
    hub = hub_factory(hub_settings).start(timeout=180)

    def all_there():
        return all((data / name).exists() for name in DATABASES)

    missing = "the hub's and the services' databases"
    try:
        wait_for(all_there, 120, 0.5, what=missing)
    except TimeoutError:
        pytest.fail(f"{[n for n in DATABASES if not (data / n).exists()]} missing:\n{hub.log()}")
    assert hub.proc.poll() is None, hub.log()[-3000:]
    assert mode(data) == 0o700
    assert mode(data / "secrets") == 0o700
    for name in DATABASES:
        assert mode(data / name) == 0o600, name
    # nothing the hub, its services or the deliverer wrote is open to others:
    # databases and their journals, secrets, pid files
    open_to_others = {
        str(path.relative_to(data)): oct(mode(path))
        for path in [*data.iterdir(), *(data / "secrets").iterdir()]
        if path.name != "users" and mode(path) & 0o077
    }
    assert open_to_others == {}
    assert len(list((data / "secrets").iterdir())) >= 5  # admin password, tokens, keys
