"""No app is reachable without its owner's credentials (issue 10, finding 4).

The local backend shares 127.0.0.1 between every workspace (as docker's
``network: host`` does). Alice and Bob each run a workspace on one real hub;
Alice opens her private notebook as a dashboard, the Data Explorer and a catalog
app. Then Bob tries every way in: his own ``/user/bob/proxy/<port>/`` to each
TCP port Alice's workspace listens on, a direct connection to those ports, and
Alice's URLs with his own token. None of them shows her notebook's output, and
the only TCP port her workspace listens on is her Jupyter server's (behind its
login). Before the fix Voilà listened on a loopback port of its own with no login.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import psutil
import pytest

from .conftest import DEMO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "alice-private-" + secrets.token_hex(8)
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": [f"print('{SECRET[:6]}' + '{SECRET[6:]}')"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def listening_ports(home: Path) -> dict[int, list[str]]:
    """TCP ports that the processes of a local workspace (its server, its apps and
    kernels, all working in its home) listen on -> the command of each."""
    ports = {}
    for proc in psutil.process_iter():
        try:
            if not proc.cwd().startswith(str(home)):
                continue
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    ports[conn.laddr.port] = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return ports


@pytest.fixture(scope="module")
def world(security_world_factory):
    return security_world_factory(catalog_apps=[DEMO], start=("alice", "bob"))


def test_bob_cannot_reach_alices_apps(world):
    home = Path(world.hub.settings["data_dir"]) / "users" / "alice"
    with world.client("alice") as alice, world.client("bob") as bob:
        body = {"type": "notebook", "content": NOTEBOOK}
        r = alice.put("user/alice/api/contents/private.ipynb", json=body)
        assert r.status_code == 201, r.text
        # Alice uses her apps: Voilà inside her server, the others on unix sockets
        r = alice.get("user/alice/dashboards/voila/render/private.ipynb", follow_redirects=True)
        assert r.status_code == 200 and SECRET in r.text
        assert alice.get("user/alice/data-explorer/").status_code == 200
        assert alice.get("user/alice/demo/").status_code == 200

        ports = listening_ports(home)
        # her Jupyter server (behind its login) and, in ipykernel, a receive-only
        # pipe for the output of forked subprocesses that takes only messages
        # carrying a random 16-byte id; no app, no kernel channel
        servers = [p for p, cmd in ports.items() if "labspace.singleuser" in cmd]
        others = {p: cmd for p, cmd in ports.items() if p not in servers}
        assert len(servers) == 1, ports
        assert all("ipykernel_launcher" in cmd for cmd in others.values()), ports
        assert len(others) <= 1, ports  # one kernel (the dashboard's), one pipe
        paths = ["", "voila/render/private.ipynb", "user/alice/voila/render/private.ipynb"]
        paths += ["user/alice/dashboards/voila/render/private.ipynb"]
        for port in ports:
            for path in paths:
                # Bob's own proxy to a port of the shared loopback: off
                r = bob.get(f"user/bob/proxy/{port}/{path}")
                assert r.status_code == 404, (port, path, r.text[:300])
                assert SECRET not in r.text
        for port in servers:
            # straight to her server, as any process on the machine can: a login
            for path in paths:
                r = httpx.get(f"http://127.0.0.1:{port}/{path}", timeout=30)
                assert r.status_code in (302, 403, 404) and SECRET not in r.text
            api = httpx.get(f"http://127.0.0.1:{port}/user/alice/api/contents", timeout=30)
            assert api.status_code == 403

        # Alice's own URLs with Bob's token
        for path in ("voila/render/private.ipynb", "dashboards/", "demo/", "data-explorer/"):
            r = bob.get(f"user/alice/{path}")
            assert r.status_code == 403, path
            assert SECRET not in r.text
