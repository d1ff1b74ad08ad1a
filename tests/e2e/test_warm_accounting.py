"""The warm pool's cost on a real hub (local backend, accounting on): idle
members are sessions of the platform's from the moment they are ready, a warm
start closes its member's session and opens the person's own on their project,
the refill opens the next one, an admin sees the pool on the operations page
and in the hub's metrics, and the hub stopping writes the drained members'
ends to the outbox before it exits (delivered when it comes back)."""

from __future__ import annotations

import re

import pytest
from harness import login, wait_for
from test_accounting_e2e_support import PRICE, AccountingHubs, wait_ready

from labspace.services.accounting.outbox import Outbox, path_in

pytestmark = [pytest.mark.e2e]
PASSWORD = "user-pw-for-tests"  # noqa: S105 (a test hub's shared user password)
POOL_USER = "(warm pool)"


@pytest.fixture
def acct(hub_factory, hub_settings, service_token):
    hub_settings["auth"] = {"user_password": PASSWORD}
    hub_settings["backend"] = {"warm_pool": {"enabled": True, "size": 1, "kernel": False}}
    hubs = AccountingHubs(hub_factory, hub_settings, service_token)
    yield hubs.start()
    hubs.close()


def pool_sessions(accounting) -> list[dict]:
    return accounting.sessions(user=POOL_USER)


def test_idle_members_are_the_platforms_and_a_claim_ends_that(acct):
    hub, api, accounting = acct
    (first,) = wait_for(
        lambda: [s for s in pool_sessions(accounting) if s["status"] == "running"] or None,
        60,
        0.2,
        what="the first member's platform session",
    )
    assert first["project"] is None and first["price_per_hour"] == f"{PRICE:.2f}"
    assert first["key"].startswith("warm-pool/")

    api.create_user("ann")
    api.request("POST", "groups/lab-x", json={"users": ["ann"]})
    accounting.topup("lab-x", "1000")
    ann = login(hub.url, "ann", PASSWORD)
    xsrf = ann.cookies.get("_xsrf", path="/hub/")
    r = ann.post("hub/spawn", data={"profile": "small", "project": "lab-x", "_xsrf": xsrf})
    assert r.status_code == 200, r.text
    api.started.add("ann")
    wait_ready(api, "ann")
    assert re.search(r"started warm from member " + first["server"], hub.log())

    def after_claim():
        by_key = {s["key"]: s for s in pool_sessions(accounting)}
        ended = by_key.get(first["key"], {}).get("status") == "closed"
        refill = [s for k, s in by_key.items() if k != first["key"] and s["status"] == "running"]
        return refill if ended and refill else None

    (second,) = wait_for(after_claim, 60, 0.2, what="the claimed member's end and the refill")
    (mine,) = accounting.sessions(user="ann")
    assert (mine["project"], mine["status"]) == ("lab-x", "running")  # ann's own, on lab-x

    # an admin sees the pool on the operations page and in the hub's metrics
    admin = login(hub.url, "admin", hub.admin_password)
    page = " ".join(admin.get("hub/ops").text.split())
    assert 'id="ls-pool"' in page and "1 warm start · 0 cold because empty" in page
    metrics = admin.get("hub/metrics").text
    assert 'labspace_hub_warm_or_cold_starts_total{profile="small",start="warm"} 1.0' in metrics
    assert 'labspace_hub_warm_pool_key_total{key="' in metrics

    # the hub stops: the pool is drained and the member's end is in the outbox
    api.stop_all()
    hub.stop()
    pending = Outbox(path_in(accounting.data_dir)).pending()
    assert [e["type"] for e in pending if e["key"] == second["key"]] == ["stop"]
