"""Tier 2: the data service in-process, on real SQLite and PostgreSQL.

The hub is a small in-process stand-in answering what the service asks of it
(``/hub/api/user`` for each token, so the service's real ``HubOAuth`` code
authenticates every request; the running servers for the holders; a server's
stop), so no part of the service is mocked. Host datasets are real folders
under a real root in ``tmp_path``.

Covers seeding from the settings (datasets, grants, sealed credentials, audited
changes), grants and their audit, dataset changes and path safety, credentials
(sealed with a key made once, never returned), the caller's own datasets, the
hub side's start (strongest grant wins, s3 credentials by level, audited),
audit filters in JSON and CSV, holders of revoked grants and their stop, and
the OpenAPI document against the routes.

Fixtures: ``world`` (the folders, settings and credentials), ``data_svc`` (the
service started on them, with its fake hub; ``restart()`` starts it again on
the same database and data_dir).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import free_port
from sqlalchemy import create_engine, text
from tornado import web

from labspace.services.data import app as service
from labspace.services.data import handlers, internal
from labspace.services.kit import web as kit
from labspace.services.kit.run import ServiceContext

SERVICE_TOKEN = secrets.token_hex(8)
COOKIE_SECRET = secrets.token_hex(32)
PREFIX = "/services/data/"
SCOPE = "custom:labspace-data:"
ACCESS = "access:services!service=data"
# the s3 credentials of the settings (their values must never leave the service)
READ_KEY = {"access_key_id": "AKIDREAD0001", "secret_access_key": "read-secret-" + "x" * 20}
WRITE_KEY = {"access_key_id": "AKIDWRITE002", "secret_access_key": "write-secret-" + "y" * 20}
SECRETS = (READ_KEY["secret_access_key"], WRITE_KEY["secret_access_key"], "AKIDREAD", "AKIDWRITE")


@dataclass
class FakeHub:
    """What the service sees of the hub: tokens, running servers, stops."""

    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: dict[str, dict[str, Any]] = field(default_factory=dict)  # user -> model
    calls: list[tuple[str, str]] = field(default_factory=list)

    def token(self, name: str, scopes: list[str], groups=(), admin=False) -> str:
        token = secrets.token_hex(8)
        self.tokens[token] = {
            "kind": "user",
            "name": name,
            "admin": admin,
            "groups": list(groups),
            "scopes": [ACCESS, *scopes],
        }
        return token

    def run(self, user: str, server: str = "", groups=()) -> None:
        model = self.active.setdefault(user, {"name": user, "groups": [], "servers": {}})
        model["groups"] = list(groups)
        model["servers"][server] = {"name": server, "ready": True, "pending": None}


def fake_hub_app(hub: FakeHub) -> web.Application:
    class Base(web.RequestHandler):
        def prepare(self):
            token = self.request.headers.get("Authorization", "").removeprefix("token ")
            if token != SERVICE_TOKEN and token not in hub.tokens:
                raise web.HTTPError(403)

        def check_xsrf_cookie(self):
            pass

    class Me(Base):
        def get(self):
            token = self.request.headers["Authorization"].removeprefix("token ")
            self.finish(hub.tokens[token])

    class Users(Base):
        def get(self):
            assert self.get_argument("state") == "active"
            offset = int(self.get_argument("offset", "0"))
            items = list(hub.active.values())[offset : offset + 2]  # pages of two
            more = offset + 2 < len(hub.active)
            nxt = {"offset": offset + 2} if more else None
            self.finish({"items": items, "_pagination": {"next": nxt}})

    class Server(Base):
        def delete(self, name, server=""):
            hub.calls.append(("stop", f"{name}/{server}"))
            model = hub.active.get(name)
            if model:
                model["servers"].pop(server, None)
            self.set_status(202)

    api = "/hub/api/"
    return web.Application(
        [
            (api + "user", Me),
            (api + "users", Users),
            (api + r"users/([^/]+)/server", Server),
            (api + r"users/([^/]+)/servers/([^/]+)", Server),
        ]
    )


@dataclass
class World:
    root: Path
    outside: Path
    datasets: list[dict[str, Any]]
    credentials_file: Path


@pytest.fixture
def world(tmp_path) -> World:
    root = tmp_path / "srv" / "datasets"
    outside = tmp_path / "srv" / "datasets2"  # a sibling with the root's name as prefix
    for folder in (root / "genomes", root / "lab-a-scratch", outside / "secret"):
        folder.mkdir(parents=True)
    (root / "genomes" / "hg38.fa").write_text(">chr1\nACGT\n")
    (root / "escape").symlink_to(outside / "secret")
    datasets = [
        {
            "id": "genomes",
            "title": "Reference genomes",
            "kind": "host",
            "source": str(root / "genomes"),
            "size": "10G",
            "owner_group": "lab-a",
            "tags": ["reference"],
            "grants": [{"group": "lab-a", "level": "read"}],
        },
        {
            "id": "lab-a-scratch",
            "title": "Lab A scratch",
            "kind": "host",
            "source": str(root / "lab-a-scratch"),
            "grants": [{"group": "lab-a", "level": "write"}, {"user": "bob", "level": "read"}],
        },
        {
            "id": "bucket",
            "title": "A bucket",
            "kind": "s3",
            "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "lab-bucket", "prefix": "p/"},
            "grants": [{"group": "lab-a", "level": "read"}, {"user": "carol", "level": "write"}],
        },
    ]
    secrets_dir = tmp_path / "data" / "secrets"
    secrets_dir.mkdir(parents=True)
    credentials_file = secrets_dir / "data-settings-credentials.json"
    credentials_file.write_text(json.dumps({"bucket": {"read": READ_KEY, "write": WRITE_KEY}}))
    credentials_file.chmod(0o600)
    return World(root, outside, datasets, credentials_file)


@pytest.fixture(params=["sqlite", "postgres"])
def data_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"data_{secrets.token_hex(4)}")


class Service:
    """The service under test, its fake hub, and how to call it."""

    def __init__(self, hub: FakeHub, monkeypatch, config: dict[str, Any]):
        self.hub = hub
        self.monkeypatch = monkeypatch
        self.config = config
        self.url = ""
        self.app: web.Application | None = None
        self._server = None
        self._stop = None

    @property
    def store(self):
        return self.app.settings["store"]

    async def start(self, **changes: Any) -> None:
        self.config.update(changes)
        self.monkeypatch.setenv("LABSPACE_DATA_CONFIG", json.dumps(self.config))
        started = await service.start(ServiceContext("data"))
        port = free_port()
        self._server = kit.make_server(started.app)
        self._server.listen(port, address="127.0.0.1")
        self.url, self.app, self._stop = f"http://127.0.0.1:{port}", started.app, started.stop

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._stop()
            self._server = None

    async def restart(self, **changes: Any) -> None:
        await self.stop()
        await self.start(**changes)

    def client(self, token: str | None = None, **kw) -> httpx.AsyncClient:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url + PREFIX, headers=headers, timeout=10, **kw)

    async def call(self, token, method, path, body=None, **kw) -> httpx.Response:
        async with self.client(token) as c:
            if body is not None:
                kw["json"] = body
            return await c.request(method, path, **kw)

    async def internal(self, body, token=SERVICE_TOKEN) -> httpx.Response:
        return await self.call(token, "POST", "api/internal/start", body)

    # callers
    def user(self, name="alice", groups=("lab-a",)) -> str:
        return self.hub.token(name, [SCOPE + "read"], groups)

    def admin(self, name="root") -> str:
        return self.hub.token(name, [SCOPE + "admin"])


async def started_service(monkeypatch, tmp_path, world: World, db_url: str):
    hub = FakeHub()
    hub_port = free_port()
    hub_server = fake_hub_app(hub).listen(hub_port, address="127.0.0.1")
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{hub_port}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "data")
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-data")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    monkeypatch.setenv("JUPYTERHUB_COOKIE_SECRET", COOKIE_SECRET)
    config = {
        "db_url": db_url,
        "data_dir": str(tmp_path / "data"),
        "base_url": "/",
        "backend": "docker",
        "roots": [str(world.root)],
        "datasets": world.datasets,
        "credentials_file": str(world.credentials_file),
    }
    svc = Service(hub, monkeypatch, config)
    await svc.start()
    return svc, hub_server


@pytest.fixture
async def data_svc(monkeypatch, tmp_path, world, data_db):
    svc, hub_server = await started_service(monkeypatch, tmp_path, world, data_db)
    yield svc
    await svc.stop()
    hub_server.stop()


def no_secret_in(text_: str) -> None:
    for value in SECRETS:
        assert value not in text_, f"a credential value leaked: {value[:8]}..."


# -- seeding -----------------------------------------------------------------


async def test_settings_are_seeded_with_grants_and_sealed_credentials(data_svc, tmp_path):
    r = await data_svc.call(data_svc.admin(), "GET", "api/datasets")
    assert r.status_code == 200, r.text
    by_id = {d["id"]: d for d in r.json()}
    assert set(by_id) == {"genomes", "lab-a-scratch", "bucket"}
    genomes = by_id["genomes"]
    assert genomes["mount_path"] == "/data/genomes" and genomes["size"] == 10 * 1024**3
    assert genomes["source_of"] == "settings" and genomes["tags"] == ["reference"]
    assert genomes["s3"] is None and genomes["credentials"] == {"read": False, "write": False}
    assert by_id["bucket"]["credentials"] == {"read": True, "write": True}
    assert by_id["bucket"]["s3"]["bucket"] == "lab-bucket"
    no_secret_in(r.text)
    grants = (
        await data_svc.call(data_svc.admin(), "GET", "api/datasets/lab-a-scratch/grants")
    ).json()
    assert [(g["subject_type"], g["subject"], g["level"]) for g in grants] == [
        ("group", "lab-a", "write"),
        ("user", "bob", "read"),
    ]
    assert all(g["granted_by"] == "settings" for g in grants)
    # the key: made once, the owner's only; the database holds no plain value
    key = tmp_path / "data" / "secrets" / "data-credentials-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    engine = create_engine(data_svc.store.db.url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sealed FROM data_credentials")).fetchall()
    engine.dispose()
    assert len(rows) == 2
    for (sealed,) in rows:
        no_secret_in(bytes(sealed).decode("latin-1"))


async def test_reseeding_audits_only_what_changed(data_svc, world):
    admin = data_svc.admin()
    before = (await data_svc.call(admin, "GET", "api/audit")).json()
    await data_svc.restart()  # the same settings again: nothing new
    assert (await data_svc.call(admin, "GET", "api/audit")).json() == before
    world.datasets[0]["grants"] = [{"group": "lab-a", "level": "write"}]
    world.datasets[1]["grants"] = [{"group": "lab-a", "level": "write"}]  # bob's is gone
    await data_svc.restart(datasets=world.datasets)
    events = (await data_svc.call(admin, "GET", "api/audit?limit=2")).json()
    changes = {(e["dataset"], e["subject"], e["before"], e["after"]) for e in events}
    assert changes == {
        ("genomes", "group:lab-a", "read", "write"),
        ("lab-a-scratch", "user:bob", "read", None),
    }
    assert {e["actor"] for e in events} == {"settings"}


async def test_key_is_kept_so_credentials_survive_a_restart(data_svc, tmp_path):
    key = (tmp_path / "data" / "secrets" / "data-credentials-key").read_bytes()
    await data_svc.restart(credentials_file="")  # settings' credentials no longer given
    assert (tmp_path / "data" / "secrets" / "data-credentials-key").read_bytes() == key
    admin = data_svc.admin()
    r = await data_svc.call(admin, "GET", "api/datasets/bucket")
    assert r.json()["credentials"] == {"read": False, "write": False}  # removed, audited
    r = await data_svc.call(
        admin, "PUT", "api/datasets/bucket/credentials/read", {**READ_KEY, "session_token": "tok"}
    )
    assert r.status_code == 204, r.text
    await data_svc.restart()  # the one stored through the API, opened with the kept key
    r = await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    bucket = next(d for d in r.json()["datasets"] if d["id"] == "bucket")
    assert bucket["credentials"] == {**READ_KEY, "session_token": "tok"}


async def test_an_unreadable_credentials_file_keeps_the_stored_ones(data_svc, world, caplog):
    world.credentials_file.unlink()  # named, but gone (the hub did not write it this time)
    await data_svc.restart()
    r = await data_svc.call(data_svc.admin(), "GET", "api/datasets/bucket")
    assert r.json()["credentials"] == {"read": True, "write": True}
    assert "cannot read the settings' credentials" in caplog.text
    world.credentials_file.write_text("[1, 2]")
    await data_svc.restart()
    r = await data_svc.internal({"user": "carol", "server": "", "groups": []})
    assert r.json()["datasets"][0]["credentials"] == WRITE_KEY
    no_secret_in(caplog.text)


async def test_settings_without_datasets_key_leave_them_alone_but_an_empty_list_removes(
    data_svc,
):
    admin = data_svc.admin()
    del data_svc.config["datasets"]
    await data_svc.restart()
    assert len((await data_svc.call(admin, "GET", "api/datasets")).json()) == 3
    await data_svc.restart(datasets=[])
    assert (await data_svc.call(admin, "GET", "api/datasets")).json() == []
    events = (await data_svc.call(admin, "GET", "api/audit?dataset=genomes&limit=2")).json()
    assert events[0]["kind"] == "dataset" and events[0]["after"] is None
    assert events[0]["actor"] == "settings" and events[1]["kind"] == "grant"


async def test_a_bad_settings_dataset_is_skipped_not_fatal(data_svc, world):
    bad = {"id": "escape", "kind": "host", "source": str(world.root / "escape")}
    await data_svc.restart(datasets=[*world.datasets, bad])
    r = await data_svc.call(data_svc.admin(), "GET", "api/datasets/escape")
    assert r.status_code == 404


# -- visibility ----------------------------------------------------------------


async def test_a_user_sees_only_granted_datasets_with_their_level(data_svc):
    alice = data_svc.user("alice", ["lab-a"])
    r = await data_svc.call(alice, "GET", "api/datasets")
    assert {d["id"]: d["level"] for d in r.json()} == {
        "genomes": "read",
        "lab-a-scratch": "write",
        "bucket": "read",
    }
    bob = data_svc.user("bob", ["lab-b"])
    assert [d["id"] for d in (await data_svc.call(bob, "GET", "api/datasets")).json()] == [
        "lab-a-scratch"
    ]
    hidden = await data_svc.call(bob, "GET", "api/datasets/genomes")
    missing = await data_svc.call(bob, "GET", "api/datasets/nothing-here")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["message"].replace("genomes", "X") == missing.json()["message"].replace(
        "nothing-here", "X"
    )
    r = await data_svc.call(bob, "GET", "api/datasets/lab-a-scratch")
    assert r.status_code == 200 and r.json()["level"] == "read"


async def test_my_datasets_say_where_and_how_without_credentials(data_svc):
    r = await data_svc.call(data_svc.user("carol", ["lab-a"]), "GET", "api/me/datasets")
    assert r.status_code == 200
    mine = {d["id"]: d for d in r.json()}
    assert mine["bucket"]["level"] == "write"  # carol's own grant beats lab-a's read
    assert mine["bucket"]["url"] == "s3://lab-bucket/p/"
    assert mine["genomes"]["mount_path"] == "/data/genomes" and mine["genomes"]["kind"] == "host"
    assert "url" not in mine["genomes"] and "credentials" not in mine["bucket"]
    no_secret_in(r.text)


async def test_the_home_pages_list_is_my_datasets_with_the_service_token_only(data_svc):
    carol = data_svc.user("carol", ["lab-a"])
    mine = (await data_svc.call(carol, "GET", "api/me/datasets")).json()
    who = {"user": "carol", "groups": "lab-a"}
    r = await data_svc.call(SERVICE_TOKEN, "GET", "api/internal/mine", params=who)
    assert r.status_code == 200
    levels = {d["id"]: d["level"] for d in r.json()["datasets"]}
    assert levels == {d["id"]: d["level"] for d in mine}
    no_secret_in(r.text)
    assert (await data_svc.call(carol, "GET", "api/internal/mine", params=who)).status_code == 403
    assert (await data_svc.call(SERVICE_TOKEN, "GET", "api/internal/mine")).status_code == 400


# -- the hub side's start ------------------------------------------------------


async def test_start_gives_each_dataset_its_strongest_level_and_s3_credential(data_svc):
    r = await data_svc.internal(
        {"user": "carol", "server": "gpu", "groups": ["lab-a"], "backend": "kubernetes"}
    )
    assert r.status_code == 200, r.text
    got = {d["id"]: d for d in r.json()["datasets"]}
    assert {k: d["level"] for k, d in got.items()} == {
        "genomes": "read",
        "lab-a-scratch": "write",
        "bucket": "write",
    }
    assert got["bucket"]["credentials"] == WRITE_KEY and got["genomes"]["credentials"] is None
    assert got["genomes"]["source"].endswith("/genomes") and got["genomes"]["sub_path"] == ""
    assert got["bucket"]["s3"]["endpoint"] == "http://127.0.0.1:9000"
    r = await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    bucket = next(d for d in r.json()["datasets"] if d["id"] == "bucket")
    assert bucket["level"] == "read" and bucket["credentials"] == READ_KEY
    r = await data_svc.internal({"user": "eve", "server": "", "groups": ["lab-c"]})
    assert r.json() == {"datasets": []}
    # every start is in the audit, without a secret
    audit = await data_svc.call(data_svc.admin(), "GET", "api/audit?user=carol")
    start = audit.json()[0]
    assert start["kind"] == "start" and start["server"] == "gpu"
    assert {(x["id"], x["level"]) for x in start["datasets"]} == {
        ("genomes", "read"),
        ("lab-a-scratch", "write"),
        ("bucket", "write"),
    }
    no_secret_in(audit.text)


async def test_a_folder_that_became_a_link_out_is_left_out_of_the_start(data_svc, world):
    scratch = world.root / "lab-a-scratch"
    scratch.rmdir()
    scratch.symlink_to(world.outside / "secret")  # swapped in after it was saved
    r = await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    assert [d["id"] for d in r.json()["datasets"]] == ["bucket", "genomes"]
    [start] = (await data_svc.call(data_svc.admin(), "GET", "api/audit?user=alice")).json()
    assert [x["id"] for x in start["datasets"]] == ["bucket", "genomes"]  # what it really got


async def test_write_grant_without_write_credential_gets_the_read_one_as_read(data_svc):
    admin = data_svc.admin()
    r = await data_svc.call(admin, "DELETE", "api/datasets/bucket/credentials/write")
    assert r.status_code == 204
    r = await data_svc.internal({"user": "carol", "server": "", "groups": []})
    [bucket] = r.json()["datasets"]
    assert bucket["level"] == "read" and bucket["credentials"] == READ_KEY
    assert (
        await data_svc.call(admin, "DELETE", "api/datasets/bucket/credentials/write")
    ).status_code == 404


async def test_local_backend_mount_paths_are_links_in_the_home(data_svc):
    r = await data_svc.internal({"user": "bob", "server": "", "groups": [], "backend": "local"})
    assert [d["mount_path"] for d in r.json()["datasets"]] == ["~/data/lab-a-scratch"]


# -- grants and their audit ------------------------------------------------------


async def test_grant_add_change_remove_is_audited_with_reason(data_svc):
    admin = data_svc.admin("ada")
    path = "api/datasets/genomes/grants"
    r = await data_svc.call(
        admin, "POST", path, {"group": "lab-b", "level": "read", "reason": "T-1"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "lab-b" and r.json()["granted_by"] == "ada"
    bob = data_svc.user("bob", ["lab-b"])
    assert (await data_svc.call(bob, "GET", "api/datasets/genomes")).json()["level"] == "read"
    r = await data_svc.call(
        admin, "POST", path, {"group": "lab-b", "level": "write", "reason": "T-2"}
    )
    assert r.json()["level"] == "write"
    r = await data_svc.call(admin, "DELETE", path + "/group/lab-b?reason=T-3")
    assert r.status_code == 204 and r.content == b""
    assert (await data_svc.call(bob, "GET", "api/datasets/genomes")).status_code == 404
    r = await data_svc.call(admin, "DELETE", path + "/group/lab-b")
    assert r.status_code == 404 and "No grant" in r.json()["message"]
    events = (await data_svc.call(admin, "GET", "api/audit?dataset=genomes&limit=3")).json()
    assert [(e["before"], e["after"], e["reason"], e["actor"]) for e in events] == [
        ("write", None, "T-3", "ada"),
        ("read", "write", "T-2", "ada"),
        (None, "read", "T-1", "ada"),
    ]
    assert all(e["kind"] == "grant" and e["subject"] == "group:lab-b" for e in events)


async def test_concurrent_grant_changes_leave_an_unbroken_audit_chain(data_svc):
    """Twenty changes of one grant at once: none fails, and the audit reads as one
    chain (each event's before is the previous one's after), ending at the grant
    as it stands."""
    admin = data_svc.admin()
    path = "api/datasets/genomes/grants"
    levels = ["read", "write"] * 10
    answers = await asyncio.gather(
        *(data_svc.call(admin, "POST", path, {"user": "zoe", "level": lv}) for lv in levels)
    )
    assert [r.status_code for r in answers] == [200] * 20
    events = (await data_svc.call(admin, "GET", "api/audit?user=zoe")).json()[::-1]
    assert events[0]["before"] is None
    for earlier, later in zip(events, events[1:], strict=False):
        assert later["before"] == earlier["after"]
    grants = (await data_svc.call(admin, "GET", path)).json()
    [zoe] = [g for g in grants if g["subject"] == "zoe"]
    assert zoe["level"] == events[-1]["after"]


async def test_user_grant_to_a_name_with_odd_characters(data_svc):
    admin = data_svc.admin()
    name = "ann.o'neil@example.org"
    r = await data_svc.call(
        admin, "POST", "api/datasets/genomes/grants", {"user": name, "level": "write"}
    )
    assert r.status_code == 200, r.text
    quoted = httpx.URL("api/datasets/genomes/grants/user/").join(name.replace("@", "%40"))
    r = await data_svc.call(admin, "DELETE", str(quoted))
    assert r.status_code == 204, r.text


# -- datasets and path safety -------------------------------------------------


async def test_dataset_create_change_delete_is_audited(data_svc, world):
    admin = data_svc.admin("ada")
    folder = world.root / "new-one"
    folder.mkdir()
    body = {"id": "new-one", "title": "New", "kind": "host", "source": str(folder) + "/"}
    r = await data_svc.call(admin, "POST", "api/datasets", body)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == str(folder) and r.json()["source_of"] == "api"
    assert (await data_svc.call(admin, "POST", "api/datasets", body)).status_code == 409
    r = await data_svc.call(admin, "PATCH", "api/datasets/new-one", {"title": "Renamed"})
    assert r.status_code == 200 and r.json()["title"] == "Renamed"
    r = await data_svc.call(
        admin, "POST", "api/datasets/new-one/grants", {"user": "bob", "level": "read"}
    )
    assert r.status_code == 200
    r = await data_svc.call(admin, "DELETE", "api/datasets/new-one")
    assert r.status_code == 204
    assert (await data_svc.call(admin, "GET", "api/datasets/new-one")).status_code == 404
    events = (await data_svc.call(admin, "GET", "api/audit?dataset=new-one")).json()
    kinds = [(e["kind"], e["before"] is None, e["after"] is None) for e in events]
    assert kinds == [
        ("dataset", False, True),  # deleted
        ("grant", False, True),  # ... with its grant, each recorded
        ("grant", True, False),
        ("dataset", False, False),  # changed
        ("dataset", True, False),  # created
    ]
    assert events[3]["before"]["title"] == "New" and events[3]["after"]["title"] == "Renamed"


async def test_settings_datasets_are_changed_in_the_settings(data_svc):
    admin = data_svc.admin()
    for method, body in (("PATCH", {"title": "x"}), ("DELETE", None)):
        r = await data_svc.call(admin, method, "api/datasets/genomes", body)
        assert r.status_code == 409 and "labspace.yaml" in r.json()["message"]


UNSAFE = [
    pytest.param("{outside}/secret", "outside every allowed root", id="sibling-prefix"),
    pytest.param("{root}/genomes/../../datasets2", "'..'", id="dotdot"),
    pytest.param("{root}/escape", "symbolic link", id="symlink-out"),
    pytest.param("genomes", "not an absolute path", id="relative"),
]


@pytest.mark.parametrize("source, message", UNSAFE)
async def test_unsafe_paths_are_refused_when_saved(data_svc, world, source, message):
    source = source.format(root=world.root, outside=world.outside)
    body = {"id": "unsafe", "kind": "host", "source": source}
    admin = data_svc.admin()
    r = await data_svc.call(admin, "POST", "api/datasets", body)
    assert r.status_code == 400 and message in r.json()["message"], r.text
    assert r.json()["message"].startswith("source:")
    folder = world.root / "safe"
    folder.mkdir()
    r = await data_svc.call(admin, "POST", "api/datasets", {**body, "source": str(folder)})
    assert r.status_code == 201
    r = await data_svc.call(admin, "PATCH", "api/datasets/unsafe", {"source": source})
    assert r.status_code == 400 and message in r.json()["message"]


async def test_on_kubernetes_host_paths_are_node_paths(data_svc, world):
    """A kubernetes host dataset is a folder of the node: links on the service's
    disk are not followed, but roots, siblings and '..' still are refused."""
    await data_svc.restart(backend="kubernetes")
    admin = data_svc.admin()
    body = {"id": "node", "kind": "host", "source": str(world.root / "escape")}
    r = await data_svc.call(admin, "POST", "api/datasets", body)
    assert r.status_code == 201, r.text
    assert r.json()["mount_path"] == "/data/node"
    for source, message in (
        (f"{world.outside}/secret", "outside every allowed root"),
        (f"{world.root}/../datasets2", "'..'"),
    ):
        r = await data_svc.call(admin, "POST", "api/datasets", {**body, "source": source})
        assert r.status_code == 400 and message in r.json()["message"]


# -- credentials -------------------------------------------------------------------


async def test_credentials_are_write_only(data_svc):
    admin = data_svc.admin()
    r = await data_svc.call(admin, "PUT", "api/datasets/genomes/credentials/read", READ_KEY)
    assert r.status_code == 400 and "only s3 datasets" in r.json()["message"]
    r = await data_svc.call(
        admin, "PUT", "api/datasets/bucket/credentials/read", {"access_key_id": "a"}
    )
    assert r.status_code == 400 and r.json()["message"].startswith("body.secret_access_key:")
    assert (
        await data_svc.call(admin, "GET", "api/datasets/bucket/credentials/read")
    ).status_code == 405
    new = {"access_key_id": "AKIDREAD-NEW", "secret_access_key": "read-secret-new-" + "z" * 10}
    r = await data_svc.call(admin, "PUT", "api/datasets/bucket/credentials/read", new)
    assert r.status_code == 204
    r = await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    assert next(d for d in r.json()["datasets"] if d["id"] == "bucket")["credentials"] == new
    events = (await data_svc.call(admin, "GET", "api/audit?dataset=bucket&limit=2")).json()
    assert events[0]["kind"] == "start" and events[0]["user"] == "alice"  # took bucket
    assert events[1]["kind"] == "credential" and events[1]["subject"] == "read"
    assert events[1]["before"] == events[1]["after"] == "set"  # replaced; never a value
    assert "read-secret-new" not in json.dumps(events)


# -- audit ---------------------------------------------------------------------------


async def test_audit_filters_and_csv(data_svc):
    admin = data_svc.admin()
    await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    await data_svc.internal({"user": "bob", "server": "x", "groups": []})
    everything = (await data_svc.call(admin, "GET", "api/audit")).json()
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    bob = (await data_svc.call(admin, "GET", "api/audit?user=bob")).json()
    assert [e["kind"] for e in bob] == ["start", "grant"]  # his start, his seeded grant
    cut = everything[1]["at"]
    later = (await data_svc.call(admin, "GET", "api/audit", params={"since": cut})).json()
    assert {e["id"] for e in later} >= {everything[0]["id"], everything[1]["id"]}
    earlier = (await data_svc.call(admin, "GET", "api/audit", params={"until": cut})).json()
    assert all(e["at"] < cut for e in earlier) and earlier
    r = await data_svc.call(admin, "GET", "api/audit?format=csv&dataset=genomes")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "id,at,kind,actor,dataset,subject,before,after,reason,user,server,datasets"
    # the dataset, its grant, and alice's start that took it (bob's did not)
    assert len(lines) == 1 + 3 and "group:lab-a" in r.text
    assert ",start,hub,,,,,,alice,," in lines[1]


async def test_csv_cells_never_start_a_formula(data_svc):
    admin = data_svc.admin()
    await data_svc.call(
        admin,
        "POST",
        "api/datasets/genomes/grants",
        {"group": "lab-z", "level": "read", "reason": '=HYPERLINK("http://x")'},
    )
    r = await data_svc.call(admin, "GET", "api/audit?format=csv&limit=1")
    assert "'=HYPERLINK" in r.text


# -- holders ---------------------------------------------------------------------------


async def test_holders_of_revoked_grants_and_their_stop(data_svc):
    admin = data_svc.admin()
    await data_svc.internal({"user": "alice", "server": "", "groups": ["lab-a"]})
    await data_svc.internal({"user": "bob", "server": "nb", "groups": ["lab-b"]})
    data_svc.hub.run("alice", "", ["lab-a"])
    data_svc.hub.run("bob", "nb", ["lab-b"])
    data_svc.hub.run("dave", "", [])  # running, never asked for datasets
    assert (await data_svc.call(admin, "GET", "api/holders")).json() == []
    r = await data_svc.call(
        admin, "POST", "api/datasets/lab-a-scratch/grants", {"group": "lab-a", "level": "read"}
    )
    assert r.status_code == 200
    await data_svc.call(admin, "DELETE", "api/datasets/lab-a-scratch/grants/user/bob")
    holders = (await data_svc.call(admin, "GET", "api/holders")).json()
    assert [(h["user"], h["server"], h["dataset"], h["held"], h["now"]) for h in holders] == [
        ("alice", "", "lab-a-scratch", "write", "read"),
        ("bob", "nb", "lab-a-scratch", "read", None),
    ]
    r = await data_svc.call(admin, "POST", "api/holders/dave/stop", {"server": ""})
    assert r.status_code == 409 and "holds no revoked" in r.json()["message"]
    r = await data_svc.call(admin, "POST", "api/holders/bob/stop", {"server": "nb"})
    assert r.status_code == 202, r.text
    assert data_svc.hub.calls == [("stop", "bob/nb")]
    holders = (await data_svc.call(admin, "GET", "api/holders")).json()
    assert [h["user"] for h in holders] == ["alice"]


async def test_holders_when_the_hub_is_gone_is_a_clear_502(data_svc, monkeypatch):
    data_svc.app.settings["holders"].hub.api_url = f"http://127.0.0.1:{free_port()}/hub/api/"
    data_svc.app.settings["holders"].hub.retry_for = 0.5
    r = await data_svc.call(data_svc.admin(), "GET", "api/holders")
    assert r.status_code == 502 and "Cannot reach the hub" in r.json()["message"]


# -- the document --------------------------------------------------------------------


def _pattern_to_doc(pattern: str) -> str:
    path = pattern.removeprefix(PREFIX).replace("(group|user)", "{subject_type}")
    path = path.replace("(read|write)", "{level}")
    for name in ("dataset_id", "subject", "user"):
        path = path.replace("([^/]+)", "{" + name + "}", 1)
    return "/" + path


async def test_openapi_documents_every_route_and_only_those(data_svc):
    r = await data_svc.call(None, "GET", "api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": "/services/data"}]
    routed = {}
    for pattern, handler in [*handlers.routes(PREFIX), *internal.routes(PREFIX)]:
        methods = {
            m.lower()
            for m in kit.METHODS
            if getattr(handler, m.lower()) is not getattr(web.RequestHandler, m.lower())
        }
        routed[_pattern_to_doc(pattern)] = methods
    documented = {
        path: {m for m in item if m in ("get", "post", "put", "patch", "delete")}
        for path, item in doc["paths"].items()
    }
    routed["/api/holders/{user}/stop"] = routed.pop("/api/holders/{dataset_id}/stop")
    for path, methods in routed.items():
        assert documented.get(path) == methods, path
    assert set(documented) == set(routed)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["summary"] and "405" in op["responses"], (path, method)
            assert op["security"] == [] or "403" in op["responses"], (path, method)


async def test_undeclared_methods_are_405_with_allow(data_svc):
    admin = data_svc.admin()
    r = await data_svc.call(admin, "PUT", "api/datasets")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    r = await data_svc.call(admin, "GET", "api/datasets/genomes/grants/group/lab-a")
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE"
    r = await data_svc.call(admin, "GET", "api/nothing")
    assert r.status_code == 404 and r.json()["status"] == 404


async def test_the_service_runs_as_its_own_process_and_stops_within_2s(
    monkeypatch, tmp_path, world
):
    """``python -m labspace.services.data`` as the hub runs it: it migrates, seeds,
    answers users (through the hub) and the hub side, writes only private files,
    and stops within 2 s of SIGTERM."""
    hub = FakeHub()
    hub_port, port = free_port(), free_port()
    hub_server = fake_hub_app(hub).listen(hub_port, address="127.0.0.1")
    config = {
        "db_url": "",
        "data_dir": str(tmp_path / "data"),
        "backend": "local",
        "roots": [str(world.root)],
        "datasets": world.datasets,
        "credentials_file": str(world.credentials_file),
    }
    env = {
        **os.environ,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_CLIENT_ID": "service-data",
        "LABSPACE_DATA_CONFIG": json.dumps(config),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labspace.services.data", env=env, stderr=asyncio.subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}{PREFIX}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as c:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None and time.monotonic() < deadline
                try:
                    r = await c.get("api/openapi.json")
                    if r.status_code == 200:
                        break
                    assert r.status_code == 503  # starting
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            alice = hub.token("alice", [SCOPE + "read"], ["lab-a"])
            r = await c.get("api/me/datasets", headers={"Authorization": f"token {alice}"})
            assert r.status_code == 200
            assert {d["id"]: d["mount_path"] for d in r.json()}["genomes"] == "~/data/genomes"
            r = await c.post(
                "api/internal/start",
                json={"user": "alice", "server": "", "groups": ["lab-a"]},
                headers={"Authorization": f"token {SERVICE_TOKEN}"},
            )
            assert r.status_code == 200 and len(r.json()["datasets"]) == 3
        for name in ("data.sqlite", "secrets/data-credentials-key", "secrets/data-cookie-secret"):
            mode = stat.S_IMODE((tmp_path / "data" / name).stat().st_mode)
            assert mode & 0o077 == 0, (name, oct(mode))
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        assert time.monotonic() - began < 2.0 and proc.returncode == 0
        log = (await proc.stderr.read()).decode()
        assert "data service ready" in log
        no_secret_in(log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        hub_server.stop()


# -- sizes ---------------------------------------------------------------------------


async def eventually_size(svc, dataset_id: str, timeout: float = 10.0):
    """The dataset's size once measured (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await svc.call(svc.admin(), "GET", f"api/datasets/{dataset_id}")
        if r.json()["size"] is not None or time.monotonic() > deadline:
            return r.json()["size"]
        await asyncio.sleep(0.1)


async def test_host_datasets_without_a_size_are_measured(data_svc, world):
    (world.root / "lab-a-scratch" / "a.bin").write_bytes(b"x" * 1000)
    (world.root / "lab-a-scratch" / "sub").mkdir()
    (world.root / "lab-a-scratch" / "sub" / "b.bin").write_bytes(b"y" * 24)
    (world.outside / "secret" / "big.bin").write_bytes(b"z" * 5000)
    (world.root / "lab-a-scratch" / "out").symlink_to(world.outside / "secret")  # not followed
    await data_svc.restart()
    assert await eventually_size(data_svc, "lab-a-scratch") == 1024
    me = await data_svc.call(data_svc.user("alice", ["lab-a"]), "GET", "api/me/datasets")
    assert {d["id"]: d["size"] for d in me.json()}["lab-a-scratch"] == 1024
    # a folder made through the API, and again when its source changes
    other = world.root / "other"
    other.mkdir()
    (other / "c.bin").write_bytes(b"c" * 77)
    admin = data_svc.admin()
    body = {"id": "other", "kind": "host", "source": str(world.root / "genomes")}
    assert (await data_svc.call(admin, "POST", "api/datasets", body)).status_code == 201
    assert await eventually_size(data_svc, "other") == len(">chr1\nACGT\n")
    r = await data_svc.call(admin, "PATCH", "api/datasets/other", {"source": str(other)})
    assert r.json()["size"] is None  # the old measure is gone with the old source
    assert await eventually_size(data_svc, "other") == 77
    r = await data_svc.call(admin, "PATCH", "api/datasets/other", {"size": "1K"})
    assert r.json()["size"] == 1024  # a given size wins


def test_folder_size_is_bounded(tmp_path):
    from labspace.services.data.measure import folder_size

    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(b"x")
    assert folder_size(str(tmp_path)) == 20
    assert folder_size(str(tmp_path), max_entries=10) is None
    assert folder_size(str(tmp_path / "missing")) == 0
