"""How the hub parts of Labspace's services are merged into the hub's config
(``labspace.hubconfig._services``), with two stand-in services so the merge
rules are tested apart from what the real services ask for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labspace import hubconfig
from labspace import settings as settings_mod
from labspace.hubconfig import Alerts, build
from labspace.settings import load
from labspace.state import State

PROXY = ["/opt/chp/bin/configurable-http-proxy"]


def alpha_alerts(user):
    return [{"level": "warning", "text": f"{user.name}: budget at 80%"}]


def broken_alerts(user):
    raise RuntimeError("service down")


PARTS = {
    "accounting": {
        "services": [{"name": "accounting", "url": "http://127.0.0.1:8010"}],
        "roles": [
            {"name": "accounting-service", "scopes": ["list:users"], "services": ["accounting"]}
        ],
        "custom_scopes": {"custom:labspace-accounting:read": {"description": "own usage"}},
        "user_scopes": ["custom:labspace-accounting:read"],
        "admin_scopes": ["custom:labspace-accounting:admin"],
        "nav": [{"title": "My usage", "url": "/services/accounting/", "admin": False}],
        "template_vars": {"labspace_alerts_accounting": alpha_alerts},
        "spawner": {"before_start": ["a.before"], "option_keys": {"project": "project"}},
    },
    "catalog": {
        "services": [{"name": "catalog", "url": "http://127.0.0.1:8011"}],
        "user_scopes": ["custom:labspace-catalog:read"],
        "template_vars": {"labspace_alerts_catalog": broken_alerts},
        "spawner": {"before_start": ["c.before"], "option_keys": {"app": "app"}},
    },
    "data": {},  # on by default; adds nothing here
}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    def config(name):
        return SimpleNamespace(problems=lambda values: [], hub_parts=lambda s, st: PARTS[name])

    monkeypatch.setattr(settings_mod, "service_config", config)
    monkeypatch.setattr(hubconfig, "HUB_PART_MODULES", ())  # the hub's own: test_ops_units

    def setup(text: str):
        path = tmp_path / "labspace.yaml"
        path.write_text(text)
        settings = load(path, environ={})
        state = State(settings)
        state.prepare()
        return build(settings, state, PROXY)

    return setup


def test_parts_merged(setup):
    values = setup("hub:\n  admin_users: [root, ada]\n")
    hub = values["JupyterHub"]
    assert [s["name"] for s in hub["services"]] == ["accounting", "catalog"]
    assert hub["custom_scopes"] == PARTS["accounting"]["custom_scopes"]
    roles = {r["name"]: r for r in hub["load_roles"]}
    assert roles["user"]["scopes"] == [
        "self",
        "custom:labspace-accounting:read",
        "custom:labspace-catalog:read",
    ]
    assert roles["labspace-admin"] == {
        "name": "labspace-admin",
        "description": "Administers Labspace's services",
        "scopes": ["custom:labspace-accounting:admin"],
        "users": ["root", "ada"],
    }
    assert values["LabspaceSpawnerMixin"]["before_start"] == ["a.before", "c.before"]
    assert values["LabspaceSpawnerMixin"]["option_keys"] == {"project": "project", "app": "app"}
    assert hub["template_vars"]["labspace_nav"] == PARTS["accounting"]["nav"]
    assert set(hub["template_vars"]) == {
        "labspace_nav",
        "labspace_alerts",
        "labspace_version",
        "labspace_home",
    }


def test_disabled_service_adds_nothing(setup):
    values = setup("accounting:\n  enabled: false\ncatalog:\n  enabled: false\n")
    assert "services" not in values["JupyterHub"]
    assert (
        "LabspaceSpawnerMixin" not in values or "before_start" not in values["LabspaceSpawnerMixin"]
    )


def test_one_disabled_other_kept(setup):
    values = setup("accounting:\n  enabled: false\n")
    assert [s["name"] for s in values["JupyterHub"]["services"]] == ["catalog"]
    assert values["LabspaceSpawnerMixin"]["before_start"] == ["c.before"]


def test_hub_config_services_and_roles_are_added_not_replaced(setup):
    values = setup(
        "hub:\n  config:\n    JupyterHub:\n"
        "      services: [{name: extra, api_token: abc}]\n"
        "      load_roles: [{name: extra-role, scopes: [read:users], services: [extra]}]\n"
    )
    hub = values["JupyterHub"]
    assert [s["name"] for s in hub["services"]] == ["accounting", "catalog", "extra"]
    assert "extra-role" in [r["name"] for r in hub["load_roles"]]
    assert "user" in [r["name"] for r in hub["load_roles"]]


def test_alerts_merged_and_a_failing_source_costs_only_its_banners(setup):
    values = setup("")
    alerts = values["JupyterHub"]["template_vars"]["labspace_alerts"]
    assert isinstance(alerts, Alerts)
    assert alerts(SimpleNamespace(name="ann")) == [
        {"level": "warning", "text": "ann: budget at 80%"}
    ]
    assert alerts(None) == []


def test_real_services_parts_are_well_formed(tmp_path):
    """Whatever the real services ask for uses JupyterHub's own vocabulary."""
    path = tmp_path / "labspace.yaml"
    path.write_text("")
    settings = load(path, environ={})
    state = State(settings)
    state.prepare()
    for part in hubconfig.service_parts(settings, state):
        for service in part.get("services", []):
            assert service["name"] and ("api_token" in service or "command" in service)
            if "url" in service:
                assert service["url"].startswith("http://127.0.0.1:")
        for role in part.get("roles", []):
            assert role["name"] not in ("user", "admin", "server", "token")
