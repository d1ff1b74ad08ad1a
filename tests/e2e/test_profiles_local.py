"""Workspace profiles on a real hub with the local backend, as people and
scripts meet them: the REST API refuses bad choices with a 4xx and starts
nothing, a chosen profile reaches the workspace's environment, the spawn
form offers what a person's groups allow, the progress stream tells what is
happening, backend mounts appear in the home, and starts beyond
``backend.spawn_concurrency`` wait their turn and say so."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from harness import HubAPI, login, progress, server_pid, wait_for, workspace_pids

pytestmark = [pytest.mark.e2e]

GiB = 1024**3
PROFILES = [
    {
        "slug": "small",
        "display_name": "Small",
        "description": "For notebooks",
        "default": True,
        "cpu": {"limit": 1},
        "memory": {"limit": "1G"},
        "env": {"FOO": "bar"},
    },
    {"slug": "big", "display_name": "Big", "groups": ["gpu-users"], "memory": {"limit": "4G"}},
    {"slug": "other", "display_name": "Other", "groups": ["nobody"]},
]
REFUSED = [
    # (what the request sends, status, message)
    ({"profile": "big"}, 403, "Profile 'big' is not open to your groups"),
    ({"profile": "other"}, 403, "Profile 'other' is not open to your groups"),
    ({"profile": "nope"}, 400, "No such profile: 'nope' (yours: small)"),
    (
        {"image": "x"},
        400,
        "Unknown option 'image': the only option is 'profile' (the slug of a profile you may use)",
    ),
    (
        {"profile": "small", "cpu_limit": 64},
        400,
        "Unknown option 'cpu_limit': the only option is 'profile' "
        "(the slug of a profile you may use)",
    ),
    ({"profile": 1}, 400, "Option 'profile' must be a profile slug (a string)"),
]


@pytest.fixture
def settings(hub_settings, tmp_path) -> dict:
    """``hub_settings`` with the three profiles, a backend env variable and a
    host mount, and a service token that may manage groups."""
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "README.txt").write_text("shared reference data\n")
    hub_settings["profiles"] = PROFILES
    hub_settings["backend"] = {
        "env": {"SITE": "test-lab"},
        "mounts": [
            {"name": "reference", "type": "host", "source": str(reference), "target": "/ref"}
        ],
    }
    return hub_settings


@pytest.fixture
def hub_api(hub_factory, settings, service_token):
    """Start a hub with ``settings`` (changed by the test first, if it likes)."""
    clients: list[HubAPI] = []

    def start():
        hub = hub_factory(settings).start()
        api = HubAPI(hub.url, service_token)
        clients.append(api)
        return hub, api

    yield start
    for api in clients:
        api.stop_all()
        api.close()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def workspace_env(hub, name: str) -> dict[str, str]:
    pid = server_pid(hub.workdir / "data" / "users" / name)
    return environ(pid)


def start(api: HubAPI, name: str, body: dict | None = None) -> httpx.Response:
    """POST a start, as a script does; the caller waits for ready."""
    r = api.request("POST", f"users/{name}/server", json=body)
    if r.status_code in (201, 202):
        api.started.add(name)
    return r


def wait_ready(api: HubAPI, name: str) -> dict:
    def ready():
        return api.user(name).json()["servers"].get("", {}).get("ready")

    return wait_for(ready, 60, 0.25, what=f"{name}'s server")


def messages(events: list[dict]) -> list[str]:
    return [e["message"] for e in events]


# -- the REST API ------------------------------------------------------------


def test_bad_choice_is_refused_and_starts_nothing(hub_api):
    hub, api = hub_api()
    api.create_user("eve")
    users = hub.workdir / "data" / "users"
    for body, status, message in REFUSED:
        r = start(api, "eve", body)
        assert (r.status_code, r.json()) == (status, {"status": status, "message": message}), body
        assert api.user("eve").json()["servers"] == {}, body
        assert workspace_pids(users) == [], body
        assert not (users / "eve").exists(), body  # not even a home was made
    # a refused choice is not remembered: a start that names none gets the default
    r = start(api, "eve")
    assert r.status_code in (201, 202), r.text
    wait_ready(api, "eve")
    assert workspace_env(hub, "eve")["LABSPACE_PROFILE"] == "small"
    # and a start while running is refused by JupyterHub, not by profiles
    r = api.request("POST", "users/eve/server", json={"profile": "nope"})
    assert r.status_code == 400
    assert "is already running" in r.json()["message"]


def test_profile_reaches_workspace(hub_api, settings, service_token):
    hub, api = hub_api()
    api.create_user("fay")
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(start, api, "fay", {"profile": "small"})
        events = progress(hub.url, service_token, "fay")
        assert posted.result().status_code in (201, 202), posted.result().text
    wait_ready(api, "fay")

    # the spawn page's progress shows Labspace's steps, in order, then ready
    shown = messages(events)
    steps = [
        "Server requested",
        "Preparing home",
        "Starting your Small workspace",
        "Starting JupyterLab",
        "Workspace is up",
    ]
    assert [m for m in shown if m in steps] == steps, shown
    assert events[-1]["ready"] is True
    assert shown[-1] == "Server ready at /user/fay/"
    progress_values = [e["progress"] for e in events]
    assert progress_values == sorted(progress_values)

    env = workspace_env(hub, "fay")
    assert env["LABSPACE_PROFILE"] == "small"
    assert env["MEM_LIMIT"] == str(GiB)
    assert env["CPU_LIMIT"] == "1.0"
    assert env["FOO"] == "bar"  # the profile's env
    assert env["SITE"] == "test-lab"  # the backend's env
    assert "MEM_GUARANTEE" not in env and "CPU_GUARANTEE" not in env

    # the backend's host mount is ~/reference, a link to its source
    source = settings["backend"]["mounts"][0]["source"]
    link = hub.workdir / "data" / "users" / "fay" / "reference"
    assert link.is_symlink() and os.readlink(link) == source
    r = httpx.get(
        f"{hub.url}user/fay/api/contents/reference/README.txt",
        headers={"Authorization": f"token {service_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "shared reference data\n"


# -- the spawn form ----------------------------------------------------------


def test_spawn_form_offers_what_groups_allow(hub_api):
    hub, api = hub_api()
    api.create_user("gina")
    r = api.request("POST", "groups/gpu-users", json={"users": ["gina"]})
    assert r.status_code == 201, r.text
    admin = login(hub.url, "admin", hub.admin_password)
    xsrf = admin.cookies.get("_xsrf", path="/hub/")

    page = admin.get("hub/spawn/gina")
    assert page.status_code == 200
    form = page.text
    assert 'type="radio" name="profile" id="profile-small" value="small" checked>' in form
    assert 'type="radio" name="profile" id="profile-big" value="big">' in form
    assert 'value="other"' not in form  # gina is not in group nobody
    assert form.count('name="profile"') == 2
    assert '<span class="labspace-profile-resources">1 CPU · 1 GB memory</span>' in form
    assert '<span class="labspace-profile-resources">shared CPU · 4 GB memory</span>' in form
    assert '<span class="labspace-price" data-profile="big"></span>' in form

    # a profile gina may not use, posted anyway: the form again, with the reason
    r = admin.post("hub/spawn/gina", data={"profile": "other", "_xsrf": xsrf})
    assert r.status_code == 403
    assert "Profile &#39;other&#39; is not open to your groups" in r.text
    assert 'value="big"' in r.text
    assert api.user("gina").json()["servers"] == {}

    # choosing big starts gina's workspace with big's resources
    api.started.add("gina")
    r = admin.post("hub/spawn/gina", data={"profile": "big", "_xsrf": xsrf})
    assert r.status_code == 200, r.text
    wait_ready(api, "gina")
    env = workspace_env(hub, "gina")
    assert env["LABSPACE_PROFILE"] == "big"
    assert env["MEM_LIMIT"] == str(4 * GiB)
    assert "CPU_LIMIT" not in env
    assert "FOO" not in env


# -- start slots -------------------------------------------------------------


def test_starts_beyond_concurrency_wait_for_a_slot(hub_api, settings, service_token):
    settings["backend"]["spawn_concurrency"] = 1
    hub, api = hub_api()
    names = ["hana", "ida"]
    for name in names:
        api.create_user(name)
    with ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(progress, hub.url, service_token, name) for name in names]
        posts = [pool.submit(start, api, name) for name in names]
        for posted in posts:
            assert posted.result().status_code in (201, 202), posted.result().text
        events = {name: stream.result() for name, stream in zip(names, streams, strict=True)}
    for name in names:
        wait_ready(api, name)
        assert events[name][-1]["ready"] is True, events[name]
    waited = [
        name
        for name in names
        if "Waiting for a slot: 1 workspace is starting" in messages(events[name])
    ]
    assert len(waited) == 1, events
    # it waited before its start began
    (later,) = waited
    assert messages(events[later]).index("Waiting for a slot: 1 workspace is starting") < (
        messages(events[later]).index("Preparing home")
    )
