"""Shared fixtures.

Fixtures:

- ``no_labspace_env`` (autouse): ``LABSPACE_*`` variables of the caller's shell
  never reach a test (tests that want one set it themselves).
- ``need(component, available, why)``: skip a test whose real component is
  missing, or fail it under ``CI=true``, where every component must be present.
- ``docker_objects``: Docker containers and volumes a test records, removed at
  teardown (the test fails if one was left behind); skips without Docker.
- ``chromium`` (module): a headless Chromium browser (Playwright).
- ``pg_cluster`` (session): a private PostgreSQL cluster (``initdb``/``pg_ctl``)
  on a free loopback port.
- ``db_url`` (parametrised ``sqlite`` / ``postgres``): an empty hub database
  URL; ``""`` for SQLite under ``data_dir``, else a new PostgreSQL database.
- ``hub_settings``: settings for a test hub (``harness.hub_settings_for``): free
  loopback ports, a temporary ``data_dir``, a ``test`` service with an API token
  and admin scopes, and the accounting, catalog and data services off (tests about them
  turn them on).
- ``hub_factory``: makes ``HubProcess`` objects (``labspace up`` subprocesses)
  from settings and stops every one of them at teardown, by PID.
- ``module_hub_factory`` (module): ``make(edit=None, env=None)`` starts a hub
  shared by the tests of a module: ``hub_settings_for`` settings (a ``test``
  service with a token of its own) changed by ``edit(settings)``; returns
  ``(hub, api)``, ``api`` a ``HubAPI`` with the service token. At the end of the
  module the servers ``api`` started and the hub are stopped, by PID. For tests
  that only add users and servers of their own; a test about a fresh hub (a
  first start, a restart, a setting) keeps ``hub_factory``.
- ``hub``: a running hub on ``db_url``; ``api``: a ``HubAPI`` client for it
  that stops the servers it started at teardown.
- ``sso_factory(accounts=None, **auth)``: starts the test OpenID Connect
  provider and a hub signing in through it (``auth.type: oidc``, groups from the
  ``groups`` claim, only ``staff`` allowed unless ``auth`` says otherwise);
  returns ``(hub, provider)`` and stops both at teardown.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import HubAPI, HubProcess, hub_settings_for, outliving_workspaces  # noqa: E402
from oidc_provider import OIDCProvider  # noqa: E402
from oidc_provider import available as oidc_available  # noqa: E402
from postgres import PostgresCluster, find_bindir  # noqa: E402

import helm  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def require(component: str, available: bool, why: str) -> None:
    """Skip when ``component`` is missing; under CI=true, fail instead."""
    if available:
        return
    message = f"{component} is not available: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires it; `make test` installs it)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def no_labspace_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LABSPACE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def need():
    return require


@pytest.fixture(scope="module")
def chromium(need):
    """A headless Chromium (Playwright), one per test module."""
    from browser import available, launch

    ok, why = available()
    need("Chromium", ok, why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def docker_objects(need):
    """Skips without Docker and the workspace image; removes at the end what
    the test recorded, and fails the test if a container was left behind."""
    import docker_env
    from docker_env import DockerObjects

    why = docker_env.problem()
    need("Docker", why is None, why or "")
    objects = DockerObjects()
    yield objects
    left = objects.cleanup()
    assert not left, f"left behind after the hub stopped: {left}"


@pytest.fixture(scope="session")
def proxy_command() -> list[str]:
    local = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    found = str(local) if local.exists() else shutil.which("configurable-http-proxy")
    require("configurable-http-proxy", bool(found), "run `npm ci` in the repository")
    return [found]


@pytest.fixture(scope="session")
def pg_cluster():
    bindir = find_bindir()
    require("PostgreSQL", bindir is not None, "initdb/pg_ctl not found (apt install postgresql)")
    cluster = PostgresCluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    if request.param == "sqlite":
        return ""
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"hub_{secrets.token_hex(4)}")


@pytest.fixture
def service_token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def hub_settings(tmp_path, proxy_command, service_token) -> dict:
    return hub_settings_for(tmp_path / "data", proxy_command, service_token)


@pytest.fixture
def hub_factory(tmp_path):
    hubs: list[HubProcess] = []

    def make(settings: dict, env: dict | None = None) -> HubProcess:
        hub = HubProcess(tmp_path, settings, env)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()
    # a test that failed half-way may leave workspaces of a hub that kept them
    # running (hub.cleanup_servers: false); they are ours, found by their folder
    leftovers = outliving_workspaces(tmp_path / "data" / "users")
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"workspace processes outlived their hub: {leftovers}"


@pytest.fixture(scope="module")
def module_hub_factory(tmp_path_factory, proxy_command):
    made: list[tuple[HubProcess, HubAPI]] = []

    def make(edit=None, env: dict | None = None) -> tuple[HubProcess, HubAPI]:
        workdir = tmp_path_factory.mktemp("hub")
        token = secrets.token_hex(16)
        settings = hub_settings_for(workdir / "data", proxy_command, token)
        if edit:
            edit(settings)
        hub = HubProcess(workdir, settings, env)
        api = HubAPI(hub.url, token)
        made.append((hub, api))
        hub.start()
        return hub, api

    yield make
    leftovers = []
    for hub, api in made:
        api.stop_all()
        api.close()
        hub.stop()
        leftovers += outliving_workspaces(hub.workdir / "data" / "users")
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"workspace processes outlived their hub: {leftovers}"


@pytest.fixture
def hub(hub_factory, hub_settings, db_url) -> HubProcess:
    hub_settings["hub"]["db_url"] = db_url
    return hub_factory(hub_settings).start()


@pytest.fixture
def api(hub, service_token):
    client = HubAPI(hub.url, service_token)
    yield client
    client.stop_all()
    client.close()


@pytest.fixture
def sso_factory(tmp_path, hub_settings, hub_factory):
    providers: list[OIDCProvider] = []

    def make(accounts: list[dict] | None = None, **auth) -> tuple[HubProcess, OIDCProvider]:
        ok, why = oidc_available()
        require("oidc-provider", ok, why)
        callback = f"http://127.0.0.1:{hub_settings['hub']['port']}/hub/oauth_callback"
        provider = OIDCProvider([callback], accounts=accounts, workdir=tmp_path).start()
        providers.append(provider)
        hub_settings["auth"] = {
            "type": "oidc",
            "display_name": "Example University",
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "scopes": ["openid", "profile", "email", "groups"],
            "groups_claim": "groups",
            "allowed_groups": ["staff"],
            **auth,
        }
        env = {"LABSPACE_AUTH_CLIENT_SECRET": provider.client_secret}
        return hub_factory(hub_settings, env=env).start(), provider

    yield make
    for provider in providers:
        provider.stop()


# -- the Helm chart (tests/helm.py) ----------------------------------------------


@pytest.fixture(scope="session")
def helm_binary(need):
    """helm runs (tests/provision.sh installs it); under CI=true it must."""
    problem = helm.helm_problem()
    need("helm", problem is None, problem or "")


@pytest.fixture(scope="module", params=helm.VALUES)
def chart_rendered(request, helm_binary):
    """``(values file name, objects)`` for each of the checks' values files."""
    return request.param, helm.render(request.param)


@pytest.fixture(scope="module")
def chart_defaults(helm_binary):
    """The chart's objects with its default values."""
    return helm.render("defaults")
