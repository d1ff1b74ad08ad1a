"""Tier 2: the catalog service in-process, on real SQLite and PostgreSQL.

The hub is a small in-process stand-in answering the endpoints the service
calls (``/hub/api/user`` for tokens, users' servers, progress, shares), so the
service's real ``HubOAuth`` code authenticates every request. Covers versions,
validation, group visibility, the scope of every endpoint, and the launch flow
(what the service asks the hub to do).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from harness import free_port
from tornado import web

from labspace.services.catalog import app as service
from labspace.services.catalog.store import Catalog
from labspace.services.kit import web as kit
from labspace.services.kit.run import ServiceContext

SERVICE_TOKEN = secrets.token_hex(8)
PREFIX = "/services/catalog/"
SCOPE = "custom:labspace-catalog:"
ACCESS = "access:services!service=catalog"

WEB = {
    "id": "web",
    "version": "1.0",
    "title": "Web",
    "description": "A tiny web server",
    "category": "Tools",
    "kind": "proxied",
    "launch": {"command": ["python3", "-m", "http.server", "{port}"]},
}
VIEWER = {
    "id": "viewer",
    "version": "2.0",
    "title": "Viewer",
    "category": "Viewers",
    "kind": "standalone",
    "groups": ["physics"],
    "launch": {"command": ["python3", "-m", "http.server", "{port}"]},
}


@dataclass
class FakeHub:
    """What the service sees of the hub: tokens, users' servers, shares."""

    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    servers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    shares: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    refuse_start: tuple[int, str] | None = None
    minted: list[dict[str, Any]] = field(default_factory=list)
    workspace_auth: list[str] = field(default_factory=list)

    def token(self, name: str, scopes: list[str], groups: list[str] = ()) -> str:
        token = secrets.token_hex(8)
        self.tokens[token] = {
            "kind": "user",
            "name": name,
            "admin": False,
            "groups": list(groups),
            "scopes": [ACCESS, *scopes],
        }
        return token


def fake_hub_app(hub: FakeHub) -> web.Application:
    class Base(web.RequestHandler):
        def prepare(self):
            token = self.request.headers.get("Authorization", "").removeprefix("token ")
            if token != SERVICE_TOKEN and token not in hub.tokens:
                raise web.HTTPError(403)

        def check_xsrf_cookie(self):
            pass

        def body(self):
            return json.loads(self.request.body or b"null")

    class Me(Base):
        def get(self):
            token = self.request.headers["Authorization"].removeprefix("token ")
            self.finish(hub.tokens[token])

    class User(Base):
        def get(self, name):
            servers = {s: m for (u, s), m in hub.servers.items() if u == name}
            self.finish({"name": name, "servers": servers})

    class Server(Base):
        def post(self, name, server=""):
            hub.calls.append(("start", f"{name}/{server}", self.body()))
            if hub.refuse_start:
                status, message = hub.refuse_start
                self.set_status(status)
                return self.finish({"status": status, "message": message})
            hub.servers[(name, server)] = {
                "name": server,
                "ready": True,
                "pending": None,
                "user_options": self.body() or {},
            }
            self.set_status(201)

        def delete(self, name, server=""):
            hub.calls.append(("stop", f"{name}/{server}", None))
            hub.servers.pop((name, server), None)
            self.set_status(204)

    class Progress(Base):
        def get(self, name, server=""):
            self.set_header("Content-Type", "text/event-stream")
            self.write('data: {"progress": 100, "ready": true, "message": "Ready"}\n\n')

    class Shares(Base):
        def get(self, name, server):
            self.finish({"items": hub.shares.get((name, server), [])})

        def post(self, name, server):
            body = self.body()
            hub.calls.append(("share", f"{name}/{server}", body))
            item = {"user": {"name": body["user"]}} if "user" in body else {"group": body}
            hub.shares.setdefault((name, server), []).append(item)
            self.finish({})

        def patch(self, name, server):
            hub.calls.append(("revoke", f"{name}/{server}", self.body()))
            hub.shares.pop((name, server), None)
            self.finish({})

    class Tokens(Base):
        def post(self, name):
            body = self.body()
            token = secrets.token_hex(8)
            hub.minted.append({"user": name, "token": token, **body})
            self.set_status(201)
            self.finish({"token": token})

    class Workspace(web.RequestHandler):
        """A workspace's lifecycle API: records who calls it."""

        def check_xsrf_cookie(self):
            pass

        def get(self, name, app_id):
            hub.workspace_auth.append(self.request.headers.get("Authorization", ""))
            self.finish({"id": app_id, "lines": ["app log line"]})

        post = get

    api = "/hub/api/"
    return web.Application(
        [
            (r"/user/([^/]+)/labspace-apps/api/apps/([^/]+)/(?:logs|stop)", Workspace),
            (api + r"users/([^/]+)/tokens", Tokens),
            (api + "user", Me),
            (api + r"users/([^/]+)", User),
            (api + r"users/([^/]+)/server", Server),
            (api + r"users/([^/]+)/servers/([^/]+)", Server),
            (api + r"users/([^/]+)/server/progress", Progress),
            (api + r"users/([^/]+)/servers/([^/]+)/progress", Progress),
            (api + r"shares/([^/]+)/([^/]*)", Shares),
        ]
    )


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"catalog_{secrets.token_hex(4)}")


class Service:
    def __init__(self, url: str, hub: FakeHub, app: web.Application):
        self.url = url
        self.hub = hub
        self.app = app
        self.catalog: Catalog = app.settings["catalog"]

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url + PREFIX, headers=headers, timeout=10)

    async def call(self, token, method, path, body=None) -> httpx.Response:
        async with self.client(token) as c:
            kw = {"json": body} if body is not None else {}
            return await c.request(method, path, **kw)


@pytest.fixture
async def svc(monkeypatch, catalog_db, tmp_path):
    hub = FakeHub()
    hub_port, port = free_port(), free_port()
    hub_server = fake_hub_app(hub).listen(hub_port, address="127.0.0.1")
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{hub_port}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "catalog")
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-catalog")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    config = {
        "db_url": catalog_db,
        "data_dir": str(tmp_path),
        "apps": [WEB, VIEWER],
        "profiles": ["default"],
        "proxy_url": f"http://127.0.0.1:{hub_port}/",
    }
    monkeypatch.setenv("LABSPACE_CATALOG_CONFIG", json.dumps(config))
    started = await service.start(ServiceContext("catalog"))
    await started.app.settings["catalog"].warm  # jsonschema imported before the first check
    server = kit.make_server(started.app)
    server.listen(port, address="127.0.0.1")
    yield Service(f"http://127.0.0.1:{port}", hub, started.app)
    server.stop()
    hub_server.stop()
    await started.stop()


def user_token(svc: Service, name="ada", groups=("physics",), verbs=("read", "launch")) -> str:
    return svc.hub.token(name, [SCOPE + v for v in verbs], list(groups))


def admin_token(svc: Service) -> str:
    return svc.hub.token("root", [SCOPE + v for v in ("read", "launch", "admin")])


# -- versions ----------------------------------------------------------------


async def test_settings_and_bundled_apps_are_seeded(svc):
    r = await svc.call(user_token(svc), "GET", "api/apps")
    assert r.status_code == 200, r.text
    apps = {a["id"]: a for a in r.json()["apps"]}
    assert set(apps) == {"data-explorer", "dashboards", "web", "viewer"}
    assert apps["data-explorer"]["bundled"] and apps["data-explorer"]["icon"].startswith(
        "data:image/svg+xml;base64,"
    )
    assert apps["web"]["version"] == "1.0" and apps["web"]["source"] == "settings"


async def test_update_makes_a_version_and_keeps_the_old_one(svc):
    admin = admin_token(svc)
    r = await svc.call(admin, "PATCH", "api/apps/web", {"description": "Better"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "1.0+r2"
    r = await svc.call(admin, "PATCH", "api/apps/web", {"version": "1.1", "title": "Web 1.1"})
    assert r.json()["version"] == "1.1"
    r = await svc.call(user_token(svc), "GET", "api/apps/web/versions")
    versions = [v["version"] for v in r.json()["versions"]]
    assert versions == ["1.1", "1.0+r2", "1.0"]
    assert r.json()["versions"][-1]["definition"]["description"] == "A tiny web server"
    r = await svc.call(admin, "PATCH", "api/apps/web", {"title": "Web 1.1"})
    assert r.status_code == 409 and "Nothing changed" in r.json()["message"]


async def test_reseeding_same_settings_adds_no_version_and_a_change_adds_one(svc):
    assert svc.catalog.seed([WEB], "settings") == []
    changed = {**WEB, "description": "Changed in labspace.yaml"}
    assert svc.catalog.seed([changed], "settings") == ["web"]
    r = await svc.call(user_token(svc), "GET", "api/apps/web")
    assert r.json()["version"] == "1.0+r2" and r.json()["versions"] == 2


# -- validation --------------------------------------------------------------

BAD = [
    pytest.param({**WEB, "id": "New App"}, "app.id:", id="bad-id"),
    pytest.param({**WEB, "id": "n1", "colour": "red"}, "app.colour: unknown key", id="unknown-key"),
    pytest.param(
        {**WEB, "id": "n2", "launch": {"command": "python -m http.server {port}"}},
        "an argument list",
        id="shell-string",
    ),
    pytest.param(
        {**WEB, "id": "n3", "launch": {"command": ["python3", "-m", "http.server"]}},
        "'{port}' is missing",
        id="no-port",
    ),
    pytest.param({**WEB, "id": "n4", "launch": {}}, "needs a command", id="no-command"),
    pytest.param(
        {**VIEWER, "id": "n5", "launch": {**VIEWER["launch"], "profile": "huge"}},
        "no profile 'huge'",
        id="unknown-profile",
    ),
    pytest.param(
        {**WEB, "id": "n6", "launch": {"timeout": "soon"}}, "app.launch.timeout", id="type"
    ),
]


@pytest.mark.parametrize("defn, message", BAD)
async def test_bad_definitions_are_refused_with_a_clear_message(svc, defn, message):
    r = await svc.call(admin_token(svc), "POST", "api/apps", defn)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and message in r.json()["message"]


async def test_create_duplicate_and_not_json(svc):
    admin = admin_token(svc)
    r = await svc.call(admin, "POST", "api/apps", {**WEB, "id": "web2"})
    assert r.status_code == 201 and r.json()["source"] == "admin"
    r = await svc.call(admin, "POST", "api/apps", {**WEB, "id": "web2"})
    assert r.status_code == 409
    async with svc.client(admin) as c:
        r = await c.post("api/apps", content=b"{nope")
    assert r.status_code == 400 and r.json()["message"] == "The body is not valid JSON"


# -- groups, disable, delete ---------------------------------------------------


async def test_app_outside_groups_is_invisible(svc):
    outsider = user_token(svc, "bob", groups=["chemistry"])
    r = await svc.call(outsider, "GET", "api/apps")
    assert "viewer" not in {a["id"] for a in r.json()["apps"]}
    for method, path in [
        ("GET", "api/apps/viewer"),
        ("GET", "api/apps/viewer/versions"),
        ("POST", "api/apps/viewer/launch"),
    ]:
        r = await svc.call(outsider, method, path, {} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)
        assert r.json() == {"status": 404, "message": "No such app: viewer"}
    assert not svc.hub.calls
    r = await svc.call(user_token(svc), "GET", "api/apps/viewer")
    assert r.status_code == 200


async def test_disable_enable_delete(svc):
    admin, user = admin_token(svc), user_token(svc)
    r = await svc.call(admin, "POST", "api/apps/web/disable")
    assert r.json()["disabled"] is True
    assert (await svc.call(user, "GET", "api/apps/web")).status_code == 404
    assert (await svc.call(user, "POST", "api/apps/web/launch", {})).status_code == 404
    r = await svc.call(admin, "GET", "api/apps?all=1")
    assert {a["id"]: a["disabled"] for a in r.json()["apps"]}["web"] is True
    await svc.call(admin, "POST", "api/apps/web/enable")
    assert (await svc.call(user, "GET", "api/apps/web")).status_code == 200
    assert (await svc.call(admin, "DELETE", "api/apps/web")).status_code == 204
    assert (await svc.call(admin, "GET", "api/apps/web")).status_code == 404


async def test_filters(svc):
    r = await svc.call(user_token(svc), "GET", "api/apps?category=Viewers")
    assert [a["id"] for a in r.json()["apps"]] == ["viewer"]
    r = await svc.call(user_token(svc), "GET", "api/apps?q=tiny")
    assert [a["id"] for a in r.json()["apps"]] == ["web"]


# -- scopes on every endpoint --------------------------------------------------

ENDPOINTS = [
    ("GET", "api/apps", None, "read"),
    ("POST", "api/apps", {**WEB, "id": "web3"}, "admin"),
    ("GET", "api/apps/web", None, "read"),
    ("PATCH", "api/apps/web", {"description": "x"}, "admin"),
    ("DELETE", "api/apps/web", None, "admin"),
    ("GET", "api/apps/web/versions", None, "read"),
    ("POST", "api/apps/web/disable", None, "admin"),
    ("POST", "api/apps/web/enable", None, "admin"),
    ("POST", "api/apps/web/launch", {}, "launch"),
    ("GET", "api/launches", None, "launch"),
    ("GET", "api/launches/1", None, "launch"),
    ("POST", "api/launches/1/stop", None, "launch"),
    ("GET", "api/launches/1/logs", None, "launch"),
    ("GET", "api/launches/1/shares", None, "launch"),
    ("POST", "api/launches/1/shares", {"user": "x"}, "launch"),
    ("DELETE", "api/launches/1/shares", {"user": "x"}, "launch"),
]


@pytest.mark.parametrize(
    "method, path, body, verb", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
async def test_every_endpoint_needs_its_scope(svc, method, path, body, verb):
    r = await svc.call(None, method, path, body)
    assert r.status_code == 403, r.text
    assert r.json()["status"] == 403
    others = [v for v in ("read", "launch", "admin") if v != verb]
    if verb == "read":
        others = []  # launch and admin imply read through subscopes in the hub
    lacking = svc.hub.token("ada", [SCOPE + v for v in others if v != "admin"], ["physics"])
    r = await svc.call(lacking, method, path, body)
    assert r.status_code == 403, r.text
    assert f"{SCOPE}{verb}" in r.json()["message"]
    allowed = svc.hub.token("ada", [SCOPE + verb], ["physics"])
    r = await svc.call(allowed, method, path, body)
    assert r.status_code != 403, r.text


async def test_openapi_document_lists_every_endpoint(svc):
    async with httpx.AsyncClient(base_url=svc.url) as c:
        r = await c.get(PREFIX + "api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = {
        (m.upper(), p.lstrip("/"))
        for p, ops in doc["paths"].items()
        for m in ops
        if m != "parameters"
    }
    for method, path, _, _ in ENDPOINTS:
        templ = path.replace("/web", "/{app_id}").replace("/1", "/{launch_id}")
        assert (method, templ) in paths, templ


async def test_unknown_api_path_is_json_404(svc):
    r = await svc.call(user_token(svc), "GET", "api/nothing-here")
    assert r.status_code == 404 and r.json()["status"] == 404


# -- launch flow ---------------------------------------------------------------


async def test_launch_proxied_starts_the_default_workspace_without_options(svc):
    token = user_token(svc)
    r = await svc.call(token, "POST", "api/apps/web/launch", {})
    assert r.status_code in (200, 202), r.text
    launch = r.json()
    assert launch["url"] == "/user/ada/web/" and launch["version"] == "1.0"
    assert svc.hub.calls == [("start", "ada/", {})]
    r = await svc.call(token, "GET", f"api/launches/{launch['id']}")
    assert r.json()["state"] == "running"
    # a second launch finds the workspace running and starts nothing
    r = await svc.call(token, "POST", "api/apps/web/launch", {})
    assert r.status_code == 200 and len(svc.hub.calls) == 1
    r = await svc.call(token, "POST", "api/apps/web/launch", {"version": "0.1"})
    assert r.status_code == 404 and "No version '0.1'" in r.json()["message"]


async def test_launch_standalone_names_app_and_version_and_keeps_it(svc):
    token = user_token(svc)
    r = await svc.call(token, "POST", "api/apps/viewer/launch", {})
    launch = r.json()
    assert svc.hub.calls == [("start", "ada/viewer", {"app": "viewer", "version": "2.0"})]
    assert launch["url"] == "/user/ada/viewer/viewer/"
    await svc.call(admin_token(svc), "PATCH", "api/apps/viewer", {"version": "3.0"})
    # the running launch keeps its version; a new launch of 3.0 must wait for a stop
    r = await svc.call(token, "GET", f"api/launches/{launch['id']}")
    assert r.json()["version"] == "2.0" and r.json()["state"] == "running"
    r = await svc.call(token, "POST", "api/apps/viewer/launch", {})
    assert r.status_code == 409 and "stop it" in r.json()["message"]
    r = await svc.call(token, "POST", f"api/launches/{launch['id']}/stop")
    assert r.json()["state"] == "stopped"
    assert svc.hub.calls[-1] == ("stop", "ada/viewer", None)
    r = await svc.call(token, "POST", "api/apps/viewer/launch", {"version": "2.0"})
    assert svc.hub.calls[-1] == ("start", "ada/viewer", {"app": "viewer", "version": "2.0"})
    r = await svc.call(token, "GET", "api/launches")
    assert [x["version"] for x in r.json()["launches"]] == ["2.0", "2.0"]


async def test_refused_start_is_a_failed_launch_with_the_hubs_message(svc):
    svc.hub.refuse_start = (400, "No such app: viewer")
    r = await svc.call(user_token(svc), "POST", "api/apps/viewer/launch", {})
    assert r.status_code == 400 and r.json()["message"] == "No such app: viewer"
    r = await svc.call(user_token(svc), "GET", "api/launches")
    assert r.json()["launches"][0]["state"] == "failed"


async def test_launches_are_private(svc):
    r = await svc.call(user_token(svc), "POST", "api/apps/web/launch", {})
    other = user_token(svc, "eve")
    r = await svc.call(other, "GET", f"api/launches/{r.json()['id']}")
    assert r.status_code == 404


async def test_share_and_revoke_a_standalone_app(svc):
    token = user_token(svc)
    launch = (await svc.call(token, "POST", "api/apps/viewer/launch", {})).json()
    r = await svc.call(token, "POST", f"api/launches/{launch['id']}/shares", {"user": "bob"})
    assert r.status_code == 201, r.text
    r = await svc.call(token, "GET", f"api/launches/{launch['id']}/shares")
    assert r.json()["shares"][0]["user"] == "bob"
    r = await svc.call(token, "DELETE", f"api/launches/{launch['id']}/shares", {"user": "bob"})
    assert r.status_code == 204
    assert [c[0] for c in svc.hub.calls] == ["start", "share", "revoke"]
    bad = await svc.call(token, "POST", f"api/launches/{launch['id']}/shares", {"who": "bob"})
    assert bad.status_code == 400
    web_launch = (await svc.call(token, "POST", "api/apps/web/launch", {})).json()
    r = await svc.call(token, "POST", f"api/launches/{web_launch['id']}/shares", {"user": "bob"})
    assert r.status_code == 400 and "Only standalone" in r.json()["message"]


async def test_catalog_page_redirects_to_hub_login(svc):
    async with httpx.AsyncClient(base_url=svc.url, follow_redirects=False) as c:
        r = await c.get(PREFIX)
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["location"]


async def test_logs_say_why_there_are_none(svc):
    token = user_token(svc)
    launch = (await svc.call(token, "POST", "api/apps/viewer/launch", {})).json()
    await svc.call(token, "POST", f"api/launches/{launch['id']}/stop")
    r = await svc.call(token, "GET", f"api/launches/{launch['id']}/logs?lines=5")
    assert r.status_code == 200
    assert r.json()["lines"] == ["(no app log: your server 'viewer' is not running)"]


async def test_settings_may_restrict_a_bundled_app(svc, catalog_db):
    explorer = {
        "id": "data-explorer",
        "title": "Data Explorer",
        "kind": "proxied",
        "groups": ["physics"],
        "launch": {"bundled": True},
    }
    config = {"db_url": catalog_db, "apps": [explorer]}
    for _ in range(2):  # a restart adds no version
        service.seed(svc.catalog, config)
    outsider = user_token(svc, "bob", groups=["chemistry"])
    assert (await svc.call(outsider, "GET", "api/apps/data-explorer")).status_code == 404
    r = await svc.call(user_token(svc), "GET", "api/apps/data-explorer/versions")
    assert [v["source"] for v in r.json()["versions"]] == ["settings", "bundled"]


# -- bad input: a 4xx naming what is wrong, never a 5xx -------------------------

BAD_INPUT = [
    ("GET", "api/launches/99999999999999999999999", None, 404, "No such launch"),
    ("GET", "api/launches/2147483648/logs", None, 404, "No such launch"),
    ("GET", "api/launches/{launch}/logs?lines=abc", None, 400, "lines must be"),
    ("GET", "api/launches/{launch}/logs?lines=0", None, 400, "lines must be"),
    ("GET", "api/apps?all=3.69e307", None, 400, "all must be true or false"),
    ("GET", "api/launches?active=null", None, 400, "active must be true or false"),
    ("POST", "api/apps/web/launch", [], 400, "must be a JSON object"),
    ("POST", "api/apps/web/launch", {"version": 5}, 400, "version must be a string"),
    ("POST", "api/apps", None, 400, "app"),
    ("POST", "api/apps", {**WEB, "id": None}, 400, "app.id"),
    ("POST", "api/apps", {**WEB, "id": "n7", "title": None}, 400, "app.title"),
    ("POST", "api/apps", {**WEB, "id": "n8", "launch": None}, 400, "app.launch"),
    ("POST", "api/apps", {**WEB, "id": "n9", "groups": None}, 400, "app.groups"),
    ("POST", "api/apps", "web", 400, ""),
    ("PATCH", "api/apps/web", b'{"launch": {"timeout": NaN}}', 400, "not valid JSON"),
    ("PATCH", "api/apps/web", b'{"launch": {"timeout": 1e400}}', 400, "not valid JSON"),
    ("PATCH", "api/apps/web", {"title": None}, 400, "app.title"),
    ("PATCH", "api/apps/web", {"launch": None}, 400, "app.launch"),
    ("PATCH", "api/apps/web", {"version": None}, 400, "app.version"),
    ("PATCH", "api/apps/web", [], 400, "JSON object"),
    ("PATCH", "api/apps/web", {"disabled": None}, 400, "disabled"),
    ("POST", "api/launches/{launch}/shares", {"user": None}, 400, "non-empty string"),
    ("POST", "api/launches/{launch}/shares", None, 400, ""),
    ("DELETE", "api/launches/{launch}/shares", [], 400, "JSON object"),
]


@pytest.mark.parametrize(
    "method, path, body, status, message",
    BAD_INPUT,
    ids=[f"{m} {p} {b!s:.30}" for m, p, b, _, _ in BAD_INPUT],
)
async def test_bad_input_is_a_clear_4xx(svc, method, path, body, status, message):
    token = user_token(svc, verbs=("read", "launch", "admin"))
    launch = (await svc.call(token, "POST", "api/apps/viewer/launch", {})).json()
    async with svc.client(token) as c:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        content = raw if body is not None else b""
        r = await c.request(method, path.format(launch=launch["id"]), content=content)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and message in r.json()["message"], r.text


async def test_version_null_is_the_current_version(svc):
    r = await svc.call(user_token(svc), "POST", "api/apps/viewer/launch", {"version": None})
    assert r.status_code == 202 and r.json()["version"] == "2.0", r.text


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("PUT", "api/apps", "GET, POST"),
        ("DELETE", "api/launches", "GET"),
        ("PATCH", "api/launches/1/stop", "POST"),
        ("POST", "api/openapi.json", "GET"),
    ],
)
async def test_unknown_method_is_405_with_allow(svc, method, path, allow):
    r = await svc.call(user_token(svc), method, path)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow and r.json()["status"] == 405


async def test_body_over_one_mib_is_413(svc):
    big = {**WEB, "id": "big", "description": "x" * (1024 * 1024)}
    r = await svc.call(admin_token(svc), "POST", "api/apps", big)
    assert r.status_code == 413, r.text
    assert r.json() == {"status": 413, "message": "The body is larger than 1048576 bytes"}
    r = await svc.call(admin_token(svc), "GET", "api/apps")  # the service goes on
    assert r.status_code == 200


async def test_a_new_launch_supersedes_the_old_one(svc):
    token = user_token(svc)
    first = (await svc.call(token, "POST", "api/apps/web/launch", {})).json()
    second = (await svc.call(token, "POST", "api/apps/web/launch", {})).json()
    r = await svc.call(token, "GET", f"api/launches/{first['id']}")
    assert r.json()["state"] == "superseded", r.text
    assert r.json()["message"] == f"Superseded by launch {second['id']}"
    r = await svc.call(token, "GET", "api/launches?active=1")
    assert [x["id"] for x in r.json()["launches"]] == [second["id"]]


def test_access_log_masks_oauth_code_and_state():
    uri = "/services/catalog/oauth_callback?code=abc123&state=xyz&next=%2F"
    masked = kit.masked_uri(uri)
    assert masked == "/services/catalog/oauth_callback?code=[secret]&state=[secret]&next=%2F"
    assert kit.masked_uri("/x?st%61te=1") == "/x?st%61te=[secret]"


def test_cookie_secret_is_kept_0600(tmp_path):
    config = {"data_dir": str(tmp_path)}
    config = ServiceContext("catalog", {"LABSPACE_CATALOG_CONFIG": json.dumps(config)})
    first = config.cookie_secret()
    assert first == config.cookie_secret() and len(first) >= 32
    path = tmp_path / "secrets" / "catalog-cookie-secret"
    assert path.stat().st_mode & 0o777 == 0o600


EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned=1">'
    "<script>window.pwned=2</script><rect width='5' height='5' fill='#123'/></svg>"
)


async def test_svg_icons_are_rebuilt_without_script(svc):
    import base64

    icon = "data:image/svg+xml;base64," + base64.b64encode(EVIL_SVG.encode()).decode()
    r = await svc.call(admin_token(svc), "POST", "api/apps", {**WEB, "id": "evil", "icon": icon})
    assert r.status_code == 201, r.text
    kept = base64.b64decode(r.json()["icon"].split(",", 1)[1]).decode()
    assert "<rect" in kept and "script" not in kept and "onload" not in kept
    for bad in ("data:text/html;base64,PGI+", "javascript:alert(1)", "data:image/png;base64,AAAA"):
        r = await svc.call(admin_token(svc), "PATCH", "api/apps/evil", {"icon": bad})
        assert r.status_code == 400 and r.json()["message"].startswith("app.icon: "), r.text


async def test_refusals_keep_a_kept_alive_connection_usable(svc):
    """Every refusal comes after the body is read, so the connection stays open
    (the hub's proxy reuses it: a cut one was a 503)."""
    async with svc.client() as c:
        big = b"[" + b"0," * (600 * 1024) + b"0]"  # 1.2 MB
        r = await c.post("api/apps/web/launch", content=big)  # anonymous
        assert r.status_code == 403 and r.headers.get("Connection") != "close"
        r = await c.post("api/apps", content=big, headers={"Authorization": "token x"})
        assert r.status_code == 413, r.text  # the size is checked before asking the hub
        token = {"Authorization": f"token {user_token(svc)}"}
        r = await c.put("api/launches", content=b"{}", headers=token)
        assert r.status_code == 405 and r.headers["Allow"] == "GET", r.text
        r = await c.post("api/apps", content=big, headers=token)
        assert r.status_code == 413 and r.headers.get("Connection") != "close", r.text
        r = await c.get("api/apps", headers=token)
        assert r.status_code == 200, r.text


async def test_workspace_calls_carry_a_minted_token_for_that_server_only(svc):
    token = user_token(svc)
    launch = (await svc.call(token, "POST", "api/apps/web/launch", {})).json()
    for _ in range(2):
        r = await svc.call(token, "GET", f"api/launches/{launch['id']}/logs?lines=5")
        assert r.json()["lines"] == ["app log line"], r.text
    r = await svc.call(token, "POST", f"api/launches/{launch['id']}/stop")
    assert r.json()["state"] == "stopped", r.text
    (minted,) = svc.hub.minted  # one token, reused while it lives
    assert minted["user"] == "ada" and minted["scopes"] == ["access:servers!server=ada/"]
    assert 0 < minted["expires_in"] <= 300
    assert svc.hub.workspace_auth == [f"token {minted['token']}"] * 3
    assert f"token {SERVICE_TOKEN}" not in svc.hub.workspace_auth


async def test_tcp_apps_are_refused_where_loopback_is_shared(svc):
    svc.catalog.shared_loopback = True  # what the settings say for the local backend
    r = await svc.call(admin_token(svc), "POST", "api/apps", {**WEB, "id": "tcp"})
    assert r.status_code == 400 and "app.launch.unix_socket" in r.json()["message"], r.text
    socket_app = {**WEB, "id": "sock", "launch": {"command": ["x", "{unix_socket}"]}}
    socket_app["launch"]["unix_socket"] = True
    r = await svc.call(admin_token(svc), "POST", "api/apps", socket_app)
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient(base_url=svc.url) as c:
        doc = (await c.get(PREFIX + "api/openapi.json")).json()
    launch_rule = doc["components"]["schemas"]["App"]["allOf"][-1]["properties"]["launch"]
    assert launch_rule["then"]["properties"]["unix_socket"] == {"const": True}
