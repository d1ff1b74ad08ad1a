"""Tier 1: pure rules of accounting (prices, projects, warnings, settings checks,
hub parts), with golden values."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from labspace import settings as labspace_settings
from labspace.services.accounting import config, hubside, pricing
from labspace.services.accounting.alerts import crossed
from labspace.services.accounting.policy import Policy
from labspace.services.accounting.pricing import Point
from labspace.state import State

T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize(
    "profile,resources",
    [
        ({"slug": "a"}, {"cpu": None, "mem_gib": None, "gpus": 0}),
        (
            {"slug": "b", "cpu": {"limit": 2}, "memory": {"limit": "4G"}},
            {"cpu": 2, "mem_gib": 4.0, "gpus": 0},
        ),
        (
            {"slug": "c", "cpu": {"guarantee": 0.5}, "memory": {"guarantee": "512M"}, "gpus": 2},
            {"cpu": 0.5, "mem_gib": 0.5, "gpus": 2},
        ),
    ],
    ids=["shared", "limits", "guarantees"],
)
def test_resources_of(profile, resources):
    assert pricing.resources_of(profile) == resources


def test_profile_price_explicit_beats_derived():
    block = {
        "profiles": {"small": 1.25},
        "resources": {"cpu_hour": 0.5, "gib_hour": 0.1, "gpu_hour": 3},
    }
    res = {"cpu": 2, "mem_gib": 4, "gpus": 1}
    assert pricing.price_of("small", res, block) == D("1.25")
    assert pricing.price_of("other", res, block) == D("4.4")  # 2x0.5 + 4x0.1 + 1x3


def test_schedule_with_scheduled_changes():
    prices = {
        "profiles": {"small": 1},
        "resources": {"cpu_hour": 1},
        "effective_from": "2026-01-01T00:00:00Z",
        "scheduled": [
            {
                "effective_from": "2026-06-01T00:00:00Z",
                "profiles": {"small": 2},
                "resources": {"cpu_hour": 3},
            }
        ],
    }
    profiles = [{"slug": "small"}, {"slug": "big", "cpu": {"limit": 2}}]
    got = pricing.settings_schedule(prices, profiles)
    assert got == {
        "small": [
            Point(datetime(2026, 1, 1, tzinfo=UTC), D(1)),
            Point(datetime(2026, 6, 1, tzinfo=UTC), D(2)),
        ],
        "big": [
            Point(datetime(2026, 1, 1, tzinfo=UTC), D(2)),
            Point(datetime(2026, 6, 1, tzinfo=UTC), D(6)),
        ],
    }


def test_cost_is_piecewise_across_a_price_change():
    points = [Point(pricing.EPOCH, D(1)), Point(T, D(3))]
    assert pricing.cost(points, T - timedelta(hours=2), T) == D(2)
    assert pricing.cost(points, T - timedelta(hours=1), T + timedelta(minutes=30)) == D("2.5")
    assert pricing.cost(points, T, T - timedelta(hours=1)) == 0
    assert pricing.price_at(points, T - timedelta(seconds=1)) == D(1)
    assert pricing.price_at(points, T) == D(3)
    assert pricing.price_at([Point(T, D(1))], T - timedelta(days=1)) is None


def test_new_prices_never_apply_to_the_past():
    stored = [Point(pricing.EPOCH, D(1))]
    # a plain edit of the price in the settings: applies from now
    wanted = [Point(pricing.EPOCH, D(2))]
    assert pricing.merge_new_points(stored, wanted, T) == [Point(T, D(2))]
    # the same prices again: nothing to add
    assert pricing.merge_new_points(stored, [Point(pricing.EPOCH, D(1))], T) == []
    # a scheduled change: added as scheduled; a past one: from now
    future = [Point(pricing.EPOCH, D(1)), Point(T + timedelta(days=3), D(5))]
    assert pricing.merge_new_points(stored, future, T) == [future[1]]
    past = [Point(pricing.EPOCH, D(1)), Point(T - timedelta(days=3), D(5))]
    assert pricing.merge_new_points(stored, past, T) == [Point(T, D(5))]
    # first time seen: as declared
    assert pricing.merge_new_points([], past, T) == past


def test_amounts_and_times():
    assert pricing.dec(0.1) == D("0.100000")
    assert pricing.show(D("1.005")) == "1.01"
    assert pricing.estimate(D("1.5")) == {"1h": "1.50", "8h": "12.00", "40h": "60.00"}
    assert pricing.parse_time("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert pricing.parse_time("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        pricing.parse_time("soon")


def test_projects_and_leads():
    policy = Policy(
        {
            "projects": {
                "groups": ["lab"],
                "prefix": "proj-",
                "parents": {"proj-a": "lab"},
                "leads": {"proj-a": ["ann"]},
                "default": {"bob": "proj-b"},
            }
        }
    )
    assert policy.projects_of(["staff", "proj-b", "lab", "proj-a"]) == ["lab", "proj-a", "proj-b"]
    assert policy.default_project("bob", ["proj-a", "proj-b"]) == "proj-b"
    assert policy.default_project("bob", ["proj-a"]) == "proj-a"
    assert policy.default_project("ann", []) is None
    assert policy.parent_of("proj-a") == "lab" and policy.parent_of("lab") is None
    assert policy.led_by("ann") == ["proj-a"] and policy.leads_of("proj-b") == []
    assert not Policy({}).is_project("anything")


@pytest.mark.parametrize(
    "warn_at,left,reference,mark",
    [
        ([0.2, 0.1], D(50), D(100), None),
        ([0.2, 0.1], D(20), D(100), 0.2),
        ([0.2, 0.1], D(5), D(100), 0.1),
        ([50, 10], D(30), D(1000), 50),
        ([50, 10], D(10), D(1000), 10),
        ([0.5, 10], D(8), D(100), 10),
    ],
)
def test_warning_marks(warn_at, left, reference, mark):
    assert crossed(Policy({"warn_at": warn_at}), left, reference) == mark


def values(accounting: dict, **more) -> dict:
    data = {"hub": {"admin_users": ["admin"]}, "accounting": accounting, **more}
    return labspace_settings.with_defaults(data)


def test_settings_problems_golden():
    got = config.problems(
        values(
            {
                "port": 8000,
                "no_project": "refuse",
                "prices": {
                    "profiles": {"huge": 1},
                    "effective_from": "later",
                    "scheduled": [{"effective_from": "2026-13-01", "profiles": {"tiny": 1}}],
                },
                "projects": {"parents": {"a": "b"}, "leads": {"c": ["x"]}},
                "monthly_allowance": {"d": 5},
                "db_url": "mysql://x",
            }
        )
    )
    assert got == [
        "accounting.prices.profiles.huge: no such profile (profiles: default)",
        "accounting.prices.effective_from: 'later' is not a time (ISO 8601, e.g. "
        "2026-01-01T00:00:00Z)",
        "accounting.prices.scheduled[0].profiles.tiny: no such profile (profiles: default)",
        "accounting.prices.scheduled[0].effective_from: '2026-13-01' is not a time (ISO 8601, "
        "e.g. 2026-01-01T00:00:00Z)",
        "accounting.no_project: refuse, but no group is a project, so nobody could start "
        "(set accounting.projects.groups or accounting.projects.prefix)",
        *(
            f"{where}: {name!r} is not a project (add it to accounting.projects.groups or match "
            "accounting.projects.prefix)"
            for where, name in [
                ("accounting.projects.parents", "a"),
                ("accounting.projects.parents", "b"),
                ("accounting.projects.leads", "c"),
                ("accounting.monthly_allowance", "d"),
            ]
        ),
        "accounting.db_url: unsupported database or driver 'mysql' (sqlite:///path or "
        "postgresql+psycopg://user:password@host:5432/db)",
        "accounting.port: 8000 is also hub.port (give each a port of its own)",
    ]


def test_settings_good_and_disabled():
    good = {
        "projects": {"prefix": "proj-", "parents": {"proj-a": "proj-lab"}},
        "prices": {"profiles": {"default": 1}},
    }
    assert config.problems(values(good)) == []
    assert config.problems(values({"enabled": False, "prices": {"profiles": {"x": 1}}})) == []
    assert (
        labspace_settings.validate({"hub": {"admin_users": ["a"]}, "accounting": {"warn_at": [-1]}})
        != []
    )


def test_schema_fragment_documents_every_key():
    fragment = labspace_settings.schema()["properties"]["accounting"]
    assert fragment["additionalProperties"] is False

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}{name}: no description"
            if path.count(".") < 2 and "scheduled" not in path:
                assert "default" in sub or path.startswith("prices.scheduled"), f"{path}{name}"
            if sub.get("type") == "object" and "properties" in sub:
                assert sub.get("additionalProperties") is False, f"{path}{name}"
            walk(sub, f"{path}{name}.")

    walk(fragment, "")


def test_hub_parts(tmp_path):
    data = {
        "data_dir": str(tmp_path / "data"),
        "hub": {"admin_users": ["admin"]},
        "accounting": {"port": 8123},
    }
    s = labspace_settings.Settings(
        values=labspace_settings.with_defaults(data), source=tmp_path / "labspace.yaml"
    )
    state = State(s)
    parts = config.hub_parts(s, state)
    service, deliverer = parts["services"]
    assert service["name"] == "accounting" and service["url"] == "http://127.0.0.1:8123"
    assert service["command"][1:] == ["-m", "labspace.services.accounting"]
    assert service["api_token"] == state.service_token("accounting")
    assert set(service["oauth_client_allowed_scopes"]) == {
        config.READ,
        config.READ_ALL,
        config.ADMIN,
    }
    env = __import__("json").loads(service["environment"]["LABSPACE_ACCOUNTING_CONFIG"])
    assert "db_url" not in env and "db_url" not in env["accounting"]
    db_url_file = Path(env["db_url_file"])
    assert db_url_file == tmp_path / "data" / "secrets" / "accounting-db-url"
    assert db_url_file.read_text().strip() == f"sqlite:///{tmp_path / 'data' / 'accounting.sqlite'}"
    assert stat.S_IMODE(db_url_file.stat().st_mode) == 0o600
    assert [p["slug"] for p in env["profiles"]] == ["default"]
    assert deliverer["name"] == "accounting-deliverer" and "url" not in deliverer
    assert deliverer["command"][1:] == ["-m", "labspace.services.accounting.deliver"]
    assert parts["roles"] == [
        {
            "name": "labspace-accounting-service",
            "description": "What the accounting service may do: see servers, stop them",
            "scopes": [
                "list:users",
                "read:users:name",
                "read:users:groups",
                "read:servers",
                "delete:servers",
                "list:groups",
                "read:groups",
            ],
            "services": ["accounting"],
        }
    ]
    from jupyterhub.scopes import scope_definitions

    assert all(s in scope_definitions for s in parts["roles"][0]["scopes"])
    assert parts["custom_scopes"][config.ADMIN]["subscopes"] == [config.READ_ALL]
    assert parts["user_scopes"] == ["access:services!service=accounting", config.READ]
    assert config.ADMIN in parts["admin_scopes"]
    assert [n["title"] for n in parts["nav"]] == ["My usage", "Project", "Accounting admin"]
    assert callable(parts["template_vars"]["labspace_alerts_accounting"])
    assert parts["spawner"]["option_keys"] == {
        "project": parts["spawner"]["option_keys"]["project"]
    }
    s.values["accounting"]["enabled"] = False
    assert config.hub_parts(s, state) == {}


def test_hub_parts_share_one_hub_side(tmp_path):
    """The spawner hooks and the banner's alerts are one HubSide, built by
    hub_parts and held by the hub's config (no module-level registry)."""
    data = {"data_dir": str(tmp_path / "data"), "hub": {"admin_users": ["admin"]}}
    s = labspace_settings.Settings(
        values=labspace_settings.with_defaults(data), source=tmp_path / "labspace.yaml"
    )
    state = State(s)
    parts = config.hub_parts(s, state)
    hooks = [parts["spawner"][k][0] for k in ("check_options", "form_parts", "before_start")]
    hooks += [
        parts["spawner"]["after_stop"][0],
        parts["template_vars"]["labspace_alerts_accounting"],
    ]
    owners = {id(hook.__self__) for hook in hooks}
    assert len(owners) == 1
    assert isinstance(hooks[0].__self__, hubside.HubSide)
    again = config.hub_parts(s, state)  # another load of the config: its own HubSide
    assert again["spawner"]["before_start"][0].__self__ is not hooks[0].__self__
    assert not [
        n for n, v in vars(hubside).items() if isinstance(v, dict) and not n.startswith("__")
    ]


def test_policy_takes_its_defaults_from_the_schema(tmp_path):
    """A settings file without personal_allowance: the service's Policy gets the
    schema's default (10), not one of its own (it used to read 0)."""
    path = tmp_path / "labspace.yaml"
    path.write_text("data_dir: data\nhub:\n  admin_users: [admin]\naccounting:\n  currency: euro\n")
    s = labspace_settings.load(path, environ={})
    env = config.service_environment(s, State(s))
    section = json.loads(env["LABSPACE_ACCOUNTING_CONFIG"])["accounting"]
    assert Policy(section).personal_allowance == Decimal(10)
    raw = yaml.safe_load(path.read_text())["accounting"]
    assert raw == {"currency": "euro"}
    policy = Policy(raw)  # the section as written, nothing filled in yet
    assert policy.personal_allowance == Decimal(10)
    assert (policy.currency, policy.grace_period, policy.charge_interval) == ("euro", 600, 60)
    assert (policy.min_period_hours, policy.warn_at, policy.refuse_without_project) == (
        1.0,
        [0.2, 0.1],
        False,
    )


def test_csv_cells_are_never_formulas():
    from labspace.services.accounting.reports import to_csv

    text = to_csv(
        [{"user": "=HYPERLINK(1)", "cost": "1.00", "resources": {"cpu": 1}}], ("user", "cost")
    )
    assert text.splitlines() == ["user,cost", "'=HYPERLINK(1),1.00"]


def test_csv_without_rows_keeps_its_header():
    from labspace.services.accounting.reports import USAGE_COLUMNS, to_csv

    assert to_csv([], ("project", *USAGE_COLUMNS)) == "project,sessions,cost,charged,unbilled\r\n"
