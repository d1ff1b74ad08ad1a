"""Tier 1: the dashboards (structure, one source with the chart's copy, the
chart's ConfigMaps), the hub's metrics hook (bounded labels), the scraper's
service and role, and the scrape config `labspace config prometheus` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import helm
from labspace import metrics
from labspace.cli import main
from labspace.hubconfig import build
from labspace.services.kit import metrics as kit_metrics
from labspace.settings import load
from labspace.spawners.mixin import StartOutcome
from labspace.state import State

REPO = Path(__file__).resolve().parent.parent
BOARDS = sorted((REPO / "dashboards").glob("*.json"))


def test_there_are_the_four_dashboards():
    assert {p.stem for p in BOARDS} == {"hub-health", "spawns", "usage", "apps"}


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path):
    board = json.loads(path.read_text())
    assert board["uid"].startswith("labspace-") and board["title"]
    (var,) = board["templating"]["list"]
    assert var == {**var, "type": "datasource", "query": "prometheus", "name": "PROMETHEUS_DS"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and ids
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${PROMETHEUS_DS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${PROMETHEUS_DS}"
            assert "user" not in target["expr"].replace("users", "")  # never by user


def test_dashboard_uids_unique():
    uids = [json.loads(p.read_text())["uid"] for p in BOARDS]
    assert len(uids) == len(set(uids))


def test_the_charts_copy_is_dashboards():
    """helm reads only files inside the chart: `make helm-dashboards` copies."""
    chart = {p.name: p.read_bytes() for p in (REPO / "helm/labspace/dashboards").glob("*")}
    assert chart == {p.name: p.read_bytes() for p in BOARDS}, "run `make helm-dashboards`"


def test_chart_ships_dashboards_only_when_asked(helm_binary):
    def maps(objects):
        return {
            o["metadata"]["name"]: o
            for o in objects
            if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
        }

    assert maps(helm.render("defaults")) == {}
    shipped = maps(helm.render("defaults", **{"grafana.dashboards.enabled": True}))
    assert len(shipped) == len(BOARDS)
    for path in BOARDS:
        cm = shipped[f"{helm.FULLNAME}-dashboard-{path.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][f"labspace-{path.stem}.json"]) == json.loads(path.read_text())


# -- the hub's metrics -----------------------------------------------------------


def sample(name: str, **labels) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


def test_hook_counts_with_bounded_labels():
    hub = metrics.hub_metrics()
    hub.set_profiles(["small", "big"], "small")
    before = sample("labspace_hub_spawns_total", profile="small", outcome="started") or 0
    hub.start_outcome(None, StartOutcome("started", "small", None, "", 12.0))
    hub.start_outcome(None, StartOutcome("refused", "ada-made-this-up", 400, "no", 0.0))
    hub.start_outcome(None, StartOutcome("refused", "small", 402, "budget", 0.0))
    hub.start_outcome(None, StartOutcome("failed", "", None, "boom", 3.0))
    assert sample("labspace_hub_spawns_total", profile="small", outcome="started") == before + 1
    assert sample("labspace_hub_spawns_total", profile="(other)", outcome="refused") >= 1
    assert sample("labspace_hub_spawns_total", profile="(none)", outcome="failed") >= 1
    assert sample("labspace_hub_refusals_total", reason="budget") >= 1
    assert sample("labspace_hub_refusals_total", reason="options") >= 1
    assert sample("labspace_hub_start_duration_seconds_count", profile="small") >= 1
    # every profile's series exists before its first start
    assert sample("labspace_hub_spawns_total", profile="big", outcome="failed") == 0
    assert sample("labspace_hub_pending_spawns") == 0  # no hub in this process
    from prometheus_client import REGISTRY, generate_latest

    assert "ada-made-this-up" not in generate_latest(REGISTRY).decode()


@pytest.mark.parametrize(
    "status,reason", [(400, "options"), (402, "budget"), (403, "forbidden"), (418, "other")]
)
def test_refusal_reason(status, reason):
    assert metrics.refusal_reason(status) == reason


def test_the_scope_is_the_kits():
    assert metrics.SCOPE == kit_metrics.SCOPE
    from labspace.services.accounting.config import METRICS

    assert METRICS == kit_metrics.SCOPE


@pytest.fixture
def hub_values(tmp_path):
    def make(text: str = ""):
        path = tmp_path / "labspace.yaml"
        path.write_text(f"data_dir: {tmp_path / 'data'}\n{text}")
        settings = load(path, environ={})
        state = State(settings)
        state.prepare()
        return settings, state, build(settings, state, ["/bin/chp"])

    return make


def test_the_scrapers_service_and_role(hub_values):
    settings, state, values = hub_values()
    hub = values["JupyterHub"]
    (service,) = [s for s in hub["services"] if s["name"] == "prometheus"]
    assert "command" not in service and "url" not in service
    token_file = Path(metrics.token_file(state))
    assert service["api_token"] == token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    (role,) = [r for r in hub["load_roles"] if r["name"] == "labspace-metrics"]
    assert role["scopes"] == ["read:metrics", "custom:labspace-metrics:read"]
    assert role["services"] == ["prometheus"] and "users" not in role
    assert "custom:labspace-metrics:read" in hub["custom_scopes"]
    assert "labspace.metrics.start_outcome" in values["LabspaceSpawnerMixin"]["start_outcome"]
    # the same token at the next start
    assert build(settings, state, ["/bin/chp"])["JupyterHub"]["services"] == hub["services"]


@pytest.mark.parametrize(
    "text,scheme,target,paths",
    [
        ("", "http", "127.0.0.1:8000", ["/hub/metrics", "/services/accounting/metrics"]),
        (
            "hub:\n  base_url: /lab/\n  public_url: https://lab.example.org/lab/\n"
            "catalog: {enabled: false}\ndata: {enabled: false}\n",
            "https",
            "lab.example.org",
            ["/lab/hub/metrics", "/lab/services/accounting/metrics"],
        ),
    ],
    ids=["defaults", "https-base-url"],
)
def test_scrape_config(hub_values, text, scheme, target, paths):
    settings, state, _ = hub_values(text)
    printed = CliRunner().invoke(main, ["config", "prometheus", "--config", str(settings.source)])
    assert printed.exit_code == 0, printed.output
    config = yaml.safe_load(printed.stdout)
    jobs = config["scrape_configs"]
    assert [j["metrics_path"] for j in jobs][: len(paths)] == paths
    if "catalog: {enabled: false}" in text:
        assert len(jobs) == 2
    for job in jobs:
        assert job["scheme"] == scheme and job["static_configs"] == [{"targets": [target]}]
        assert job["authorization"] == {
            "type": "Bearer",
            "credentials_file": metrics.token_file(state),
        }
    assert state.service_token("prometheus") not in printed.output


def test_scrape_config_bad_interval(hub_values):
    settings, _, _ = hub_values()
    args = ["config", "prometheus", "--config", str(settings.source), "--interval", "soon"]
    printed = CliRunner().invoke(main, args)
    assert printed.exit_code == 2 and "--interval" in printed.output
    assert "Traceback" not in printed.output
