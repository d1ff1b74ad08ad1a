"""The bundled and catalog apps in the workspace image, on the docker backend
(tier 4): a real hub starts the workspace as a container (host network) and
each app answers through the hub's proxy with its own page; without
credentials it answers 403.

Needs Docker and ``make images``; skipped without them (failed under CI=true).
"""

from __future__ import annotations

import json
import secrets

import docker_env
import httpx
import pytest
from harness import HubAPI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEMO = {
    "id": "demo",
    "title": "Demo",
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
        "environment": {"DEMO_GREETING": "Hello from a container"},
    },
}
CSV = "x,y\n1,1\n2,4\n3,9\n"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["print('dashboard in a container')"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_apps_in_the_workspace_image(docker_objects, hub_factory, hub_settings):
    name = f"ada{secrets.token_hex(3)}"
    docker_objects.containers.add(f"labspace-{name}")
    docker_objects.volumes.add(f"labspace-home-{name}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{name}--")
    hub_settings["backend"] = {
        "type": "docker",
        "image": docker_env.WORKSPACE_IMAGE,
        "docker": {"network": "host"},
    }
    config = hub_settings["hub"]["config"]
    config["Spawner"] = {"environment": {"LABSPACE_CATALOG_APPS": json.dumps([DEMO])}}
    config["JupyterHub"]["load_roles"][0]["scopes"].append("tokens")
    token = config["JupyterHub"]["services"][0]["api_token"]
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, token)
    try:
        api.create_user(name)
        r = api.request("POST", f"users/{name}/tokens", json={"note": "apps"})
        user = {"Authorization": f"token {r.json()['token']}"}
        api.start_server(name, timeout=180)
        base = hub.url.rstrip("/") + f"/user/{name}/"
        with httpx.Client(base_url=base, headers=user, timeout=120) as c:
            for path, body in [
                ("data.csv", {"type": "file", "format": "text", "content": CSV}),
                ("nb.ipynb", {"type": "notebook", "content": NOTEBOOK}),
            ]:
                assert c.put(f"api/contents/{path}", json=body).status_code in (200, 201)
            r = c.get("data-explorer/", params={"file": "~/data.csv"})
            assert r.status_code == 200 and "<title>Data Explorer</title>" in r.text
            r = c.get("dashboards/voila/render/nb.ipynb", follow_redirects=True)
            assert r.status_code == 200 and "dashboard in a container" in r.text
            r = c.get("demo/")
            assert r.status_code == 200 and "Hello from a container" in r.text
            apps = {a["id"]: a for a in c.get("labspace-apps/api/apps").json()}
            assert all(apps[i]["ready"] for i in ("data-explorer", "demo"))
            assert c.get("proxy/8888/").status_code == 404  # shared loopback: off
        for app in ("data-explorer", "dashboards", "demo"):
            assert httpx.get(base + f"{app}/", timeout=30).status_code == 403
    finally:
        api.stop_all()
        api.close()
