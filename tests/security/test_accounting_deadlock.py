"""Issue 10, High 1: a signed-in user's POST with the service cookie plus any
``Authorization`` header used to hang the accounting service for good (HubAuth's
one-thread pool waited on itself). It must answer a 4xx at once, and the
service must go on answering."""

from __future__ import annotations

import time

import pytest

from .test_accounting_support import PREFIX, acct_hub, signed_in  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e]


@pytest.mark.parametrize(
    "path",
    ["api/ledger/topup", "admin/topup"],
    ids=["api", "page-form"],
)
def test_cookie_plus_bogus_token_post_answers_at_once(acct_hub, path):  # noqa: F811
    hub, _api, acct = acct_hub
    alice = signed_in(hub, "alice")
    body = {"project": "lab-a", "amount": "5", "reason": "attack"}
    started = time.monotonic()
    r = alice.post(
        PREFIX + path,
        json=body,
        headers={"Authorization": "token x"},
        follow_redirects=False,
        timeout=10,
    )
    took = time.monotonic() - started
    assert r.status_code == 403, r.text
    assert took < 1, f"{path} answered after {took:.1f}s"
    # the service is still there: health, and the same user's normal request
    assert acct.up()
    me = alice.get(PREFIX + "api/me", timeout=5)
    assert me.status_code == 200, me.text
    assert me.json()["user"] == "alice"
