"""An upgrade loses nothing (tier 4): the previous release's databases, started
with the current code on a real hub with its three services.

``tests/fixtures/upgrade/`` holds those databases as SQL text (and the script
that made them): a hub database made by JupyterHub 5.3, and the accounting,
catalog and data databases made by each service's FIRST migration, with
representative rows. The accounting database goes into PostgreSQL (its first
migration run there by the current code, the fixture's rows copied in), where
its second migration has work to do (a covering index); the others stay SQLite.
One hub start, then what a user and an admin see:

- every database is at the newest revision the installed code knows (the hub's
  through ``JupyterHub.upgrade_db``, the services' through their Alembic
  migrations at start), accounting's new index made;
- users, groups and admin rights are there; the API tokens made before the
  upgrade still work; alice's stopped named server is still hers, and her
  default server whose process is long gone is found stopped, not a failed start;
- the ledger: every transaction is there, ``lab-a``'s balance is what it was,
  alice's closed session kept its cost; bob's open session is closed by the
  reconciler at the last time it was seen running (its server is gone), and
  ``lab-b`` gets back what that session held;
- the catalog's apps with both versions of ``viewer``; the data service's
  datasets, grants and audit trail, in order;
- ``labspace version`` names what runs: JupyterHub's version, Labspace's, and
  each database's revision.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from harness import LABSPACE, free_port, login, service_answers, service_client, wait_for
from sqlalchemy import create_engine, text
from test_accounting_e2e_support import accounting_settings

import labspace
from labspace.services.accounting.db import MIGRATIONS as ACCOUNTING_MIGRATIONS
from labspace.services.catalog.store import MIGRATIONS as CATALOG_MIGRATIONS
from labspace.services.data.store import MIGRATIONS as DATA_MIGRATIONS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "upgrade"
sys.path.insert(0, str(FIXTURES))
from make_fixtures import ADMIN_TOKEN, ALICE_TOKEN  # noqa: E402

DATABASES = ("jupyterhub", "accounting", "catalog", "data")
JUPYTERHUB_5_3_HEAD = "4621fec11365"


def head(migrations) -> str:
    return ScriptDirectory(str(migrations)).get_current_head()


def hub_head() -> str:
    import jupyterhub

    return head(Path(jupyterhub.__file__).parent / "alembic")


HEADS = {
    "jupyterhub": hub_head(),
    "accounting": head(ACCOUNTING_MIGRATIONS),
    "catalog": head(CATALOG_MIGRATIONS),
    "data": head(DATA_MIGRATIONS),
}
BEFORE = {
    "jupyterhub": JUPYTERHUB_5_3_HEAD,
    "accounting": "0001",
    "catalog": "catalog_0001",
    "data": "data_0001",
}


def revision(data_dir: Path, name: str, urls: dict[str, str]) -> str:
    table = {"catalog": "catalog_alembic_version", "data": "data_alembic_version"}
    url = urls.get(name) or f"sqlite:///{data_dir / f'{name}.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = f"SELECT version_num FROM {table.get(name, 'alembic_version')}"  # noqa: S608
            return conn.execute(text(query)).scalar_one()
    finally:
        engine.dispose()


def load_fixtures(data_dir: Path, skip: tuple[str, ...] = ()) -> None:
    """The fixtures' SQL into ``data_dir/<name>.sqlite``, as the release left them."""
    data_dir.mkdir(mode=0o700, parents=True)
    for name in DATABASES:
        if name in skip:
            continue
        path = data_dir / f"{name}.sqlite"
        conn = sqlite3.connect(path)
        try:
            conn.executescript((FIXTURES / f"{name}.sql").read_text())
        finally:
            conn.close()
        path.chmod(0o600)


def accounting_into_postgres(url: str, work: Path) -> None:
    """Accounting's first migration run on the PostgreSQL database ``url`` by the
    current code, then the fixture's rows copied in (ids and sequences kept)."""
    from alembic import command
    from alembic.config import Config

    from labspace.services.accounting.models import Base

    source = work / "accounting-fixture.sqlite"
    conn = sqlite3.connect(source)
    conn.executescript((FIXTURES / "accounting.sql").read_text())
    conn.close()
    cfg = Config()
    cfg.set_main_option("script_location", str(ACCOUNTING_MIGRATIONS))
    target, src = create_engine(url), create_engine(f"sqlite:///{source}")
    try:
        with target.begin() as pg, src.connect() as lite:
            cfg.attributes["connection"] = pg
            command.upgrade(cfg, "0001")
            for table in Base.metadata.sorted_tables:
                rows = [dict(row._mapping) for row in lite.execute(table.select())]
                if rows:
                    pg.execute(table.insert(), rows)
                if rows and isinstance(rows[0].get("id"), int):
                    pg.execute(text(SETVAL.format(table=table.name)))
    finally:
        target.dispose()
        src.dispose()


SETVAL = "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"


def covering_index(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_sessions_started_cover'"
            return conn.execute(text(query)).first() is not None
    finally:
        engine.dispose()


def test_the_fixtures_are_the_previous_release():
    """The premise: the fixtures are older than the code (else nothing migrates)."""
    assert HEADS["accounting"] != "0001", "accounting has a migration past its first"
    assert HEADS["jupyterhub"] != JUPYTERHUB_5_3_HEAD, "JupyterHub has migrations past 5.3"


@pytest.fixture(scope="module")
def upgraded(module_hub_factory, tmp_path_factory, pg_cluster):
    loaded: dict[str, Path] = {}
    urls = {"accounting": pg_cluster.create_database(f"upgrade_{free_port()}")}

    def edit(settings):
        data_dir = Path(settings["data_dir"])
        load_fixtures(data_dir, skip=("accounting",))
        accounting_into_postgres(urls["accounting"], tmp_path_factory.mktemp("pg"))
        assert {n: revision(data_dir, n, urls) for n in DATABASES} == BEFORE
        assert not covering_index(urls["accounting"])
        loaded["data_dir"] = data_dir
        accounting_settings(
            settings,
            prices={"profiles": {"small": 1.0}},
            min_period_hours=1,
            charge_interval=5,
            grace_period=0,
            db_url=urls["accounting"].replace("postgresql+psycopg://", "postgresql://"),
        )
        settings["hub"]["admin_users"] = ["admin"]
        settings["auth"] = {"user_password": "upgrade-user-password"}
        settings["catalog"] = {"enabled": True, "port": free_port()}
        settings["data"] = {"enabled": True, "port": free_port(), "roots": ["/srv/labspace-data"]}

    hub, api = module_hub_factory(edit)
    for name in ("accounting", "catalog", "data"):
        wait_for(lambda n=name: service_answers(hub.url, ADMIN_TOKEN, n), 90, 1, what=f"{name} API")
    return hub, api, loaded["data_dir"], urls


def test_every_database_is_migrated(upgraded):
    hub, _, data_dir, urls = upgraded
    assert {n: revision(data_dir, n, urls) for n in DATABASES} == HEADS, hub.log()[-3000:]
    assert covering_index(urls["accounting"])
    assert "Upgrading sqlite:///" in hub.log()  # JupyterHub's upgrade_db, with its backup
    assert list(data_dir.glob("jupyterhub.sqlite.20*"))


def test_users_groups_and_tokens_survive(upgraded):
    hub, api, _, _ = upgraded
    users = {u["name"]: u for u in api.request("GET", "users").json()}
    assert {"alice", "bob", "admin"} <= set(users)
    assert users["admin"]["admin"] and not users["alice"]["admin"]
    groups = {g["name"]: g["users"] for g in api.request("GET", "groups").json()}
    assert groups["lab-a"] == ["alice"] and groups["lab-b"] == ["bob"]
    with httpx.Client(base_url=hub.url, timeout=30) as client:
        for token, name in ((ALICE_TOKEN, "alice"), (ADMIN_TOKEN, "admin")):
            me = client.get("hub/api/user", headers={"Authorization": f"token {token}"})
            assert me.status_code == 200 and me.json()["name"] == name, me.text
        wrong = client.get("hub/api/user", headers={"Authorization": "token not-a-token"})
        assert wrong.status_code == 403
    alice = api.request("GET", "users/alice", params={"include_stopped_servers": "1"}).json()
    assert alice["servers"]["analysis"]["ready"] is False
    assert alice["servers"]["analysis"]["user_options"] == {"profile": "small"}
    default = alice["servers"].get("", {})
    assert not default.get("ready") and not default.get("pending"), default


def test_the_ledger_is_whole(upgraded):
    hub, _, _, _ = upgraded
    with service_client(hub.url, ADMIN_TOKEN, "accounting") as acct:
        ledger = acct.get("ledger", params={"limit": 1000})
        assert ledger.status_code == 200, ledger.text
        kinds = sorted(t["kind"] for t in transactions(ledger.json()))
        assert kinds.count("topup") == 2 and kinds.count("reserve") == 2, kinds

        def sessions():
            r = acct.get("sessions", params={"status": "all", "limit": 100})
            assert r.status_code == 200, r.text
            return {s["user"]: s for s in r.json()["sessions"]}

        closed = wait_for(
            lambda: (s := sessions()) and s["bob"]["status"] == "closed" and s,
            60,
            1,
            what="the reconciler closing bob's session",
        )
        alice, bob = closed["alice"], closed["bob"]
        assert (alice["status"], alice["cost"], alice["closed_by"]) == ("closed", "1.50", "stop")
        assert bob["closed_by"] == "reconciler", bob
        assert bob["ended_at"].startswith("2026-11-03T10:00:00"), bob
        a, b = (acct.get(f"projects/{p}").json() for p in ("lab-a", "lab-b"))
        assert a["balance"] == "98.50", a
        assert b["balance"] == money(50 - float(bob["cost"])), (b, bob)


def transactions(body) -> list[dict]:
    return body["transactions"] if isinstance(body, dict) else body


def money(value: float) -> str:
    return f"{value:.2f}"


def test_catalog_and_data_survive(upgraded):
    hub, _, _, _ = upgraded
    with service_client(hub.url, ADMIN_TOKEN, "catalog") as catalog:
        apps = {a["id"]: a for a in catalog.get("apps", params={"all": "1"}).json()["apps"]}
        assert {"viewer", "notes"} <= set(apps), apps
        assert (apps["viewer"]["version"], apps["viewer"]["title"]) == ("2", "Viewer (faster)")
        assert apps["viewer"]["groups"] == ["lab-a"], apps["viewer"]
        versions = catalog.get("apps/viewer/versions").json()
        versions = versions["versions"] if isinstance(versions, dict) else versions
        assert sorted(v["version"] for v in versions) == ["1", "2"], versions
    with service_client(hub.url, ADMIN_TOKEN, "data") as data:
        datasets = data.get("datasets").json()
        datasets = datasets["datasets"] if isinstance(datasets, dict) else datasets
        assert {d["id"] for d in datasets} == {"genomes", "scratch"}, datasets
        grants = data.get("datasets/scratch/grants").json()
        grants = grants["grants"] if isinstance(grants, dict) else grants
        assert {(g["subject_type"], g["subject"], g["level"]) for g in grants} == {
            ("group", "lab-a", "write"),
            ("user", "bob", "read"),
        }, grants
        audit = data.get("audit").json()
        audit = audit["events"] if isinstance(audit, dict) else audit
        trail = sorted((e["id"], e["kind"], e["dataset"], e["subject"]) for e in audit)
        assert trail == [
            (1, "dataset", "genomes", ""),
            (2, "dataset", "scratch", ""),
            (3, "grant", "genomes", "group:lab-a"),
            (4, "grant", "scratch", "group:lab-a"),
            (5, "grant", "scratch", "user:bob"),
        ], trail


def test_labspace_version_names_what_runs(upgraded):
    hub, _, _, _ = upgraded
    env = {**os.environ, "LABSPACE_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [*LABSPACE, "version", "--json", "--config", str(hub.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    import jupyterhub

    assert report["running"]["jupyterhub"] == jupyterhub.__version__, report
    assert report["running"]["labspace"] == labspace.__version__, report
    names = {"jupyterhub": "hub"}
    assert report["databases"] == {
        names.get(name, name): {"revision": rev, "newest": rev} for name, rev in HEADS.items()
    }, report
    assert report["running"]["services"] == dict.fromkeys(("accounting", "catalog", "data"), "up")
    assert ADMIN_TOKEN not in done.stdout + done.stderr


def test_the_admin_page_shows_the_version(upgraded):
    """The admin page names Labspace's version beside JupyterHub's; every page of
    a signed-in person names Labspace's in its footer, the login page does not."""
    hub, _, _, _ = upgraded
    import jupyterhub

    anonymous = httpx.get(hub.url + "hub/login", timeout=30)
    assert anonymous.status_code == 200 and "ls-version" not in anonymous.text
    browser = login(hub.url, "admin", hub.admin_password)
    try:
        admin = browser.get("hub/admin")
        assert admin.status_code == 200
        footer = f"Labspace {labspace.__version__} · JupyterHub {jupyterhub.__version__}"
        assert footer in admin.text, admin.text[-800:]
        home = browser.get("hub/home")
        assert f'ls-version">Labspace {labspace.__version__}</footer>' in home.text
    finally:
        browser.close()
