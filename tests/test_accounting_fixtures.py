"""In-process accounting service for tier-2 tests (no tests here: the other
tests/test_accounting_*.py import it).

``AccountingServer`` runs the real tornado application, on a real database
(SQLite file or PostgreSQL), on a loopback port. User identification is
STUBBED: ``TokenTableAuth`` is a ``HubOAuth`` whose ``get_user`` looks the
``Authorization: token ...`` header up in a table of user models (name, groups,
scopes) instead of asking a hub. Everything after identification (scope checks,
handlers, database) is the production code. Real-hub tests are in
tests/e2e/test_accounting_*.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from jupyterhub.services.auth import HubOAuth

from labspace.services.accounting import usage
from labspace.services.accounting.app import make_app
from labspace.services.accounting.clock import now
from labspace.services.accounting.config import ADMIN, READ, READ_ALL
from labspace.services.accounting.db import open_database
from labspace.services.accounting.service import Service
from labspace.services.kit.run import ServiceContext
from labspace.services.kit.web import make_server

PREFIX = "/services/accounting/"
SERVICE_TOKEN = "service-token-for-tests"
DELIVERER_SECRET = "deliverer-secret-for-tests"  # noqa: S105 (test value)
ACCESS = "access:services!service=accounting"

PROFILES = [
    {"slug": "small", "display_name": "Small", "cpu": {"limit": 1}, "memory": {"limit": "2G"}},
    {"slug": "gpu", "display_name": "GPU", "gpus": 1},
]
SECTION = {
    "currency": "credits",
    "projects": {
        "prefix": "proj-",
        "parents": {"proj-a": "proj-lab"},
        "leads": {"proj-a": ["lead"]},
    },
    "no_project": "personal",
    "personal_allowance": 5,
    "prices": {"profiles": {"small": 1.0}, "resources": {"gpu_hour": 4.0}},
    "min_period_hours": 1,
    "charge_interval": 60,
    "warn_at": [0.2, 0.1],
    "grace_period": 0,
}


def user(name: str, groups=(), scopes=(READ,)) -> dict[str, Any]:
    return {"kind": "user", "name": name, "groups": list(groups), "scopes": [ACCESS, *scopes]}


USERS = {
    "alice-token": user("alice", ["proj-a"]),
    "bob-token": user("bob", ["proj-a", "proj-b"]),
    "lead-token": user("lead", ["proj-a"]),
    "carol-token": user("carol", []),
    "auditor-token": user("auditor", [], [READ, READ_ALL]),
    "admin-token": user("admin", [], [READ, READ_ALL, ADMIN]),
    "nobody-token": user("nobody", ["proj-a"], []),
}


class TokenTableAuth(HubOAuth):
    """STUB for tests: identifies users from a table instead of the hub."""

    def get_user(self, handler, *, sync=True):
        header = handler.request.headers.get("Authorization", "")
        model = USERS.get(header.partition(" ")[2].strip())
        if model is not None:
            handler._token_authenticated = True
        if sync:
            return model

        async def found():
            return model

        return found()


class AccountingServer:
    def __init__(
        self, db_url: str, port: int, section: dict | None = None, busy_timeout: float = 3.0
    ):
        config = {
            "accounting": {**SECTION, **(section or {})},
            "profiles": PROFILES,
            "db_url": db_url,
        }
        self.db = open_database(db_url, busy_timeout=busy_timeout)
        self.db.upgrade()
        self.service = Service(config, self.db, deliverer_secret=DELIVERER_SECRET)
        self.db.work(usage.sync_prices, self.service.policy, now())
        auth = TokenTableAuth(
            api_token=SERVICE_TOKEN,  # the service's own token: its internal endpoints
            api_url="http://127.0.0.1:9/hub/api",
            login_url="/hub/login",
            oauth_client_id="service-accounting",
        )
        self.app = make_app(ServiceContext("accounting", environ={}), self.service, hub_auth=auth)
        self.server = make_server(self.app)
        self.server.listen(port, "127.0.0.1")
        self.url = f"http://127.0.0.1:{port}{PREFIX}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30)

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body=None,
        headers: dict | None = None,
        **kw,
    ):
        sent = {"Authorization": f"token {token}"} if token else {}
        sent.update(headers or {})
        if body is not None:
            kw["content"] = body if isinstance(body, str | bytes) else json.dumps(body)
        return await self.http.request(method, path, headers=sent, **kw)

    async def internal(self, method: str, path: str, body=None, **kw):
        return await self.call(method, "api/internal/" + path, SERVICE_TOKEN, body, **kw)

    async def close(self):
        self.server.stop()
        await self.http.aclose()
        self.db.close()
