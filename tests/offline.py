"""Build real Labspace spawners without a hub, as ``jupyterhub.user.User`` does:
what tests of a backend's mapping need (tests/test_kube.py,
tests/test_docker_spawner.py). Nothing here talks to a cluster or a daemon.

The spawners get the ``Hub`` object JupyterHub itself makes of the hub's config
(``JupyterHub.init_hub``: ``hub_ip``, ``hub_port``, ``base_url``,
``hub_connect_url``), so ``JUPYTERHUB_API_URL`` is what a workspace would get;
``chart_hub_config`` is that config as the chart's hub pod builds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import yaml
from jupyterhub import orm
from jupyterhub.objects import Hub
from traitlets.config import Config

from labspace import hubconfig
from labspace.settings import Settings, load, validate, with_defaults
from labspace.state import State


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


def hub_of(config: Config) -> Hub:
    """The ``Hub`` JupyterHub makes of ``config`` at start (``init_hub``), the
    one every spawner gets; nothing is started or bound. The app gets a logger
    of its own and no log level: JupyterHub's would stop the "JupyterHub"
    logger's propagation (and a log level reconfigures logging), which hides
    the spawners' logs from ``caplog``."""
    from jupyterhub.app import JupyterHub

    traits = {k: v for k, v in config.JupyterHub.items() if k != "log_level"}
    app = JupyterHub(config=Config({"JupyterHub": traits}), log=logging.getLogger(__name__))
    app.init_hub()
    return app.hub


def chart_hub_config(objects: list[dict], folder: Path) -> tuple[Settings, dict[str, Any]]:
    """What the chart's hub pod makes of the rendered ``objects`` (tests/helm.py's
    ``render``): the ConfigMap's labspace.yaml loaded with the hub container's
    environment (the secrets of the rendered Secret), as ``labspace up`` loads it,
    and ``hubconfig.build``'s traitlets values. Only ``data_dir`` moves, to
    ``folder`` (the chart's ``/srv/labspace/data`` is the pod's volume)."""
    import helm

    data = helm.settings(objects)
    assert data["data_dir"] == "/srv/labspace/data", data["data_dir"]
    data["data_dir"] = str(folder / "data")
    path = folder / "labspace.yaml"
    path.write_text(yaml.safe_dump(data))
    env = helm.container_env(objects, "labspace-hub")
    settings = load(path, environ=env)
    state = State(settings, environ=env)
    state.prepare()
    return settings, hubconfig.build(settings, state, hubconfig.proxy_command(settings))


def build_spawner(
    cls,
    name: str,
    server_name: str,
    values: dict[str, Any],
    config: Config,
    hub: Hub | None = None,
):
    """``cls`` for user ``name``'s server ``server_name`` with ``values`` as Labspace
    sets them (``LabspaceSpawnerMixin``) plus ``config`` (the hub's, or as
    ``hub.config`` would set it); ``hub`` defaults to the one JupyterHub makes of
    ``config`` (``hub_of``)."""
    config.LabspaceSpawnerMixin.profiles = values["profiles"]
    config.LabspaceSpawnerMixin.backend_settings = values["backend"]
    user = MockUser(name)
    client_id = f"jupyterhub-user-{quote(name)}"
    return cls(
        user=user,
        orm_spawner=orm_spawner(user, server_name),
        hub=hub or hub_of(config),
        config=config,
        oauth_client_id=f"{client_id}-{quote(server_name)}" if server_name else client_id,
        user_options={},
    )
