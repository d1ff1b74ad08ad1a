"""Build real Labspace spawners without a hub, as ``jupyterhub.user.User`` does:
what tests of a backend's mapping need (tests/test_kube.py,
tests/test_docker_spawner.py). Nothing here talks to a cluster or a daemon."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import yaml
from jupyterhub import orm
from jupyterhub.objects import Hub
from traitlets.config import Config

from labspace.settings import validate, with_defaults


@dataclass
class Group:
    name: str


@dataclass
class MockUser:
    """What a spawner reads of ``jupyterhub.user.User`` (as kubespawner's tests' MockUser)."""

    name: str
    id: int = 1
    groups: list[Group] = field(default_factory=list)
    # the hub's tornado settings (JupyterHub's User.settings), where the start queue lives
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def escaped_name(self) -> str:
        return quote(self.name, safe="@~")

    @property
    def url(self) -> str:
        return f"/user/{self.escaped_name}/"


def orm_spawner(user: MockUser, server_name: str) -> SimpleNamespace:
    """The database row of a server, with the ``orm.Server`` JupyterHub gives it on spawn."""
    base_url = f"{user.url}{server_name}/" if server_name else user.url
    server = orm.Server(proto="http", ip="", port=0, base_url=base_url, cookie_name="unused")
    return SimpleNamespace(name=server_name, display_name=server_name, server=server)


def settings_from(text: str) -> dict[str, Any]:
    """labspace.yaml text → complete, schema-checked settings values."""
    data = yaml.safe_load(text)
    assert validate(data) == []
    return with_defaults(data)


def build_spawner(cls, name: str, server_name: str, values: dict[str, Any], config: Config):
    """``cls`` for user ``name``'s server ``server_name`` with ``values`` as Labspace
    sets them (``LabspaceSpawnerMixin``) plus ``config`` (as ``hub.config`` would)."""
    config.LabspaceSpawnerMixin.profiles = values["profiles"]
    config.LabspaceSpawnerMixin.backend_settings = values["backend"]
    user = MockUser(name)
    client_id = f"jupyterhub-user-{quote(name)}"
    return cls(
        user=user,
        orm_spawner=orm_spawner(user, server_name),
        hub=Hub(ip="", port=8081, base_url="/hub/", connect_ip="hub"),
        config=config,
        oauth_client_id=f"{client_id}-{quote(server_name)}" if server_name else client_id,
        user_options={},
    )
