"""Support of the catalog's security tests (no tests here): a real hub with the
catalog on and the accounting service off, users ``alice`` and ``bob`` (groups
``lab-a`` / ``lab-b``), ``admin`` in ``hub.admin_users``, and a hub token per
user.

``site_app(app_id, folder, kind)``: a catalog app serving ``folder`` on a unix
socket (a TCP port on the shared loopback is refused on the local backend).
``catalog_world(tmp, proxy_command, apps, prepare=None, start=())`` starts it,
calls ``prepare(world)`` (to write files into homes before servers start), then
starts the default workspaces of ``start``; ``close_world(world)`` stops it all
by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import HubAPI, HubProcess, free_port, hub_settings_for, wait_for, workspace_pids

PASSWORD = secrets.token_hex(12)
GROUPS = {"lab-a": ["alice"], "lab-b": ["bob"]}
USERS = ("alice", "bob", "admin")
# a static web site on a unix socket: argv[1] the socket, argv[2] the folder
UNIX_SITE = """
import functools, http.server, socketserver, sys
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
class Handler(http.server.SimpleHTTPRequestHandler):
    def address_string(self):
        return "unix"
Server(sys.argv[1], functools.partial(Handler, directory=sys.argv[2])).serve_forever()
"""


def site_app(app_id: str, folder: Path, kind: str = "proxied", **extra) -> dict:
    """A catalog app serving ``folder`` (its ``index.html`` answers when ready)."""
    return {
        "id": app_id,
        "title": app_id.title(),
        "description": f"Serves {folder.name}",
        "kind": kind,
        "launch": {
            "command": [sys.executable, "-c", UNIX_SITE, "{unix_socket}", str(folder)],
            "unix_socket": True,
            "ready_path": "/",
            "timeout": 30,
        },
        **extra,
    }


@dataclass
class CatalogWorld:
    tmp: Path
    hub: HubProcess
    api: HubAPI
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def data_dir(self) -> Path:
        return Path(self.hub.settings["data_dir"])

    def home(self, name: str) -> Path:
        return self.data_dir / "users" / name

    def client(self, who: str, **kw) -> httpx.Client:
        headers = {} if who == "anonymous" else {"Authorization": f"token {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def catalog(self, who: str, method: str, path: str, **kw) -> httpx.Response:
        with self.client(who) as c:
            return c.request(method, f"services/catalog/api/{path}", **kw)

    def new_token(self, name: str) -> str:
        r = self.api.request("POST", f"users/{name}/tokens", json={"note": "catalog security"})
        assert r.status_code == 201, r.text
        return r.json()["token"]


def catalog_world(
    tmp: Path, proxy_command, apps=(), prepare=None, start=(), **catalog
) -> CatalogWorld:
    """A running world; ``catalog`` adds keys to the catalog settings."""
    token = secrets.token_hex(16)
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["auth"] = {"user_password": PASSWORD}
    settings["hub"]["admin_users"] = ["admin"]
    settings["catalog"] = {"enabled": True, "port": free_port(), "apps": list(apps), **catalog}
    hub = HubProcess(tmp, settings)
    api = HubAPI(hub.url, token)
    world = CatalogWorld(tmp, hub, api)
    try:
        hub.start(timeout=120)
        for name in USERS:
            if api.user(name).status_code == 404:
                api.create_user(name)
        for group, members in GROUPS.items():
            r = api.request("POST", f"groups/{group}", json={"users": members})
            assert r.status_code == 201, r.text
        world.tokens = {name: world.new_token(name) for name in USERS}
        wait_for(
            lambda: world.catalog("admin", "GET", "apps").status_code == 200,
            60,
            0.5,
            what="the catalog service",
        )
        if prepare:
            prepare(world)
        for name in start:
            api.start_server(name)
    except BaseException:
        close_world(world)
        raise
    return world


def close_world(world: CatalogWorld) -> None:
    world.api.stop_all()
    world.api.close()
    world.hub.stop()
    for pid in workspace_pids(world.tmp / "data" / "users"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
