"""Tier 2: the catalog's /metrics in-process behind a stand-in hub: the scrape
scope alone reads it (no access scope to the service), other tokens get 403,
launches are counted by outcome, and no user name is a label value."""

from __future__ import annotations

import pytest
from test_catalog_service import WEB, admin_token, catalog_db, svc, user_token  # noqa: F401, F811

METRICS = "custom:labspace-metrics:read"


def scraper_token(svc) -> str:  # noqa: F811
    token = svc.hub.token("prometheus", [METRICS])
    svc.hub.tokens[token]["scopes"] = [METRICS]  # a service's token: no access:services
    svc.hub.tokens[token]["kind"] = "service"
    return token


@pytest.mark.parametrize("catalog_db", ["sqlite"], indirect=True)
async def test_catalog_metrics_scope_and_launch_counts(svc):  # noqa: F811
    r = await svc.call(scraper_token(svc), "GET", "metrics")
    assert r.status_code == 200, r.text
    assert 'labspace_catalog_launches_total{kind="standalone",outcome="failed"} 0.0' in r.text
    assert 'labspace_catalog_apps{state="enabled"}' in r.text
    for token in (user_token(svc), admin_token(svc), None):
        r = await svc.call(token, "GET", "metrics")
        assert r.status_code == 403, r.text
        assert r.json()["message"] and "labspace_" not in r.text
    svc.hub.refuse_start = (403, "no")
    r = await svc.call(user_token(svc, "zoe-the-user"), "POST", f"api/apps/{WEB['id']}/launch", {})
    assert r.status_code == 403, r.text
    text = (await svc.call(scraper_token(svc), "GET", "metrics")).text
    assert 'labspace_catalog_launches_total{kind="proxied",outcome="refused"} 1.0' in text
    assert "zoe-the-user" not in text
