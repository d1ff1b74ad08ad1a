"""Issue 10 (secrets): no secret in the environment the hub gives the
accounting service and its deliverer (JupyterHub keeps that environment in its
database); the database URL (it carries a password) and the deliverer's own
secret live in files under ``secrets/`` and travel as ``*_FILE`` variables; the
deliverer does not hold the service's hub token, and still delivers."""

from __future__ import annotations

import json
import secrets
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import wait_for

from labspace.services.accounting.outbox import Outbox, path_in

from .test_accounting_support import Accounting, accounting_settings

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def pg_hub(hub_factory, hub_settings, service_token, pg_cluster):
    db_url = pg_cluster.create_database(f"acct_{secrets.token_hex(4)}")
    accounting_settings(hub_settings, db_url=db_url)
    hub = hub_factory(hub_settings).start()
    acct = Accounting(hub, service_token)
    acct.wait_up()
    yield hub, acct, pg_cluster.password
    acct.close()


def kept_secrets(data_dir: Path) -> dict[str, str]:
    return {
        p.name: p.read_text().strip()
        for p in (data_dir / "secrets").iterdir()
        if p.is_file() and p.read_text().strip()
    }


def hub_kept_environments(data_dir: Path) -> dict[str, str]:
    """The ``environment`` JupyterHub stored for each service in its database."""
    uri = f"file:{data_dir / 'jupyterhub.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return dict(db.execute("SELECT name, environment FROM services").fetchall())


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def test_no_secret_in_the_services_environment_and_the_deliverer_delivers(pg_hub):
    hub, acct, db_password = pg_hub
    data_dir = acct.data_dir
    kept = kept_secrets(data_dir)
    service_token = kept["accounting-api-token"]
    deliverer_secret = kept["accounting-deliverer-secret"]
    assert deliverer_secret != service_token
    for name in ("accounting-deliverer-secret", "accounting-db-url"):
        mode = stat.S_IMODE((data_dir / "secrets" / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert db_password in kept["accounting-db-url"]

    # what the hub keeps in its database: no secret value at all
    stored = hub_kept_environments(data_dir)
    assert {"accounting", "accounting-deliverer"} <= set(stored)
    for name in ("accounting", "accounting-deliverer"):
        text = stored[name] or ""
        assert db_password not in text, name
        for file, value in kept.items():
            assert value not in text, (name, file)
        assert "_file" in text, text  # the files that keep them are named instead

    # what the processes run with
    service_env = process_environment(acct.pid())
    deliverer_env = process_environment(acct.pid(deliverer=True))
    assert db_password not in json.dumps(service_env)
    assert deliverer_secret not in json.dumps(service_env)
    assert service_token not in json.dumps(deliverer_env)  # not the service's hub token
    assert db_password not in json.dumps(deliverer_env)
    deliverer_config = json.loads(deliverer_env["LABSPACE_ACCOUNTING_DELIVERER_CONFIG"])
    assert deliverer_config["secret_file"] == str(
        data_dir / "secrets" / "accounting-deliverer-secret"
    )

    # the deliverer still delivers, with its own secret
    at = datetime.now(UTC).isoformat()
    event = {
        "id": "secrets-test:unreachable",
        "key": "secrets-test",
        "type": "unreachable",
        "at": at,
        "user": "alice",
        "server": "",
        "decision": "allowed",
    }
    Outbox(path_in(data_dir)).append(event)

    def delivered():
        r = acct.internal("health")
        health = r.json() if r.status_code == 200 else {}
        seen = [u for u in health.get("unreachable", []) if u["user"] == "alice"]
        return health if seen and health.get("outbox_depth") == 0 else None

    health = wait_for(delivered, 30, 0.5, what="the deliverer to deliver the event")
    assert health["outbox_reported_at"] is not None
