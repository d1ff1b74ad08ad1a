"""A real Prometheus server scrapes a real hub with the config `labspace config
prometheus` prints, and every panel of every dashboard under dashboards/ answers.

One hub (accounting, catalog and data on, two profiles) and one Prometheus
(Debian's ``prometheus``, loopback, a temporary TSDB, scraping every second) for
the module. The scrape token (the ``prometheus`` service's) reads every
/metrics and nothing else; a user's token reads none.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
PROFILES = [
    {"slug": "small", "display_name": "Small", "default": True},
    {"slug": "big", "display_name": "Big"},
]
PATHS = ["hub/metrics", *(f"services/{s}/metrics" for s in ("accounting", "catalog", "data"))]
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def panel_queries() -> list[tuple[str, str]]:
    """``(dashboard/panel title, PromQL)`` of every panel's targets."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                found.append((f"{path.stem}/{panel['title']}", expr))
    return found


@pytest.fixture(scope="module")
def scraped(module_hub_factory, need, tmp_path_factory):
    binary = shutil.which("prometheus")
    need("Prometheus", binary is not None, "install Debian's prometheus (tests/provision.sh)")

    def edit(settings):
        settings["profiles"] = PROFILES
        settings["accounting"] = {
            "enabled": True,
            "port": free_port(),
            "projects": {"prefix": "lab-"},
            "no_project": "personal",
            "personal_allowance": 5,
            "prices": {"profiles": {"small": 1}},
        }
        settings["catalog"] = {"enabled": True, "port": free_port()}
        # the test service tops up a project (the per-project balance panel)
        (role,) = settings["hub"]["config"]["JupyterHub"]["load_roles"]
        role["scopes"] += [
            "custom:labspace-accounting:admin",
            "access:services!service=accounting",
        ]
        settings["data"] = {"enabled": True, "port": free_port()}
        # the warm pool's panels (one member: the start below may be warm or cold)
        settings["backend"] = {"warm_pool": {"enabled": True, "size": 1}}

    hub, api = module_hub_factory(edit)
    api.create_user("ada")
    user_token = api.token("ada")
    # a project with a budget, so the per-project balance has a series
    api.add_to_group("lab-p", "ada")
    topup = api.client.post(
        "services/accounting/api/ledger/topup",
        json={"project": "lab-p", "amount": "50", "reason": "the dashboards' test"},
    )
    assert topup.status_code == 201, topup.text
    # one start that works, one refused (a profile nobody configured)
    api.start_server("ada")
    refused = api.request("POST", "users/ada/servers/other", json={"profile": "nope"})
    assert refused.status_code == 400, refused.text
    api.stop_server("ada")

    work = tmp_path_factory.mktemp("prometheus")
    printed = subprocess.run(
        [
            str(Path(sys.executable).with_name("labspace")),
            "config",
            "prometheus",
            "--config",
            str(hub.config_path),
            "--interval",
            "1s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    config = work / "prometheus.yml"
    config.write_text(printed)
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1/", timeout=10)
    try:
        yield {
            "hub": hub,
            "api": api,
            "prom": client,
            "printed": printed,
            "user_token": user_token,
            "token_file": Path(hub.settings["data_dir"]) / "secrets" / "prometheus-api-token",
            "log": work / "prometheus.log",
        }
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def targets_up(prom: httpx.Client) -> list[dict]:
    try:
        active = prom.get("targets").json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []
    return active if active and all(t["health"] == "up" for t in active) else []


def test_printed_config_names_the_token_file_not_the_token(scraped):
    token = scraped["token_file"].read_text().strip()
    assert scraped["token_file"].stat().st_mode & 0o777 == 0o600
    assert token not in scraped["printed"]
    assert f"credentials_file: {scraped['token_file']}" in scraped["printed"]
    for path in PATHS:
        assert f"metrics_path: /{path}" in scraped["printed"]


def test_every_target_up_and_every_panel_answers(scraped):
    prom = scraped["prom"]
    try:
        active = wait_for(lambda: targets_up(prom), 60, 0.5, what="every target up")
    except TimeoutError:
        down = [
            (t["labels"]["job"], t["lastError"])
            for t in prom.get("targets").json()["data"]["activeTargets"]
            if t["health"] != "up"
        ]
        errors = [line for line in scraped["hub"].log().splitlines() if "500" in line][-5:]
        pytest.fail(f"targets down: {down}; hub log: {errors}")
    assert {t["labels"]["job"] for t in active} == {
        "labspace-hub",
        "labspace-accounting",
        "labspace-catalog",
        "labspace-data",
    }
    queries = panel_queries()
    assert len(queries) >= 20

    def empty() -> list[str]:
        missing = []
        for where, expr in queries:
            r = prom.get("query", params={"query": expr})
            assert r.status_code == 200, (where, expr, r.text)
            if not r.json()["data"]["result"]:
                missing.append(f"{where}: {expr}")
        return missing

    deadline = time.monotonic() + 30
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, "panels without data:\n" + "\n".join(missing)


def test_the_hub_counted_the_starts_by_profile(scraped):
    prom = scraped["prom"]
    r = prom.get("query", params={"query": "labspace_hub_spawns_total"}).json()
    got = {
        (s["metric"]["profile"], s["metric"]["outcome"]): s["value"][1] for s in r["data"]["result"]
    }
    assert float(got[("small", "started")]) >= 1
    assert float(got[("(other)", "refused")]) >= 1  # "nope" is no label of its own
    r = prom.get("query", params={"query": 'labspace_hub_refusals_total{reason="options"}'})
    assert float(r.json()["data"]["result"][0]["value"][1]) >= 1


def test_scrape_token_reads_metrics_and_nothing_else(scraped):
    hub = scraped["hub"]
    token = scraped["token_file"].read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    for path in PATHS:
        r = httpx.get(hub.url + path, headers=auth, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert "# TYPE" in r.text
    refused = ["hub/api/users", "hub/api/users/ada", "services/accounting/api/usage"]
    for path in refused:
        r = httpx.get(hub.url + path, headers=auth, timeout=10)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])


def test_a_user_token_reads_no_metrics(scraped):
    hub = scraped["hub"]
    auth = {"Authorization": f"token {scraped['user_token']}"}
    for path in PATHS:
        r = httpx.get(hub.url + path, headers=auth, timeout=10)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
        assert "# TYPE" not in r.text
