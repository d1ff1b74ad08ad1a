"""Accounting end to end, on a real hub with the local backend: a person with a
project budget picks the project on the spawn form and sees each profile's
price, their usage is charged while the server runs, the service stops the
server once the budget is spent (after the grace period), the next start is
refused with the reason on the spawn page and as a 402 through the API, and an
admin's top-up lets them start again."""

from __future__ import annotations

import pytest
from harness import HubAPI, login, wait_for
from test_accounting_e2e_support import (
    PRICE,
    AccountingHubs,
    key_of,
    post_start,
    start_time,
    wait_gone,
    wait_ready,
)

pytestmark = [pytest.mark.e2e]
PASSWORD = "user-pw-for-tests"  # noqa: S105 (a test hub's shared user password)


@pytest.fixture
def make(hub_factory, hub_settings, service_token):
    """Start a hub with accounting (``accounting`` overrides the test settings)."""
    hub_settings["auth"] = {"user_password": PASSWORD}
    hubs = AccountingHubs(hub_factory, hub_settings, service_token)
    yield hubs.start
    hubs.close()


@pytest.fixture
def acct(make):
    return make()


def add_to_group(api: HubAPI, group: str, *users: str) -> None:
    r = api.request("POST", f"groups/{group}", json={"users": list(users)})
    assert r.status_code == 201, r.text


def test_budget_runs_out_and_a_top_up_restores_it(acct):
    hub, api, accounting = acct
    api.create_user("ann")
    add_to_group(api, "lab-x", "ann")
    add_to_group(api, "lab-y", "ann")
    accounting.topup("lab-x", "6")
    accounting.topup("lab-y", "1000")
    ann = login(hub.url, "ann", PASSWORD)
    xsrf = ann.cookies.get("_xsrf", path="/hub/")

    # the spawn form: both projects with their balances, Small's price
    form = ann.get("hub/spawn").text
    assert 'name="project"' in form
    assert "lab-x — 6.00 credits left" in form
    assert "lab-y — 1000.00 credits left" in form
    assert "3600.00 credits/hour" in form

    # ann starts on lab-x: 3.60 reserved, one credit a second charged
    r = ann.post("hub/spawn", data={"profile": "small", "project": "lab-x", "_xsrf": xsrf})
    assert r.status_code == 200, r.text
    api.started.add("ann")
    wait_ready(api, "ann")
    started = start_time(api, "ann")
    key = key_of("ann", "", started)
    # running once the deliverer has brought the hub's start event
    (session,) = wait_for(
        lambda: [s for s in accounting.sessions(user="ann") if s["status"] == "running"],
        30,
        0.2,
        what="ann's session running",
    )
    assert (session["key"], session["project"]) == (key, "lab-x")

    # the budget runs out; after the 2 s grace period the service stops the server
    stopped = wait_gone(api, "ann", timeout=90)
    (session,) = accounting.sessions(user="ann")
    assert session["status"] == "closed"
    assert "budget of lab-x exhausted" in session["stop_reason"]
    # lab-x paid all it had, never below its floor; the rest (grace period and
    # the stop itself) is recorded as unbilled usage: the cost is what ann ran
    assert float(session["charged"]) == pytest.approx(6, abs=0.01)
    ran = stopped - started.timestamp()
    assert float(session["cost"]) == pytest.approx(ran * PRICE / 3600, abs=2 * PRICE / 3600)
    r = accounting.api.get("projects/lab-x")
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == "0.00"

    # the next start on lab-x is refused: on the spawn page and through the API
    r = ann.post("hub/spawn", data={"profile": "small", "project": "lab-x", "_xsrf": xsrf})
    assert "Project lab-x has" in r.text and "Small costs 3600.00/hour" in r.text, r.text[-2000:]
    r = post_start(api, "ann", {"profile": "small", "project": "lab-x"})
    assert r.status_code == 402, r.text
    assert r.json()["message"].startswith("Project lab-x has ")
    assert r.json()["message"].endswith("Small costs 3600.00/hour")
    wait_for(lambda: not api.user("ann").json()["servers"], 30, what="no server")

    # an admin tops lab-x up: ann may start again
    accounting.topup("lab-x", "100", reason="more compute for ann")
    r = post_start(api, "ann", {"profile": "small", "project": "lab-x"})
    assert r.status_code in (201, 202), r.text
    wait_ready(api, "ann")
    api.stop_server("ann")
    sessions = accounting.sessions(user="ann")
    assert len(sessions) == 2
    wait_for(
        lambda: all(s["status"] == "closed" for s in accounting.sessions(user="ann")),
        30,
        what="both sessions closed",
    )


def test_project_choice_is_checked(acct):
    hub, api, accounting = acct
    api.create_user("bob")
    add_to_group(api, "lab-b", "bob")
    add_to_group(api, "other", "bob")  # not a project (no lab- prefix)
    refused = [
        ({"project": 3}, 400, "Option 'project' must be a project name (a string)"),
        ({"project": "lab-x"}, 403, "Project 'lab-x' is not one of yours (yours: lab-b)"),
        ({"project": "other"}, 403, "Project 'other' is not one of yours (yours: lab-b)"),
    ]
    for body, status, message in refused:
        r = post_start(api, "bob", {"profile": "small", **body})
        assert (r.status_code, r.json()["message"]) == (status, message), body
    assert api.user("bob").json()["servers"] == {}
    # nothing in lab-b yet: the reservation is refused with the numbers
    r = post_start(api, "bob", {"profile": "small", "project": "lab-b"})
    assert r.status_code == 402, r.text
    assert r.json()["message"] == "Project lab-b has 0.00 credits left; Small costs 3600.00/hour"
    assert accounting.sessions(user="bob") == []


def test_user_in_no_project_is_refused(acct):
    _, api, accounting = acct
    api.create_user("cy")
    r = post_start(api, "cy", {"profile": "small"})
    assert r.status_code == 403, r.text
    assert "project" in r.json()["message"]
    assert api.user("cy").json()["servers"] == {}


def test_banner_warns_before_the_stop(make):
    """A spent budget shows as a banner on the hub's pages while the grace
    period runs (the hub refreshes a person's banners at most every 30 s)."""
    hub, api, accounting = make(grace_period=90)
    api.create_user("dee")
    add_to_group(api, "lab-d", "dee")
    accounting.topup("lab-d", "5")
    r = post_start(api, "dee", {"profile": "small", "project": "lab-d"})
    assert r.status_code in (201, 202), r.text
    wait_ready(api, "dee")
    dee = login(hub.url, "dee", PASSWORD)

    def banner():
        page = dee.get("hub/home").text
        return "labspace-alert" in page and "Project lab-d has no budget left" in page

    wait_for(banner, 45, 1, what="the budget banner")
    assert api.user("dee").json()["servers"]  # still running: the grace period is on
    api.stop_server("dee")
