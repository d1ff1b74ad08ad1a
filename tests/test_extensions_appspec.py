"""Catalog apps as the workspace reads them (``LABSPACE_CATALOG_APPS``): a good
entry becomes an AppSpec; a bad one is skipped with a message that names the app,
the key and the fix; the list as a whole never raises."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from labspace.extensions import appspec
from labspace.extensions.apps import icon_file

GOOD = {
    "id": "viewer",
    "version": "2.1",
    "title": "Volume viewer",
    "description": "3D volumes",
    "category": "Imaging",
    "icon": "",
    "launch": {
        "command": ["viewer", "--port={port}", "--prefix={base_url}viewer/"],
        "unix_socket": False,
        "ready_path": "/health",
        "ready_status": 204,
        "timeout": 45,
        "environment": {"VIEWER_MODE": "web"},
        "cwd": "projects/x",
    },
}


def with_(path: str, value):
    entry = copy.deepcopy(GOOD)
    *parents, key = path.split(".")
    target = entry
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return entry


def test_good_entry():
    app = appspec.parse_app(GOOD)
    assert app.id == "viewer" and app.version == "2.1" and app.title == "Volume viewer"
    assert app.command == ("viewer", "--port={port}", "--prefix={base_url}viewer/")
    assert (app.ready_path, app.ready_status, app.timeout) == ("/health", 204, 45.0)
    assert app.environment == {"VIEWER_MODE": "web"} and app.cwd == "projects/x"


def test_defaults():
    app = appspec.parse_app({"id": "a", "launch": {"command": ["a", "{port}"]}})
    assert (app.title, app.ready_path, app.ready_status, app.timeout, app.cwd) == (
        "a",
        "/",
        200,
        30.0,
        "",
    )


def test_unix_socket_needs_its_placeholder():
    entry = with_("launch.unix_socket", True)
    with pytest.raises(appspec.AppSpecError, match=r"must contain \{unix_socket\}"):
        appspec.parse_app(entry)
    entry["launch"]["command"] = ["viewer", "--socket={unix_socket}"]
    assert appspec.parse_app(entry).unix_socket


def test_ready_path_may_start_with_base_url():
    app = appspec.parse_app(with_("launch.ready_path", "{base_url}viewer/health"))
    assert app.ready_path == "{base_url}viewer/health"


def test_bundled_needs_no_command():
    app = appspec.parse_app({"id": "dashboards", "launch": {"bundled": True}})
    assert app.bundled and app.command == ()


@pytest.mark.parametrize(
    "entry, message",
    [
        (with_("id", "Bad Id"), "is not a valid path name"),
        (with_("id", "api"), "path the workspace already serves"),
        (with_("colour", "red"), "unknown key 'colour'"),
        (with_("launch.shell", True), "unknown key launch.'shell'"),
        (with_("launch.command", "viewer --port 1"), "never a shell string"),
        (with_("launch.command", []), "non-empty list"),
        (with_("launch.command", ["viewer"]), r"must contain \{port\}"),
        (with_("launch.command", ["viewer", "{port}", "{home}"]), r"unknown placeholder \{home\}"),
        (with_("launch.command", ["viewer", 8080]), "non-empty string"),
        (with_("launch.ready_path", "health"), "must start with '/'"),
        (with_("launch.ready_status", "200"), "must be an HTTP status"),
        (with_("launch.ready_status", 42), "must be an HTTP status"),
        (with_("launch.timeout", 0), "between 0 and 600"),
        (with_("launch.timeout", True), "number of seconds"),
        (with_("launch.environment", {"1BAD": "x"}), "bad variable name"),
        (with_("launch.environment", {"A": 1}), "must be a string"),
        (with_("launch.cwd", "/etc"), "relative to the home folder"),
        (with_("launch.cwd", "a/../../b"), "without '..'"),
        (with_("launch.unix_socket", "yes"), "true or false"),
        (with_("launch", KeyError), "launch must be an object"),
        ("viewer", "must be an object"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_bad_entry(entry, message):
    with pytest.raises(appspec.AppSpecError, match=message):
        appspec.parse_app(entry)


def test_list_skips_bad_entries_and_keeps_the_rest():
    text = json.dumps([GOOD, with_("launch.command", "sh -c x"), GOOD, {"id": "b"}])
    apps, problems = appspec.parse_catalog_apps(text)
    assert [a.id for a in apps] == ["viewer"]
    assert problems == [
        "LABSPACE_CATALOG_APPS[1]: app viewer: launch.command must be a non-empty list of "
        'arguments (e.g. ["my-app", "--port={port}"]), never a shell string; skipped',
        "LABSPACE_CATALOG_APPS[2]: app viewer is listed twice; skipped",
        "LABSPACE_CATALOG_APPS[3]: app b: launch must be an object; skipped",
    ]


@pytest.mark.parametrize(
    "text, problem",
    [(None, None), ("", None), ("{nope", "is not JSON"), ('{"id": "a"}', "must be a JSON list")],
)
def test_list_never_raises(text, problem):
    apps, problems = appspec.parse_catalog_apps(text)
    assert apps == []
    assert (problem in problems[0]) if problem else problems == []


def test_icon_file(tmp_path):
    svg = "data:image/svg+xml;base64,PHN2Zy8+"
    assert Path(icon_file("a", svg, str(tmp_path))).read_bytes() == b"<svg/>"
    quoted = "data:image/svg+xml,%3Csvg%2F%3E"
    assert Path(icon_file("b", quoted, str(tmp_path))).read_text() == "<svg/>"
    assert icon_file("c", "data:text/html;base64,PHN2Zy8+", str(tmp_path)) == ""
    assert icon_file("d", "https://example.com/x.svg", str(tmp_path)) == ""
    assert icon_file("e", "data:image/png;base64,!!!", str(tmp_path)) == ""


def test_shared_loopback_refuses_tcp_apps():
    tcp = {"id": "web", "launch": {"command": ["web", "{port}"]}}
    sock = {"id": "sock", "launch": {"command": ["web", "{unix_socket}"], "unix_socket": True}}
    assert appspec.parse_app(tcp).command == ("web", "{port}")  # a private loopback
    with pytest.raises(appspec.AppSpecError, match="app web: listens on a TCP port"):
        appspec.parse_app(tcp, shared_loopback=True)
    assert appspec.parse_app(sock, shared_loopback=True).unix_socket is True
    assert appspec.parse_app(
        {"id": "dashboards", "launch": {"bundled": True}}, shared_loopback=True
    ).bundled


@pytest.mark.parametrize(
    "env, shared",
    [({}, True), ({"LABSPACE_LOOPBACK": "private"}, False), ({"LABSPACE_LOOPBACK": "x"}, True)],
    ids=["unset", "private", "other"],
)
def test_loopback_shared_unless_private(env, shared):
    assert appspec.loopback_shared(env) is shared
