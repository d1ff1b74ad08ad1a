"""Tier 1/2: catalog settings checks, hub parts, and the spawner hook asking an
in-process catalog service on a real SQLite catalog (no hub): which options are
refused, what a workspace gets, and what a start does when the service is down."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from harness import free_port
from tornado import web

from labspace import settings as settings_mod
from labspace.services.catalog import app as service
from labspace.services.catalog import apps as appdefs
from labspace.services.catalog import config
from labspace.services.catalog.hubside import UNREACHABLE_APP, UNREACHABLE_START, CatalogOptions
from labspace.services.kit.run import ServiceContext
from labspace.services.kit.web import make_server

# apps listen on a unix socket: a TCP {port} is refused where workspaces share 127.0.0.1
SOCKET_APP = ["python3", "-m", "labspace.extensions.demo_app", "--unix-socket", "{unix_socket}"]
WEB = {
    "id": "web",
    "title": "Web",
    "kind": "proxied",
    "launch": {"command": SOCKET_APP, "unix_socket": True},
}
PHYS = {**WEB, "id": "phys-web", "title": "Physics web", "groups": ["physics"]}
VIEWER = {
    "id": "viewer",
    "version": "2.0",
    "title": "Viewer",
    "kind": "standalone",
    "groups": ["physics"],
    "launch": {"command": SOCKET_APP, "unix_socket": True, "ready_path": "/index"},
}


def spawner(name="ada", groups=("physics",), server=""):
    return SimpleNamespace(
        user=SimpleNamespace(name=name),
        user_groups=lambda: set(groups),
        name=server,
        extra_env={},
        default_url="",
    )


PREFIX = "/services/catalog/"


@pytest.fixture
async def serve(monkeypatch, tmp_path):
    """``await serve(apps, profiles) -> (hook, catalog)``: a catalog service
    in-process on its own SQLite file, seeded with ``apps`` (and the bundled
    ones), and the hub's hook pointed at it with the service's token."""
    token = secrets.token_hex(8)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{free_port()}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-catalog")
    running = []

    async def serve(apps, profiles, **hook_options):
        db = tmp_path / f"catalog-{len(running)}.sqlite"
        config = {"db_url": f"sqlite:///{db}", "apps": apps, "profiles": profiles}
        environ = {**os.environ, "LABSPACE_CATALOG_CONFIG": json.dumps(config)}
        started = await service.start(ServiceContext("catalog", environ))
        port = free_port()
        server = make_server(started.app)
        server.listen(port, address="127.0.0.1")
        running.append((server, started))
        hook = CatalogOptions(f"http://127.0.0.1:{port}{PREFIX}", token, **hook_options)
        return hook, started.app.settings["catalog"]

    yield serve
    for server, started in running:
        server.stop()
        await started.stop()


@pytest.fixture
async def hook(serve) -> CatalogOptions:
    return (await serve([WEB, PHYS, VIEWER], ["default"]))[0]


async def test_default_workspace_gets_the_proxied_apps_of_its_groups(hook):
    s = spawner()
    await hook(s, {})
    apps = json.loads(s.extra_env["LABSPACE_CATALOG_APPS"])
    assert [a["id"] for a in apps] == ["phys-web", "web"]
    assert apps[1] == {
        "id": "web",
        "version": "1",
        "title": "Web",
        "description": "",
        "category": "Apps",
        "icon": "",
        "launch": {
            "command": SOCKET_APP,
            "unix_socket": True,
            "ready_path": "/",
            "ready_status": 200,
            "timeout": 30,
            "environment": {},
            "cwd": "",
        },
    }
    s = spawner("bob", groups=["chemistry"])
    await hook(s, {"profile": "default"})
    assert [a["id"] for a in json.loads(s.extra_env["LABSPACE_CATALOG_APPS"])] == ["web"]
    assert "LABSPACE_STANDALONE_APP" not in s.extra_env


async def test_standalone_app_gets_its_spec_and_default_url(hook):
    s = spawner(server="viewer")
    await hook(s, {"app": "viewer", "version": "2.0"})
    assert s.extra_env["LABSPACE_STANDALONE_APP"] == "viewer"
    assert [a["id"] for a in json.loads(s.extra_env["LABSPACE_CATALOG_APPS"])] == ["viewer"]
    assert s.default_url == "/viewer/"
    s = spawner(server="viewer")
    await hook(s, {"app": "viewer"})  # no version: the current one
    assert s.extra_env["LABSPACE_CATALOG_APP_VERSION"] == "2.0"


REFUSED = [
    pytest.param({"app": "nope"}, "viewer", ("physics",), "No such app: nope", id="unknown-app"),
    pytest.param(
        {"app": "viewer", "version": "9"},
        "viewer",
        ("physics",),
        "No version '9'",
        id="unknown-version",
    ),
    pytest.param(
        {"app": "viewer"}, "viewer", ("chemistry",), "No such app: viewer", id="outside-groups"
    ),
    pytest.param({"app": "web"}, "web", ("physics",), "runs inside your workspace", id="proxied"),
    pytest.param({"app": "viewer"}, "other", ("physics",), "named server 'viewer'", id="server"),
    pytest.param({"version": "2.0"}, "viewer", ("physics",), "needs 'app'", id="version-alone"),
    pytest.param({"app": 3}, "viewer", ("physics",), "must be strings", id="not-a-string"),
]


@pytest.mark.parametrize("options, server, groups, message", REFUSED)
async def test_bad_options_are_refused_with_400(hook, options, server, groups, message):
    s = spawner(groups=groups, server=server)
    with pytest.raises(web.HTTPError) as e:
        await hook(s, options)
    assert e.value.status_code == 400
    assert message in e.value.log_message
    assert s.default_url == ""


async def test_disabled_app_is_refused(serve):
    hook, catalog = await serve([WEB, PHYS, VIEWER], ["default"])
    await catalog.set_disabled("viewer", True)
    with pytest.raises(web.HTTPError) as e:
        await hook(spawner(server="viewer"), {"app": "viewer"})
    assert e.value.status_code == 400


async def test_standalone_profile_must_be_sent(serve):
    big = {**VIEWER, "launch": {**VIEWER["launch"], "profile": "big"}}
    hook, _ = await serve([big], ["default", "big"])
    with pytest.raises(web.HTTPError, match="profile"):
        await hook(spawner(server="viewer"), {"app": "viewer"})
    await hook(spawner(server="viewer"), {"app": "viewer", "profile": "big"})


# -- the internal endpoint, and a catalog that does not answer --------------------


def down(on_unreachable: str) -> CatalogOptions:
    """A hook whose catalog service is not running."""
    url = f"http://127.0.0.1:{free_port()}{PREFIX}"
    return CatalogOptions(url, "some-token", on_unreachable, timeout=1)


async def test_down_start_without_apps_starts_a_workspace_with_none():
    s = spawner()
    await down("start-without-apps")(s, {})
    assert json.loads(s.extra_env["LABSPACE_CATALOG_APPS"]) == []
    assert "LABSPACE_STANDALONE_APP" not in s.extra_env


async def test_down_start_without_apps_refuses_a_standalone_app_with_503():
    s = spawner(server="viewer")
    with pytest.raises(web.HTTPError) as e:
        await down("start-without-apps")(s, {"app": "viewer"})
    assert e.value.status_code == 503
    assert e.value.log_message == UNREACHABLE_APP
    assert s.default_url == ""


async def test_down_refuse_refuses_every_start_with_503():
    with pytest.raises(web.HTTPError) as e:
        await down("refuse")(spawner(), {})
    assert e.value.status_code == 503
    assert e.value.log_message == UNREACHABLE_START


async def test_options_are_checked_even_when_the_catalog_is_down():
    with pytest.raises(web.HTTPError) as e:
        await down("start-without-apps")(spawner(), {"version": "2.0"})
    assert e.value.status_code == 400 and "needs 'app'" in e.value.log_message


async def test_a_starting_catalog_is_unreachable(monkeypatch):
    """503 (with Retry-After) while the service starts: the setting decides."""

    class Starting(web.RequestHandler):
        def post(self):
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.finish({"status": 503, "message": "The catalog service is starting"})

    port = free_port()
    server = web.Application([(PREFIX + "api/internal/spawn-options", Starting)]).listen(
        port, address="127.0.0.1"
    )
    try:
        url = f"http://127.0.0.1:{port}{PREFIX}"
        s = spawner()
        await CatalogOptions(url, "t", "start-without-apps")(s, {})
        assert s.extra_env["LABSPACE_CATALOG_APPS"] == "[]"
        with pytest.raises(web.HTTPError) as e:
            await CatalogOptions(url, "t", "refuse")(spawner(), {})
        assert e.value.status_code == 503
    finally:
        server.stop()


async def test_internal_endpoint_needs_the_service_token(serve):
    hook, _ = await serve([WEB], ["default"])
    url = hook.caller.base_url + "api/internal/spawn-options"
    async with httpx.AsyncClient(timeout=10) as c:
        body = {"user": "ada", "server": "", "groups": [], "options": {}}
        r = await c.post(url, json=body)
        assert r.status_code == 403
        assert r.json() == {
            "status": 403,
            "message": "Internal endpoints need the catalog service's token",
        }
        r = await c.post(url, json=body, headers={"Authorization": "token nope"})
        assert r.status_code == 403
        auth = {"Authorization": f"token {hook.caller.token}"}
        r = await c.post(url, json=body, headers=auth)
        assert r.status_code == 200 and [a["id"] for a in r.json()["apps"]] == ["web"]
        r = await c.post(url, json={**body, "groups": "physics"}, headers=auth)
        assert r.status_code == 400
        assert r.json()["message"] == "'groups' must be a list of group names"
        r = await c.post(url, content=b"[1]", headers=auth)
        assert r.status_code == 400 and r.json()["message"] == "The body must be a JSON object"


async def test_a_wrong_token_is_unreachable_not_a_refusal(serve):
    hook, _ = await serve([WEB, PHYS, VIEWER], ["default"])
    wrong = CatalogOptions(hook.caller.base_url, "not-it")
    s = spawner()
    await wrong(s, {})
    assert s.extra_env["LABSPACE_CATALOG_APPS"] == "[]"


def test_on_unreachable_setting():
    assert settings_mod.with_defaults({})["catalog"]["on_unreachable"] == "start-without-apps"
    assert settings_mod.validate({"catalog": {"on_unreachable": "refuse"}}) == []
    problems = settings_mod.validate({"catalog": {"on_unreachable": "open"}})
    assert any(p.startswith("catalog.on_unreachable") for p in problems), problems


# -- settings ------------------------------------------------------------------


def full(catalog: dict, **more) -> dict:
    return settings_mod.with_defaults({"catalog": catalog, **more})


PROBLEMS = [
    pytest.param([WEB, WEB], "catalog.apps[1].id: 'web' is also catalog.apps[0]", id="duplicate"),
    pytest.param([{**WEB, "launch": {}}], "needs a command", id="no-command"),
    pytest.param(
        [{**WEB, "launch": {"command": ["x", "{port}"], "unix_socket": True}}],
        "'{unix_socket}' is missing",
        id="socket",
    ),
    pytest.param(
        [{**VIEWER, "launch": {**VIEWER["launch"], "profile": "gpu"}}],
        "catalog.apps[0].launch.profile: no profile 'gpu' (profiles: default)",
        id="profile",
    ),
    pytest.param(
        [{**WEB, "id": "dashboards"}],
        "catalog.apps[0].id: 'dashboards' is the id of a bundled app",
        id="bundled-id",
    ),
    pytest.param(
        [{**WEB, "launch": {**WEB["launch"], "profile": "default"}}],
        "only standalone apps have a profile",
        id="profile-proxied",
    ),
]


@pytest.mark.parametrize("apps, line", PROBLEMS)
def test_settings_problems(apps, line):
    assert any(line in p for p in config.problems(full({"apps": apps}))), config.problems(
        full({"apps": apps})
    )


def test_schema_refuses_unknown_keys_and_shell_strings():
    problems = settings_mod.validate(
        {"catalog": {"apps": [{**WEB, "launch": {"command": "python -m http.server"}}]}}
    )
    assert any("catalog.apps[0].launch.command" in p for p in problems)
    problems = settings_mod.validate({"catalog": {"apps": [{**WEB, "colour": "red"}]}})
    assert any("catalog.apps[0].colour" in p for p in problems)
    assert settings_mod.validate({"catalog": {"apps": [WEB, VIEWER]}}) == []


def test_every_key_has_a_description_and_default():
    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}.{name}"
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    section = appdefs.section_schema()
    assert section["additionalProperties"] is False and section["default"] == {}
    for name, sub in section["properties"].items():
        assert "default" in sub, name
    walk(section, "catalog")


def test_hub_parts(tmp_path):
    (tmp_path / "labspace.yaml").write_text("")
    values = full({"enabled": True, "port": 18011, "apps": [WEB]}, data_dir=str(tmp_path))
    settings = settings_mod.Settings(values, source=tmp_path / "labspace.yaml")
    state = SimpleNamespace(
        service_token=lambda name: "t0ken",
        service_db_url=lambda name: f"sqlite:///{tmp_path}/{name}.sqlite",
        data_dir=tmp_path,
    )
    parts = config.hub_parts(settings, state)
    (service,) = parts["services"]
    assert service["url"] == "http://127.0.0.1:18011"
    assert service["command"][1:] == ["-m", "labspace.services.catalog"]
    env = json.loads(service["environment"]["LABSPACE_CATALOG_CONFIG"])
    assert env["apps"][0]["id"] == "web" and "db_url" not in env
    # the database URL (it may carry a password) travels as a 0600 file, not in the environment
    db_file = Path(env["db_url_file"])
    assert db_file.read_text().strip().endswith("catalog.sqlite")
    assert db_file.stat().st_mode & 0o777 == 0o600
    (role,) = parts["roles"]
    assert set(role["scopes"]) == {
        "read:users:name",
        "servers",
        "shares",
        "read:groups:name",
        "tokens",
    }
    from jupyterhub.scopes import scope_definitions

    assert all(s.split("!")[0] in scope_definitions for s in role["scopes"])
    assert set(parts["custom_scopes"]) == {
        "custom:labspace-catalog:read",
        "custom:labspace-catalog:launch",
        "custom:labspace-catalog:admin",
    }
    assert "custom:labspace-catalog:launch" in parts["user_scopes"]
    assert "custom:labspace-catalog:admin" in parts["admin_scopes"]
    assert set(parts["spawner"]["option_keys"]) == {"app", "version"}
    assert isinstance(parts["spawner"]["check_options"][0], CatalogOptions)
    assert parts["nav"] == [{"title": "Apps", "url": "/services/catalog/", "admin": False}]
    disabled = settings_mod.Settings(full({"enabled": False}), source=tmp_path / "x.yaml")
    assert config.hub_parts(disabled, state) == {}


def test_icon_paths_become_data_urls(tmp_path):
    (tmp_path / "i.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert appdefs.icon_data("i.svg", tmp_path).startswith("data:image/svg+xml;base64,")
    with pytest.raises(ValueError, match="svg or .png"):
        (tmp_path / "i.gif").write_bytes(b"GIF89a")
        appdefs.icon_data("i.gif", tmp_path)
    assert appdefs.icon_data("", Path("/")) == ""


async def test_the_home_pages_list_is_the_apps_open_to_the_groups(serve):
    """``api/internal/mine`` through the hub's ``ServiceDirectory`` (labspace/hubpages.py)."""
    from labspace.hubpages import ServiceDirectory

    hook, _ = await serve([WEB, PHYS, VIEWER], ["default"])
    directory = ServiceDirectory({"catalog": hook.caller})
    ada = (await directory.ask("catalog", "mine?user=ada&groups=physics"))["apps"]
    assert {"web", "phys-web", "viewer"} <= {a["id"] for a in ada}
    assert set(ada[0]) == {"id", "title", "description", "category", "kind", "icon"}
    bob = (await directory.ask("catalog", "mine?user=bob&groups=chemistry"))["apps"]
    assert "web" in {a["id"] for a in bob} and "phys-web" not in {a["id"] for a in bob}
    assert await directory.ask("catalog", "mine") is None  # a 400 (no user): None, logged
