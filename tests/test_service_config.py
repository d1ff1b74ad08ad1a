"""How a service gets its configuration, the same way for every service: the
hub sets ``LABSPACE_<NAME>_CONFIG`` (JSON) and every secret travels as a
``<key>_file`` path in it, never as a value in the environment (JupyterHub keeps
a service's environment in its database). The kit's ``ServiceContext`` reads
what ``State.service_environment`` writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from labspace.hubconfig import build
from labspace.services.kit.run import ServiceContext
from labspace.settings import load
from labspace.state import State

PASSWORD = "pw-4b1d0c9e"  # noqa: S105 (a test database password)
PG_URL = f"postgresql://lab:{PASSWORD}@db.example.org:5432/labspace"


@pytest.fixture
def state(tmp_path) -> State:
    def make(text: str = "") -> State:
        path = tmp_path / "labspace.yaml"
        path.write_text(text)
        state = State(load(path, environ={}))
        state.prepare()
        return state

    return make


def test_service_environment_round_trip(state, tmp_path):
    st = state(f"catalog:\n  db_url: {PG_URL}\n")
    kept = tmp_path / "given-secret"
    kept.write_text("from-a-file\n")
    env = st.service_environment(
        "catalog", {"apps": [], "base_url": "/"}, {"signing_key": "s3cr3t-value", "other": kept}
    )
    assert set(env) == {"LABSPACE_CATALOG_CONFIG", "PYTHONUNBUFFERED"}
    config = json.loads(env["LABSPACE_CATALOG_CONFIG"])
    secrets = st.data_dir / "secrets"
    assert config == {
        "apps": [],
        "base_url": "/",
        "data_dir": str(st.data_dir),
        "db_url_file": str(secrets / "catalog-db-url"),
        "signing_key_file": str(secrets / "catalog-signing-key"),
        "other_file": str(kept),
    }
    for name in ("catalog-db-url", "catalog-signing-key"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    assert PASSWORD not in repr(env) and "s3cr3t-value" not in repr(env)
    ctx = ServiceContext("catalog", environ=env)
    assert ctx.db_url == PG_URL.replace("postgresql://", "postgresql+psycopg://")
    assert ctx.secret("signing_key") == "s3cr3t-value"
    assert ctx.secret("other") == "from-a-file"
    assert ctx.data_dir == st.data_dir


def test_service_environment_sqlite_by_default(state):
    st = state()
    ctx = ServiceContext("accounting", environ=st.service_environment("accounting", {}))
    assert ctx.db_url == f"sqlite:///{st.data_dir / 'accounting.sqlite'}"


def test_service_environment_name_with_a_dash(state):
    st = state()
    env = st.service_environment("accounting-deliverer", {"x": 1}, database=False)
    assert json.loads(env["LABSPACE_ACCOUNTING_DELIVERER_CONFIG"])["x"] == 1
    assert ServiceContext("accounting-deliverer", environ=env).config["x"] == 1


# what the hub itself adds to every service's environment besides the config
HUB_ADDS = {"PYTHONUNBUFFERED", "LABSPACE_NAV"}


def labspace_services(st: State) -> list[dict]:
    services = build(st.settings, st, ["configurable-http-proxy"])["JupyterHub"]["services"]
    return [s for s in services if "-m" in s.get("command", [])]


@pytest.mark.parametrize(
    "name",
    [
        "catalog",
        "accounting",
        "accounting-deliverer",
    ],
)
def test_every_service_of_the_hub_is_configured_the_same_way(state, name):
    """Each service the hub starts: its configuration in LABSPACE_<NAME>_CONFIG
    with data_dir, secrets as files named there, no password in the environment."""
    st = state(f"accounting:\n  db_url: {PG_URL}\ncatalog:\n  db_url: {PG_URL}\n")
    (service,) = [s for s in labspace_services(st) if s["name"] == name]
    env = service["environment"]
    ctx = ServiceContext(name, environ=env)
    assert PASSWORD not in repr(env)
    assert set(env) - HUB_ADDS == {ctx.key + "_CONFIG"}
    assert ctx.data_dir == st.data_dir


@pytest.mark.parametrize("name", ["catalog", "accounting"])
def test_each_service_reads_its_database_from_its_config(state, name):
    st = state(f"{name}:\n  db_url: {PG_URL}\n")
    (service,) = [s for s in labspace_services(st) if s["name"] == name]
    ctx = ServiceContext(name, environ=service["environment"])
    assert ctx.db_url == st.service_db_url(name)
    assert Path(ctx.config["db_url_file"]).parent == st.data_dir / "secrets"
