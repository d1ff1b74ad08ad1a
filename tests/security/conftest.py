"""Fixtures of the security suite: one real hub for the package (the security
world), with the accounting, catalog and data services on, and a hub token for each
kind of caller; tests that need a fresh or unusual hub start their own.

The callers (every token is made through the hub API for that user, without
scopes of its own, so it carries exactly what the user's roles grant):

- ``anonymous``: no token at all;
- ``alice``: a plain user (member of group ``lab-a``), the owner of the
  workspace the tests reach;
- ``bob``: another plain user (member of group ``lab-b``);
- ``gina``: a group admin: member of ``lab-a``, holding the role
  ``lab-a-admin`` (``admin:servers``, ``read:users`` and ``list:users`` filtered
  to ``group=lab-a``) and the accounting lead of project ``lab-a``;
- ``admin``: in ``hub.admin_users`` (JupyterHub's ``admin`` role plus
  Labspace's ``labspace-admin`` role).

Fixtures:

- ``security_summary``: a list of lines printed in pytest's terminal summary
  (the schemathesis counts), passed or failed.
- ``security_world`` (package): the security world: ONE hub for the whole
  package, with every service (data: `data_settings`), the catalog apps ``WORLD_APPS`` (``DEMO``, a
  proxied demo app; ``SHARED_DEMO``, a standalone one; ``WEB``, a static site;
  ``EVIL``, a site whose SVG icon carries scripts), the users, groups and
  tokens; stopped by PID at the end of the package. Its ``test`` service token
  (``World.service_token``) also administers accounting
  (``ACCOUNTING_ADMIN_SCOPES``). Modules run in file order and share it: what a
  module changes that another would notice (a named server, a workspace's own
  config, a stopped workspace) it undoes or ``make`` repairs; the hub's log
  holds every module's requests.
- ``security_world_factory`` (module): ``make(catalog_apps=(), start=())``
  returns the security world when every app of ``catalog_apps`` is one of
  ``WORLD_APPS``, else starts a hub of the module's own (stopped at the end of
  the module); either way both services answer and the default workspaces of
  the users in ``start`` run.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from harness import (
    HubAPI,
    HubProcess,
    demo_app,
    free_port,
    hub_settings_for,
    login,
    wait_for,
    workspace_pids,
)

from .test_catalog_support import site_app

PASSWORD = secrets.token_hex(12)
GROUPS = {"lab-a": ["alice", "gina"], "lab-b": ["bob"]}
USERS = ("alice", "bob", "gina", "admin")
GROUP_ADMIN_ROLE = {
    "name": "lab-a-admin",
    "description": "Group admin of lab-a",
    "scopes": ["admin:servers!group=lab-a", "read:users!group=lab-a", "list:users!group=lab-a"],
    "users": ["gina"],
}
# the hub's test service also administers accounting (tests of its admin API)
ACCOUNTING_ADMIN_SCOPES = ["custom:labspace-accounting:admin", "access:services!service=accounting"]
# the catalog apps of the security world (an app id is also a URL: proxied
# ``demo`` at user/<name>/demo/, standalone ``shared-demo`` a named server)
DEMO = demo_app(
    version="1.0",
    description="An HTML page and a websocket echo",
    category="Testing",
    launch={"ready_status": 200, "timeout": 60},
)
SHARED_DEMO = demo_app(
    "shared-demo",
    kind="standalone",
    launch={"environment": {"DEMO_GREETING": "Shared demo app"}},
)
# a static site on a unix socket; one whose icon is an SVG that runs scripts
WEB = site_app("web", Path(__file__).resolve().parent)
EVIL_ICON = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
        b'onload="window.pwned = (window.pwned || 0) + 1">'
        b"<script>window.pwned = (window.pwned || 0) + 1</script>"
        b'<rect width="64" height="64" fill="#c00"/></svg>'
    ).decode()
)
EVIL = site_app("evil-settings", Path(__file__).resolve().parent, icon=EVIL_ICON)
WORLD_APPS = [DEMO, SHARED_DEMO, WEB, EVIL]


@dataclass
class World:
    """A running hub and what the tests need to call it as each caller."""

    hub: HubProcess
    api: HubAPI
    tokens: dict[str, str] = field(default_factory=dict)
    service_token: str = ""  # the hub's ``test`` service (``api`` calls with it)

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def data_dir(self) -> Path:
        return Path(self.hub.settings["data_dir"])

    @property
    def tmp(self) -> Path:
        return self.hub.workdir

    def home(self, name: str) -> Path:
        return self.data_dir / "users" / name

    def catalog(self, who: str, method: str, path: str, **kw) -> httpx.Response:
        """``who`` calls the catalog's API (``path`` under ``api/``)."""
        with self.client(who, timeout=60) as c:
            return c.request(method, f"services/catalog/api/{path}", **kw)

    def client(self, who: str, **kw) -> httpx.Client:
        """An HTTP client for ``who`` (``anonymous``: no credentials)."""
        headers = {} if who == "anonymous" else {"Authorization": f"token {self.tokens[who]}"}
        kw.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=headers, **kw)

    def session(self, who: str) -> httpx.Client:
        """A browser's session for ``who``: signed in through the login form
        (the hub's own pages take no token); the caller closes it."""
        if who == "anonymous":
            return httpx.Client(base_url=self.url, timeout=30)
        password = self.hub.admin_password if who == "admin" else PASSWORD
        return login(self.url, who, password)


def security_settings(tmp: Path, proxy_command: list[str], token: str, apps=()) -> dict:
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["auth"] = {"user_password": PASSWORD}
    settings["hub"]["admin_users"] = ["admin"]
    settings["accounting"] = {
        "enabled": True,
        "port": free_port(),
        "projects": {"prefix": "lab-", "leads": {"lab-a": ["gina"]}},
        "no_project": "personal",
        "personal_allowance": 5,
    }
    settings["catalog"] = {"enabled": True, "port": free_port(), "apps": list(apps)}
    settings["data"] = data_settings(tmp)
    roles = settings["hub"]["config"]["JupyterHub"]["load_roles"]
    roles[0]["scopes"] += ACCOUNTING_ADMIN_SCOPES
    roles.append(dict(GROUP_ADMIN_ROLE))
    return settings


def data_settings(tmp: Path) -> dict:
    """The data service: ``genomes`` read by lab-a, ``bob-notes`` written by bob
    alone (a dataset alice may not see), host folders under one root."""
    root = tmp / "datasets"
    for name in ("genomes", "bob-notes"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {
        "enabled": True,
        "port": free_port(),
        "roots": [str(root)],
        "datasets": [
            {
                "id": "genomes",
                "kind": "host",
                "source": str(root / "genomes"),
                "grants": [{"group": "lab-a", "level": "read"}],
            },
            {
                "id": "bob-notes",
                "kind": "host",
                "source": str(root / "bob-notes"),
                "grants": [{"user": "bob", "level": "write"}],
            },
        ],
    }


def populate(api: HubAPI) -> dict[str, str]:
    """Users, groups and one token per user; returns the tokens."""
    for name in USERS:
        if api.user(name).status_code == 404:
            api.create_user(name)
    for group, members in GROUPS.items():
        r = api.request("POST", f"groups/{group}", json={"users": members})
        assert r.status_code == 201, r.text
    tokens = {}
    for name in USERS:
        r = api.request("POST", f"users/{name}/tokens", json={"note": "security suite"})
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    return tokens


def wait_services(world: World) -> None:
    """The services answer through the hub's proxy."""
    with world.client("admin") as c:

        def up() -> bool:
            paths = (
                "services/accounting/api/prices",
                "services/catalog/api/apps",
                "services/data/api/datasets",
            )
            try:
                return all(c.get(p).status_code == 200 for p in paths)
            except httpx.HTTPError:
                return False

        wait_for(up, 60, 0.5, what="the accounting, catalog and data services")


SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("security suite")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def security_summary(request) -> list[str]:
    return request.config.stash.setdefault(SUMMARY, [])


def start_world(tmp: Path, proxy_command: list[str], apps=()) -> World:
    token = secrets.token_hex(16)
    hub = HubProcess(tmp, security_settings(tmp, proxy_command, token, apps))
    api = HubAPI(hub.url, token)
    world = World(hub, api, service_token=token)
    try:
        hub.start(timeout=180)  # a loaded 2-core machine imports slowly
        world.tokens = populate(api)
        wait_services(world)
    except BaseException:
        close_world(world)
        raise
    return world


def close_world(world: World) -> None:
    world.api.stop_all()
    world.api.close()
    world.hub.stop()
    for pid in workspace_pids(world.data_dir / "users"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def running(world: World, name: str) -> None:
    """``name``'s default workspace runs (started if it does not)."""
    server = world.api.user(name).json()["servers"].get("", {})
    if not server.get("ready"):
        world.api.start_server(name)


@pytest.fixture(scope="package")
def security_world(tmp_path_factory, proxy_command):
    world = start_world(tmp_path_factory.mktemp("security"), proxy_command, WORLD_APPS)
    yield world
    close_world(world)


@pytest.fixture(scope="module")
def security_world_factory(request, tmp_path_factory, proxy_command):
    own: list[World] = []

    def make(catalog_apps=(), start=()) -> World:
        if all(app in WORLD_APPS for app in catalog_apps):
            world = request.getfixturevalue("security_world")
        else:
            tmp = tmp_path_factory.mktemp("security")
            world = start_world(tmp, proxy_command, catalog_apps)
            own.append(world)
        wait_services(world)  # (a module before may have restarted the hub)
        for name in start:
            running(world, name)
        return world

    yield make
    for world in own:
        close_world(world)
