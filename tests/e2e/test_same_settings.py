"""One labspace.yaml, two backends: the same profiles, the same refusals and the
same home behaviour with ``backend.type: local`` and ``backend.type: docker``,
changing nothing else."""

from __future__ import annotations

import docker_env
import httpx
import pytest
from docker_env import DockerObjects
from harness import HubAPI

pytestmark = [pytest.mark.e2e]

PROFILES = [
    {"slug": "small", "default": True, "memory": {"limit": "1G"}, "env": {"SITE": "lab"}},
    {"slug": "big", "groups": ["gpu-users"], "memory": {"limit": "2G"}},
]


@pytest.fixture(params=["local", "docker"])
def same_hub(request, need, hub_factory, hub_settings, service_token):
    """A hub with PROFILES on ``backend.type`` = the parameter; only the type differs."""
    objects = None
    if request.param == "docker":
        why = docker_env.problem()
        need("Docker", why is None, why or "")
        objects = DockerObjects()
        objects.containers.add("labspace-sam")
        objects.volumes.add("labspace-home-sam")
        objects.container_prefixes.add("labspace--home-init--sam")
    hub_settings["profiles"] = PROFILES
    hub_settings["backend"] = {"type": request.param}
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, service_token)
    yield hub, api
    api.stop_all()
    api.close()
    hub.stop()
    if objects is not None:
        assert not objects.cleanup(), "a container outlived its hub"


def contents(hub, token: str, path: str, method: str = "GET", **kw) -> httpx.Response:
    return httpx.request(
        method,
        f"{hub.url}user/sam/api/contents/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        **kw,
    )


def test_same_profiles_refusals_and_home(same_hub, service_token):
    hub, api = same_hub
    api.create_user("sam")
    # a profile sam's groups do not allow, and an option that is not a profile
    r = api.request("POST", "users/sam/server", json={"profile": "big"})
    assert (r.status_code, r.json()["message"]) == (403, "Profile 'big' is not open to your groups")
    r = api.request("POST", "users/sam/server", json={"image": "busybox"})
    assert r.status_code == 400
    assert not api.user("sam").json()["servers"]

    # no choice: the default profile; a file written in the home survives stop and start
    api.start_server("sam")
    r = contents(
        hub,
        service_token,
        "notes.txt",
        "PUT",
        json={"type": "file", "format": "text", "content": "kept"},
    )
    assert r.status_code == 201, r.text
    api.stop_server("sam")
    api.start_server("sam")
    assert contents(hub, service_token, "notes.txt").json()["content"] == "kept"
    api.stop_server("sam")
