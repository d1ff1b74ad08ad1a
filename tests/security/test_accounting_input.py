"""Issue 10 (no 5xx, bodies, logs) through a real hub: bad input is a 400 that
says why, a wrong method a 405 with ``Allow``, a body over 1 MiB a 413, and the
OAuth ``code``/``state`` of a sign-in never reach the access log. (Every handler's
table of bad input is in tests/test_accounting_robustness.py.)"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from harness import login

from .test_accounting_support import PASSWORD, PREFIX, acct_hub  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e]


def test_bad_input_through_the_hub(acct_hub):  # noqa: F811
    hub, _api, acct = acct_hub
    admin = acct.api  # a hub token with custom:labspace-accounting:admin
    cases = [
        ("POST", "ledger/reverse", {"transaction": 2**70, "reason": "r"}, "'transaction' must"),
        ("POST", "ledger/topup", {"project": None, "amount": "1", "reason": "r"}, "'project'"),
        ("GET", "sessions?limit=null", None, "'limit' must"),
        ("GET", "sessions?format=", None, "'format' must"),
        ("GET", "usage?from=0001-01-01T00:00:00%2B01:00", None, "'from' and 'to'"),
    ]
    for method, path, body, message in cases:
        r = admin.request(method, path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert message in r.json()["message"], (path, r.text)
    r = admin.post("me", json={})
    assert r.status_code == 405 and r.headers["Allow"] == "GET", r.text
    big = json.dumps({"project": "lab-a", "amount": "1", "reason": "x" * (1536 * 1024)})
    r = admin.post("ledger/topup", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["message"].startswith("The body is larger than")  # the kit's one wording
    # an OAuth callback with its state but a code the hub never issued
    with httpx.Client(base_url=hub.url, timeout=30) as anonymous:
        r = anonymous.get(PREFIX, follow_redirects=False)
        assert r.status_code == 302, r.text
        state = parse_qs(urlsplit(r.headers["location"]).query)["state"][0]
        r = anonymous.get(PREFIX + "oauth_callback", params={"code": "bogus", "state": state})
        assert r.status_code == 400, r.text[:500]
    assert acct.up()


def test_oauth_code_and_state_are_masked_in_the_access_log(acct_hub):  # noqa: F811
    hub, _api, _acct = acct_hub
    browser = login(hub.url, "alice", PASSWORD)
    page = browser.get(PREFIX)  # the OAuth dance: hub authorize, then the service's callback
    assert page.status_code == 200
    (callback,) = [r.url for r in page.history if r.url.path.endswith("/oauth_callback")]
    query = parse_qs(callback.query.decode())
    code, state = query["code"][0], query["state"][0]
    log = hub.log()
    assert "oauth_callback?code=[secret]&state=[secret]" in log  # the kit's masked_uri
    assert code not in log and state not in log
