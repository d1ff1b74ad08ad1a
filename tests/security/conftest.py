"""Fixtures of the security suite: one real hub per module, with the accounting
and catalog services on, and a hub token for each kind of caller.

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
- ``security_world_factory`` (module): ``make(catalog_apps=(), start=())``
  starts the module's hub, creates the users, groups and tokens and starts the
  default workspaces of the users in ``start``; returns a ``World``. Everything
  is stopped by PID at the end of the module.
"""

from __future__ import annotations

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
    free_port,
    hub_settings_for,
    login,
    wait_for,
    workspace_pids,
)

PASSWORD = secrets.token_hex(12)
GROUPS = {"lab-a": ["alice", "gina"], "lab-b": ["bob"]}
USERS = ("alice", "bob", "gina", "admin")
GROUP_ADMIN_ROLE = {
    "name": "lab-a-admin",
    "description": "Group admin of lab-a",
    "scopes": ["admin:servers!group=lab-a", "read:users!group=lab-a", "list:users!group=lab-a"],
    "users": ["gina"],
}


@dataclass
class World:
    """A running hub and what the tests need to call it as each caller."""

    hub: HubProcess
    api: HubAPI
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.hub.url

    def client(self, who: str, **kw) -> httpx.Client:
        """An HTTP client for ``who`` (``anonymous``: no credentials)."""
        headers = {} if who == "anonymous" else {"Authorization": f"token {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

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
    settings["hub"]["config"]["JupyterHub"]["load_roles"].append(dict(GROUP_ADMIN_ROLE))
    return settings


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
    """Both services answer through the hub's proxy."""
    with world.client("admin") as c:

        def up() -> bool:
            paths = ("services/accounting/api/prices", "services/catalog/api/apps")
            try:
                return all(c.get(p).status_code == 200 for p in paths)
            except httpx.HTTPError:
                return False

        wait_for(up, 60, 0.5, what="the accounting and catalog services")


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


@pytest.fixture(scope="module")
def security_world_factory(tmp_path_factory, proxy_command):
    made: list[tuple[Path, HubProcess, HubAPI]] = []

    def make(catalog_apps=(), start=()) -> World:
        tmp = tmp_path_factory.mktemp("security")
        token = secrets.token_hex(16)
        hub = HubProcess(tmp, security_settings(tmp, proxy_command, token, catalog_apps))
        api = HubAPI(hub.url, token)
        made.append((tmp, hub, api))
        hub.start(timeout=180)  # a loaded 2-core machine imports slowly
        world = World(hub, api, populate(api))
        wait_services(world)
        for name in start:
            api.start_server(name)
        return world

    yield make
    for tmp, hub, api in made:
        api.stop_all()
        api.close()
        hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
