"""One app contract (extensions/appspec.py): an app a workspace would refuse is
refused where it is written, with the reason, one line each: by the catalog API
(the service in-process on a real database) and by the settings (labspace.yaml
through ``labspace.settings.load`` and the ``labspace config validate`` script);
the workspace's lifecycle API answers any name (a real jupyter-server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_catalog_service import WEB, admin_token, catalog_db, svc, user_token  # noqa: F401
from test_extensions_server import client, server  # noqa: F401

from labspace import settings
from labspace.extensions import appspec
from labspace.services.catalog import apps as appdefs

LABSPACE = Path(sys.executable).parent / "labspace"
TAKEN = (
    "choose another id; the workspace's own paths are api, doc, edit, files, kernelspecs, "
    "lab, labspace-apps, login, logout, nbconvert, notebooks, proxy, server-proxy, static, "
    "terminals, tree, view, voila"
)
SOCKET_LAUNCH = {"command": ["my-app", "--socket", "{unix_socket}"], "unix_socket": True}


def reserved(app_id: str, where: str) -> str:
    return f"{where}.id: {app_id!r} is a path the workspace already serves ({TAKEN})"


# -- one rule ----------------------------------------------------------------

IDS = [
    "a",
    "web",
    "my-viewer",
    "a1-b2-c3",
    "x" * 30,
    "x" * 31,
    "x" * 40,
    "a-",
    "-a",
    "a--b",
    "3d",
    "3d-viewer",
    "my_app",
    "My-App",
    "web\n",
    "a/b",
    "",
    *sorted(appspec.RESERVED_IDS),
]


@pytest.mark.parametrize("app_id", IDS)
def test_catalog_refuses_exactly_the_ids_a_workspace_refuses(app_id):
    defn = {"id": app_id, "title": "T", "kind": "proxied", "launch": SOCKET_LAUNCH}
    catalog = appdefs.definition_problems(defn, shared_loopback=True)
    workspace = appspec.refusals(appdefs.workspace_entry(appdefs.with_defaults(defn)), True)
    assert bool(catalog) == bool(workspace), (catalog, workspace)
    if app_id in appspec.RESERVED_IDS:
        assert catalog == [reserved(app_id, "app")]


def test_the_catalog_schema_spells_the_contracts_id_rule():
    """JSON cannot import it: the schema repeats the contract's pattern, length
    and hint, word for word."""
    schema = appdefs.app_schema()["properties"]["id"]
    assert schema["pattern"] == f"^{appspec.ID_PATTERN}$"
    assert (schema["maxLength"], schema["x-hint"]) == (appspec.ID_MAX, appspec.ID_HINT)


def test_an_app_id_is_a_server_name_jupyterhub_creates():
    """A standalone app runs in a named server called by its id: JupyterHub
    refuses to create one whose name is not a safe slug (400 at launch)."""
    import itertools

    from jupyterhub.slugs import is_valid_safe_slug

    names = ["".join(t) for n in range(1, 6) for t in itertools.product("ab1-", repeat=n)]
    names += IDS
    assert [n for n in names if bool(appspec.NEW_APP_ID.match(n)) != is_valid_safe_slug(n)] == []


def test_a_workspace_still_serves_an_app_stored_under_an_older_id():
    """Saving needs today's id rule; a workspace serves what a catalog already holds."""
    import json

    defn = {"id": "3d-viewer", "title": "T", "kind": "proxied", "launch": SOCKET_LAUNCH}
    entry = appdefs.workspace_entry(appdefs.with_defaults(defn))
    assert [r.key for r in appspec.refusals(entry)] == ["id"]
    apps, problems = appspec.parse_catalog_apps(json.dumps([entry]), shared_loopback=True)
    assert ([a.id for a in apps], problems) == (["3d-viewer"], [])


@pytest.mark.parametrize(
    "launch, line",
    [
        (
            {"cwd": "../elsewhere"},
            "app.launch.cwd: must be a folder relative to the home folder, without '..' "
            "(got '../elsewhere')",
        ),
        (
            {"environment": {"1BAD": "x"}},
            "app.launch.environment: has a bad variable name '1BAD' (letters, digits and '_', "
            "not starting with a digit)",
        ),
        (
            {"command": ["my-app", "{unix_socket}", "--home={home}"]},
            "app.launch.command: has an unknown placeholder {home} "
            "(use {port}, {unix_socket} or {base_url})",
        ),
    ],
    ids=["cwd", "env-name", "placeholder"],
)
def test_launch_rules_of_the_workspace_are_the_catalogs(launch, line):
    defn = {"id": "viewer", "title": "T", "kind": "proxied", "launch": {**SOCKET_LAUNCH, **launch}}
    assert appdefs.definition_problems(defn) == [line]


def test_route_fragments_are_one_group_and_match_the_rule():
    import re

    for route in (appspec.ID_ROUTE, appspec.NAME_ROUTE):
        assert re.compile(route).groups == 1
    assert re.fullmatch(appspec.ID_ROUTE, "my-viewer") and re.fullmatch(appspec.ID_ROUTE, "3d-x")
    assert not re.fullmatch(appspec.ID_ROUTE, "-a") and not re.fullmatch(appspec.ID_ROUTE, "A")
    assert re.fullmatch(appspec.NAME_ROUTE, "operator_app") and not re.fullmatch(
        appspec.NAME_ROUTE, "a/b"
    )


@pytest.mark.parametrize("name", ["No_Such", "tcp", "lab"])
def test_workspace_api_answers_any_name_it_does_not_serve_with_json_404(client, name):  # noqa: F811
    """The lifecycle API's route takes any app name (NAME_ROUTE): an app the
    workspace does not serve is its own JSON 404, whatever the name's spelling."""
    r = client.get(f"/labspace-apps/api/apps/{name}/logs")
    assert r.status_code == 404, r.text
    assert r.json() == {"status": 404, "message": f"No such app: {name}"}


# -- the catalog API ---------------------------------------------------------


@pytest.mark.parametrize("app_id", ["lab", "api", "files"])
async def test_api_refuses_an_id_the_workspace_serves(svc, app_id):  # noqa: F811
    r = await svc.call(admin_token(svc), "POST", "api/apps", {**WEB, "id": app_id})
    assert r.status_code == 400, r.text
    assert r.json() == {"status": 400, "message": reserved(app_id, "app")}
    r = await svc.call(user_token(svc), "GET", "api/apps")
    assert app_id not in {a["id"] for a in r.json()["apps"]}


async def test_api_refuses_a_change_the_workspace_would_skip(svc):  # noqa: F811
    launch = {**WEB["launch"], "cwd": "../elsewhere"}
    r = await svc.call(admin_token(svc), "PATCH", "api/apps/web", {"launch": launch})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "status": 400,
        "message": "app.launch.cwd: must be a folder relative to the home folder, "
        "without '..' (got '../elsewhere')",
    }
    r = await svc.call(user_token(svc), "GET", "api/apps/web")
    assert r.json()["version"] == "1.0"


async def test_an_app_stored_before_the_rule_stays_readable_and_refuses_new_versions(svc):  # noqa: F811
    """An id the old rule allowed (a digit first) and the catalog already holds:
    listed, readable and disable-able; only a new version is refused, naming the id."""
    old = {
        **WEB,
        "id": "3d-viewer",
        "launch": {"command": ["v", "{unix_socket}"], "unix_socket": True},
    }
    assert svc.catalog.seed([old], "settings") == ["3d-viewer"]  # as saved before
    admin = admin_token(svc)
    r = await svc.call(admin, "GET", "api/apps/3d-viewer")
    assert r.status_code == 200 and r.json()["version"] == "1.0", r.text
    r = await svc.call(admin, "POST", "api/apps/3d-viewer/disable")
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    r = await svc.call(admin, "GET", "api/apps?all=1")
    assert "3d-viewer" in {a["id"] for a in r.json()["apps"]}
    r = await svc.call(admin, "PATCH", "api/apps/3d-viewer", {"title": "3D"})
    assert r.status_code == 400, r.text
    # the contract's line, or the schema's once it spells the same rule
    message = r.json()["message"]
    assert message.startswith("app.id: ") and appspec.ID_HINT in message, message


# -- the settings ------------------------------------------------------------

YAML = """\
catalog:
  apps:
    - id: viewer
      title: Viewer
      kind: proxied
      launch: {command: [my-app, --socket, "{unix_socket}"], unix_socket: true}
    - id: files
      title: Files
      kind: proxied
      launch: {command: [my-app, --socket, "{unix_socket}"], unix_socket: true}
"""
FILES_LINE = reserved("files", "catalog.apps[1]")


def test_settings_refuse_an_id_jupyterhub_would_not_create(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text(YAML.replace("id: files", "id: 3d-viewer"))
    with pytest.raises(settings.SettingsError) as caught:
        settings.load(path, environ={})
    (line,) = caught.value.problems
    assert line.startswith("catalog.apps[1].id: ") and "starting with a letter" in line, line


def test_settings_refuse_an_id_the_workspace_serves(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text(YAML)
    with pytest.raises(settings.SettingsError) as caught:
        settings.load(path, environ={})
    assert caught.value.problems == [FILES_LINE]


def test_validate_script_says_it_in_one_line(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text(YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSPACE_")}
    result = subprocess.run(
        [str(LABSPACE), "config", "validate", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: 1 problem in Labspace settings",
        f"  {FILES_LINE}",
    ]
    assert result.stdout == ""
