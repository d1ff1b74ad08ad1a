"""Catalog apps on the docker backend (tier 4): a real hub with the catalog on,
workspaces as containers of the workspace image (host network). A user launches
a proxied app (in their workspace container) and a standalone app (in a named
server's container) through the catalog API, reads each app's own page through
the hub's proxy, and stops them.

Needs Docker and ``make images``; skipped without them (failed under CI=true).
"""

from __future__ import annotations

import secrets

import docker_env
import httpx
import pytest
from harness import HubAPI, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def demo(app_id: str, kind: str, greeting: str) -> dict:
    return {
        "id": app_id,
        "title": app_id.title(),
        "kind": kind,
        "launch": {
            # the image's Python: /opt/labspace/bin comes first on its PATH
            "command": [
                "python3",
                "-m",
                "labspace.extensions.demo_app",
                "--unix-socket={unix_socket}",
            ],
            "unix_socket": True,  # network: host shares 127.0.0.1 with every workspace
            "ready_path": "/healthz",
            "environment": {"DEMO_GREETING": greeting},
        },
    }


def test_catalog_apps_in_containers(docker_objects, hub_factory, hub_settings):
    name = f"cat{secrets.token_hex(3)}"
    docker_objects.containers.update({f"labspace-{name}", f"labspace-{name}--solo"})
    docker_objects.volumes.add(f"labspace-home-{name}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{name}--")
    hub_settings["backend"] = {
        "type": "docker",
        "image": docker_env.WORKSPACE_IMAGE,
        "docker": {"network": "host"},
    }
    hub_settings["catalog"] = {
        "enabled": True,
        "port": free_port(),
        "apps": [
            demo("greeter", "proxied", "Hello from a proxied catalog app"),
            demo("solo", "standalone", "Hello from a standalone catalog app"),
        ],
    }
    config = hub_settings["hub"]["config"]
    config["JupyterHub"]["load_roles"][0]["scopes"].append("tokens")
    token = config["JupyterHub"]["services"][0]["api_token"]
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, token)
    try:
        api.create_user(name)
        api.started.add(name)
        r = api.request("POST", f"users/{name}/tokens", json={"note": "catalog"})
        headers = {"Authorization": f"token {r.json()['token']}"}
        with httpx.Client(base_url=hub.url, headers=headers, timeout=180) as c:
            for app_id, greeting in [
                ("greeter", "Hello from a proxied catalog app"),
                ("solo", "Hello from a standalone catalog app"),
            ]:
                r = c.post(f"services/catalog/api/apps/{app_id}/launch", json={})
                assert r.status_code in (200, 202), r.text
                launch = r.json()

                def running(launch_id=launch["id"]):
                    state = c.get(f"services/catalog/api/launches/{launch_id}").json()
                    assert state["state"] != "failed", state
                    return state if state["state"] == "running" else None

                wait_for(running, 240, 1, what=f"{app_id} running")
                r = c.get(launch["url"].lstrip("/"))
                assert r.status_code == 200 and greeting in r.text, (r.status_code, r.text[:300])
                r = c.post(f"services/catalog/api/launches/{launch['id']}/stop")
                assert r.status_code == 200, r.text
        wait_for(lambda: "solo" not in api.user(name).json()["servers"], 120, what="solo stopped")
    finally:
        api.request("DELETE", f"users/{name}/servers/solo")
        api.stop_all()
        api.close()
