"""Helpers for the accounting end-to-end tests (no tests here): a hub with the
accounting service on, an admin's client for its REST API, and the service's
processes, found by PID among the hub's children.

JupyterHub restarts a managed service that exits on its own (``Service.
_proc_stopped`` schedules ``start()`` from the service spawner's poll callback),
but it polls only every 30 s (``_ServiceSpawner`` is built without the hub's
config, so ``poll_interval`` keeps its default); ``wait_service_back`` waits for
that restart.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from harness import HubAPI, HubProcess, free_port, wait_for

PRICE = 3600  # credits/hour: one credit a second, so budgets run out in seconds
ADMIN_SCOPES = [
    "admin:groups",
    "custom:labspace-accounting:admin",
    "access:services!service=accounting",
]
PROFILES = [{"slug": "small", "display_name": "Small", "default": True}]


def accounting_settings(hub_settings: dict, **accounting) -> dict:
    """``hub_settings`` with the accounting service on its own port, one profile
    with a price, projects ``lab-*``, and a test service token that may manage
    groups and administer budgets."""
    hub_settings["profiles"] = PROFILES
    hub_settings["accounting"] = {
        "enabled": True,
        "port": free_port(),
        "projects": {"prefix": "lab-"},
        "no_project": "refuse",
        "prices": {"profiles": {"small": PRICE}},
        "min_period_hours": 0.001,  # 3.6 s of Small: 3.60 credits reserved
        "charge_interval": 1,
        "grace_period": 2,
        "warn_at": [0.5],
        **accounting,
    }
    (role,) = hub_settings["hub"]["config"]["JupyterHub"]["load_roles"]
    role["scopes"] += ADMIN_SCOPES
    # notice dead workspaces quickly
    hub_settings["hub"]["config"]["Spawner"] = {"poll_interval": 2}
    return hub_settings


class AccountingHubs:
    """Starts hubs with accounting for one test (``start(**accounting)`` ->
    ``(hub, api, acct)``) and closes their clients at ``close()``; ``defaults``
    are accounting settings every hub of the test gets."""

    def __init__(self, hub_factory, hub_settings: dict, token: str, **defaults):
        self.hub_factory = hub_factory
        self.hub_settings = hub_settings
        self.token = token
        self.defaults = defaults
        self.made: list[tuple[HubAPI, Accounting]] = []

    def start(self, **accounting) -> tuple[HubProcess, HubAPI, Accounting]:
        accounting_settings(self.hub_settings, **{**self.defaults, **accounting})
        hub = self.hub_factory(self.hub_settings).start()
        api = HubAPI(hub.url, self.token)
        acct = Accounting(hub, self.token)
        self.made.append((api, acct))
        acct.wait_up()
        return hub, api, acct

    def close(self) -> None:
        for api, acct in self.made:
            api.stop_all()
            api.close()
            acct.close()


class Accounting:
    """The accounting service of a running hub, as tests drive it."""

    def __init__(self, hub: HubProcess, token: str):
        self.hub = hub
        self.data_dir = Path(hub.settings["data_dir"])
        self.port = hub.settings["accounting"]["port"]
        self.api = httpx.Client(
            base_url=hub.url + "services/accounting/api/",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )

    @property
    def internal_token(self) -> str:
        return (self.data_dir / "secrets" / "accounting-api-token").read_text().strip()

    def internal(self, path: str, timeout: float = 3) -> httpx.Response:
        return httpx.get(
            f"http://127.0.0.1:{self.port}/services/accounting/api/internal/{path}",
            headers={"Authorization": f"token {self.internal_token}"},
            timeout=timeout,
        )

    def up(self) -> bool:
        try:
            return self.internal("health").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_up(self, timeout: float = 60) -> None:
        wait_for(self.up, timeout, 0.25, what="the accounting service")

    def topup(self, project: str, amount: str, reason: str = "test budget") -> dict:
        r = self.api.post(
            "ledger/topup", json={"project": project, "amount": amount, "reason": reason}
        )
        assert r.status_code == 201, r.text
        return r.json()

    def sessions(self, **query) -> list[dict]:
        r = self.api.get("sessions", params={"status": "all", "limit": 10000, **query})
        assert r.status_code == 200, r.text
        return r.json()["sessions"]

    def pid(self, deliverer: bool = False) -> int | None:
        """PID of the service (or the deliverer) among the hub's descendants."""
        module = "labspace.services.accounting" + (".deliver" if deliverer else "")
        for pid in descendants(self.hub.proc.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-m" in argv and module.encode() in argv:
                return pid
        return None

    def kill(self) -> int:
        """SIGKILL the service; returns the PID that died."""
        pid = self.pid()
        assert pid, "the accounting service is not running"
        os.kill(pid, 9)
        wait_for(lambda: not self.up(), 10, 0.1, what="the service to die")
        return pid

    def wait_service_back(self, old_pid: int, timeout: float = 60) -> None:
        """Wait for the hub to restart a service that died (within its 30 s poll)."""
        wait_for(lambda: (self.pid() or old_pid) != old_pid, timeout, 0.5, what="a restart")
        self.wait_up()

    def outbox_depth(self) -> int:
        from labspace.services.accounting.outbox import Outbox, path_in

        return Outbox(path_in(self.data_dir)).status()["depth"]

    def close(self) -> None:
        self.api.close()


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        frontier += kids
    return found


def start_time(api: HubAPI, user: str, server: str = "") -> datetime:
    """The hub's start time of a running server (what the session key holds)."""
    started = api.user(user).json()["servers"][server]["started"]
    return datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone(UTC)


def key_of(user: str, server: str, started: datetime) -> str:
    from labspace.services.accounting.hubside import session_key

    return session_key(user, server, started)


def post_start(api: HubAPI, user: str, body: dict | None = None) -> httpx.Response:
    r = api.request("POST", f"users/{user}/server", json=body or {})
    if r.status_code in (201, 202):
        api.started.add(user)
    return r


def wait_ready(api: HubAPI, user: str, timeout: float = 90) -> dict:
    def ready():
        server = api.user(user).json()["servers"].get("", {})
        return server if server.get("ready") else None

    return wait_for(ready, timeout, 0.3, what=f"{user}'s server")


def wait_gone(api: HubAPI, user: str, timeout: float = 60) -> float:
    wait_for(lambda: not api.user(user).json()["servers"], timeout, 0.2, what=f"{user} stopped")
    api.started.discard(user)
    return time.time()
