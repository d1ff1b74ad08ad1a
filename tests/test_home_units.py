"""The home page's pure parts (labspace/home.py, labspace/hubpages.py):
workspace grouping, budget wording, and the service directory's None when a
service is off or down (a real closed port, no mock)."""

from __future__ import annotations

import asyncio

import pytest

from labspace import home, hubpages
from labspace.services.kit.caller import ServiceCaller

NAMES = {"small": "Small", "medium": "Medium", "gpu": "GPU"}
PROFILES = [
    {"slug": "small", "display_name": "Small"},
    {"slug": "medium", "display_name": "Medium"},
]


@pytest.mark.parametrize(
    "hours, words",
    [
        (None, "no limit known"),
        (0, "no time"),
        (-3, "no time"),
        (0.01, "about 1 minute"),
        (0.5, "about 30 minutes"),
        (1.2, "about 1 hour"),
        (14.4, "about 14 hours"),
        (47.4, "about 47 hours"),
        (100, "about 4 days"),
    ],
    ids=["none", "zero", "negative", "1min", "30min", "1h", "14h", "47h", "days"],
)
def test_hours_phrase(hours, words):
    assert home.hours_phrase(hours) == words


def test_workspace_rows_default_first_then_named_by_name():
    rows = home.workspace_rows(
        [
            {"name": "zeta", "state": "running", "options": {"profile": "gpu"}},
            {"name": "Alpha", "state": "stopped", "options": {}},
        ],
        NAMES,
        "small",
    )
    assert [r["name"] for r in rows] == ["", "Alpha", "zeta"]
    assert rows[0]["label"] == "Default workspace" and rows[0]["state"] == "stopped"
    assert [r["profile_name"] for r in rows] == ["Small", "Small", "GPU"]


def test_workspace_rows_keep_only_start_options_and_known_states():
    (row,) = home.workspace_rows(
        [{"name": "", "state": "odd", "options": {"profile": "medium", "project": "a", "x": 1}}],
        NAMES,
        "small",
    )
    assert row["options"] == {"profile": "medium", "project": "a"}
    assert row["state"] == "stopped"


def test_budget_view_hours_per_profile_and_burn():
    info = {
        "currency": "credits",
        "projects": [{"name": "lab-a", "balance": "140.00", "default": True}],
        "personal": None,
        "prices": {"small": "1.00", "medium": "10.00"},
    }
    view = home.budget_view(info, PROFILES, [{"profile": "medium"}, {"profile": "small"}])
    (account,) = view["accounts"]
    assert [(x["profile"], x["phrase"]) for x in account["lasts"]] == [
        ("Small", "about 6 days"),
        ("Medium", "about 14 hours"),
    ]
    assert view["burn"] == {"per_hour": "11.00", "count": 2, "phrase": "about 13 hours"}
    assert not view["empty"]


def test_budget_view_personal_zero_is_empty_and_unpriced_profiles_are_left_out():
    info = {"currency": "EUR", "projects": [], "personal": {"balance": "0.00"}, "prices": {}}
    view = home.budget_view(info, PROFILES, [])
    assert view["empty"] and view["burn"] is None
    assert view["accounts"][0]["lasts"] == []


def test_budget_view_no_account_at_all():
    info = {"projects": [], "personal": None, "refuse_without_project": True}
    view = home.budget_view(info, PROFILES, [])
    assert view["empty"] and view["refused"] and view["accounts"] == []


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_directory_answers_none_when_off_or_down():
    url = f"http://127.0.0.1:{closed_port()}/"
    down = ServiceCaller("catalog", url, "t0ken", timeout=1, tries=1)
    directory = hubpages.ServiceDirectory({"catalog": down})
    assert directory.enabled("catalog") and not directory.enabled("data")
    answers = asyncio.run(directory.ask_many({"a": ("catalog", "mine"), "b": ("data", "mine")}))
    assert answers == {"a": None, "b": None}
    assert "t0ken" not in repr(directory)


@pytest.mark.parametrize(
    "answer, available, count",
    [
        (None, False, 0),
        ({"apps": [{"id": "a"}, {"id": "b"}]}, True, 2),
        ({"apps": []}, True, 0),
        ({"apps": "nope"}, False, 0),
        ({"apps": [{"title": "no id"}]}, False, 0),
        (["not", "an", "object"], False, 0),
    ],
    ids=["down", "two", "none", "not-a-list", "no-id", "not-an-object"],
)
def test_listing_is_unavailable_unless_the_answer_has_the_right_shape(answer, available, count):
    section = home.listing(True, answer, "apps")
    assert (section.enabled, section.available, len(section.items)) == (True, available, count)


def test_directory_gives_up_on_a_service_that_does_not_answer():
    """A port that accepts and never answers (a hung service): None within the timeout."""
    import socket
    import time

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/"
        directory = hubpages.ServiceDirectory({"data": ServiceCaller("data", url, "t", 0.5, 1)})
        began = time.monotonic()
        assert asyncio.run(directory.ask("data", "mine?user=a")) is None
        assert time.monotonic() - began < 3
