"""``hub.culling`` and ``profiles[].idle_timeout`` (``labspace.culling``): the
settings' checks, the ``idle-culler`` service and its role (golden), the
scopes for each option, the command line as the real jupyterhub-idle-culler
reads it (with the shipped config file), the per-profile arbiter, and the
recorder that tells ``cull_now`` what one pass stopped. The culler against a
real hub: tests/e2e/test_culling_hub.py."""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta

import pytest
from jupyterhub_idle_culler import IdleCuller

from labspace import culling
from labspace.hubconfig import build
from labspace.settings import load, validate
from labspace.state import State

PROFILES = """
profiles:
  - {slug: small, default: true}
  - {slug: gpu, gpus: 1, idle_timeout: 900}
  - {slug: long, idle_timeout: 86400}
"""


@pytest.fixture
def setup(tmp_path):
    def setup(text: str):
        path = tmp_path / "labspace.yaml"
        path.write_text("data_dir: data\n" + text)
        settings = load(path, environ={})
        state = State(settings)
        state.prepare()
        return settings, state

    return setup


def culler_of(values: dict) -> tuple[dict | None, dict | None]:
    """The ``idle-culler`` service and role in a build's values (or None)."""
    hub = values["JupyterHub"]
    service = next((s for s in hub.get("services", []) if s["name"] == "idle-culler"), None)
    role = next((r for r in hub.get("load_roles", []) if r["name"] == "idle-culler"), None)
    return service, role


# -- the service and its role -------------------------------------------------


def test_service_golden(setup, tmp_path):
    settings, state = setup(
        "hub: {hub_port: 9081, culling: {every: 300, max_age: 86400}}\n" + PROFILES
    )
    service, role = culler_of(build(settings, state, ["chp"]))
    token = (tmp_path / "data" / "secrets" / "idle-culler-api-token").read_text().strip()
    environment = service.pop("environment")
    assert service == {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            "--url=http://127.0.0.1:9081/hub/api",
            "--timeout=900",  # the shortest: gpu's
            "--cull-every=300",
            "--max-age=86400",
            "--concurrency=10",
            "--cull-users=False",
            "--cull-admin-users=True",
            "--cull-named-servers=True",
            "--remove-named-servers=False",
            f"--config={culling.CONFIG_FILE}",
        ],
        "api_token": token,
        "display": False,
        "info": {"description": "Stops idle servers (jupyterhub-idle-culler)"},
    }
    assert json.loads(environment["LABSPACE_CULLING"]) == {
        "timeout": 3600,
        "profiles": {"gpu": 900, "long": 86400},
        "default_profile": "small",
    }
    assert role == {
        "name": "idle-culler",
        "description": "Stops idle servers",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }


def test_on_by_default_and_off_when_asked(setup):
    service, role = culler_of(build(*setup(""), ["chp"]))
    assert service and role and "--timeout=3600" in service["command"]
    assert culler_of(build(*setup("hub: {culling: {enabled: false}}\n"), ["chp"])) == (None, None)


@pytest.mark.parametrize(
    ("options", "scopes"),
    [
        pytest.param({}, culling.SCOPES, id="servers"),
        pytest.param({"named_servers": False}, culling.SCOPES, id="default-only"),
        # stopping and removing a named server are both delete:servers
        pytest.param({"remove_named_servers": True}, culling.SCOPES, id="remove-named"),
        pytest.param({"users": True}, [*culling.SCOPES, "admin:users"], id="users"),
        pytest.param({"max_age": 60, "concurrency": 2}, culling.SCOPES, id="max-age"),
    ],
)
def test_least_scopes_for_the_options(setup, options, scopes):
    settings, state = setup(f"hub: {{culling: {json.dumps(options)}}}\n")
    service, role = culler_of(build(settings, state, ["chp"]))
    assert role["scopes"] == scopes
    assert ("admin:users" in role["scopes"]) == ("--cull-users=True" in service["command"])


def test_the_real_culler_reads_the_command_line(setup, monkeypatch):
    """The flags as jupyterhub-idle-culler parses them, and the shipped config
    file setting the arbiter (as ``IdleCuller.start`` loads it)."""
    settings, state = setup(
        "hub: {culling: {timeout: 1200, every: 60, users: true, admin_users: false,"
        " named_servers: false, remove_named_servers: true, concurrency: 3}}\n" + PROFILES
    )
    service, _ = culler_of(build(settings, state, ["chp"]))
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, value)
    app = IdleCuller()
    app.parse_command_line(service["command"][3:])
    app.load_config_file(app.config_file)
    assert (app.url, app.timeout, app.cull_every, app.max_age) == (
        settings.hub_local_url() + "api",
        900,
        60,
        0,
    )
    assert (app.cull_users, app.cull_admin_users, app.concurrency) == (True, False, 3)
    assert (app.cull_named_servers, app.remove_named_servers) == (False, True)
    arbiter = app.cull_arbiter_hook
    assert isinstance(arbiter, culling.Arbiter)
    assert arbiter.table == {
        "timeout": 1200,
        "profiles": {"gpu": 900, "long": 86400},
        "default_profile": "small",
    }


# -- the arbiter ----------------------------------------------------------------

TABLE = {"timeout": 3600, "profiles": {"gpu": 900, "long": 86400}, "default_profile": "small"}


@pytest.mark.parametrize(
    ("user_options", "limit"),
    [
        pytest.param({"profile": "gpu"}, 900, id="shorter"),
        pytest.param({"profile": "long"}, 86400, id="longer"),
        pytest.param({"profile": "small"}, 3600, id="default-timeout"),
        pytest.param({}, 3600, id="no-profile-named"),
        pytest.param(None, 3600, id="no-options"),
        pytest.param({"profile": "gone"}, 3600, id="profile-removed-since"),
        pytest.param({"profile": ["gpu"]}, 3600, id="not-a-slug"),
    ],
)
def test_arbiter_limit(user_options, limit):
    arbiter = culling.Arbiter(TABLE)
    server = {"name": "", "user_options": user_options}
    assert arbiter.limit(server) == limit
    below, at = timedelta(seconds=limit - 1), timedelta(seconds=limit)
    assert arbiter(inactive=below, inactive_limit=900, server=server) is False
    assert arbiter(inactive=at, inactive_limit=900, server=server) is True


def test_arbiter_default_profile_has_its_own_timeout():
    arbiter = culling.Arbiter({**TABLE, "default_profile": "gpu"})
    assert arbiter.limit({"user_options": {}}) == 900


# -- settings checks --------------------------------------------------------------

BAD = [
    ({"hub": {"culling": {"timeout": 0}}}, "hub.culling.timeout: 0 is too small"),
    ({"hub": {"culling": {"every": -5}}}, "hub.culling.every: -5 is too small"),
    ({"hub": {"culling": {"max_age": -1}}}, "hub.culling.max_age: -1 is too small"),
    ({"hub": {"culling": {"concurrency": 0}}}, "hub.culling.concurrency: 0 is too small"),
    ({"hub": {"culling": {"timout": 60}}}, "hub.culling.timout: unknown key (did you mean"),
    ({"hub": {"culling": {"timeout": "1h"}}}, "hub.culling.timeout: expected a whole number"),
    ({"hub": {"culling": True}}, "hub.culling: expected a mapping of keys"),
    ({"profiles": [{"slug": "g", "idle_timeout": 0}]}, "profiles[0].idle_timeout: 0 is too small"),
    (
        {"profiles": [{"slug": "g", "idle_timeout": 1.5}]},
        "profiles[0].idle_timeout: expected a whole number",
    ),
    (
        {
            "hub": {"culling": {"enabled": False}},
            "profiles": [{"slug": "a"}, {"slug": "g", "idle_timeout": 600}],
        },
        "profiles[1].idle_timeout: set, but hub.culling.enabled is false, so no server is "
        "culled (turn hub.culling.enabled on, or drop idle_timeout)",
    ),
]


@pytest.mark.parametrize(("data", "problem"), BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_bad_settings_name_the_key_and_the_fix(data, problem):
    (line,) = validate(data)
    assert line.startswith(problem)
    assert "(" in line and line.endswith(")")  # the fix, in brackets


def test_every_longer_than_timeout_is_allowed():
    # servers are then stopped later (between timeout and timeout + every)
    assert validate({"hub": {"culling": {"timeout": 60, "every": 600}}}) == []


# -- cull_now ---------------------------------------------------------------------


def test_recorder_keeps_what_the_culler_stopped():
    recorder = culling._Recorder(logging.getLogger("test-culling"))
    recorder.info("Culling server alice (inactive for 01:00:00)")  # the culler's two forms
    recorder.info("Culling server %s (age: %s, inactive for %s)", "bob/app", "1", "2")
    recorder.info("Culling server carol (inactive for 01:00:00)")
    recorder.info("Culling user dan (inactive for 01:00:00)")  # a user, not a server
    recorder.debug("Not culling server erin (age: 1, inactive for 2)")
    recorder.exception("Error processing carol")  # carol's stop failed
    assert recorder.result() == ["alice", "bob/app"]


async def test_cull_now_with_culling_off_asks_nothing(setup):
    settings, _ = setup("hub: {culling: {enabled: false}}\n")
    # nothing listens there: a request would fail
    assert await culling.cull_now("http://127.0.0.1:9/hub/api", "x", settings) == []


# -- the profile the culler reads (spawners/mixin.py) -----------------------------


def profile_spawner(tmp_path, user_options: dict):
    from offline import build_spawner, settings_from
    from traitlets.config import Config

    from labspace.spawners.local import LabspaceLocalSpawner

    config = Config()
    config.LabspaceSpawnerMixin.home_root = str(tmp_path / "users")
    values = settings_from("profiles: [{slug: small}, {slug: gpu, default: true}]")
    spawner = build_spawner(LabspaceLocalSpawner, "ann", "", values, config)
    spawner.user.settings = {}
    spawner.user_options = user_options
    return spawner


async def test_the_resolved_profile_shows_in_user_options_and_survives_a_restart(tmp_path):
    spawner = profile_spawner(tmp_path, {})
    await spawner._run_apply_user_options({})  # no profile named: the default, gpu
    assert spawner.user_options == {"profile": "gpu"}  # what the hub API's model shows
    assert not getattr(spawner.orm_spawner, "user_options", None)  # the saved ones: as asked
    state = spawner.get_state()
    again = profile_spawner(tmp_path, {})  # after a hub restart: the saved state
    again.load_state(state)
    assert again.user_options == {"profile": "gpu"}
    named = profile_spawner(tmp_path, {"profile": "small"})
    named.load_state(state)  # never over a profile the options name
    assert named.user_options == {"profile": "small"}
