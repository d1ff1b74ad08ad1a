"""Sharing a standalone app shares the app, not the server (issue 10, finding 5).

A standalone catalog app is a whole jupyterhub-singleuser server (alice's named
server ``shared-demo``). Alice launches it and shares it with Bob from the catalog (which
calls the hub's sharing API). Bob then gets the app, and 403 on everything else of that server:
contents (read and write), files, kernels, terminals, JupyterLab and the other
apps of the server (Voilà and the Data Explorer would read her home). Alice
herself still has all of it.
"""

from __future__ import annotations

import pytest
from harness import wait_for

from .conftest import SHARED_DEMO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = SHARED_DEMO
APP_ID = APP["id"]
BASE = f"user/alice/{APP_ID}/"  # her named server
PAGE = BASE + APP_ID + "/"  # the app in it
# (method, path under the app server, body): what a share must not give
REFUSED = [
    ("GET", "api/contents", None),
    ("PUT", "api/contents/planted.txt", {"type": "file", "format": "text", "content": "x"}),
    ("GET", "files/notes.txt", None),
    ("GET", "api/kernels", None),
    ("POST", "api/kernels", {"name": "python3"}),
    ("GET", "api/terminals", None),
    ("POST", "api/terminals", {}),
    ("GET", "api/sessions", None),
    ("GET", "lab", None),
    ("GET", "voila/render/notes.ipynb", None),
    ("GET", "data-explorer/", None),
    ("GET", "labspace-apps/api/apps", None),
]


@pytest.fixture(scope="module")
def world(security_world_factory):
    world = security_world_factory(catalog_apps=[APP])
    yield world
    # the security world goes on: her app's server stops (test_apps_loopback
    # counts the Jupyter servers in her home)
    r = world.api.request("DELETE", f"users/alice/servers/{APP_ID}")
    assert r.status_code in (202, 204, 404), r.text
    servers = lambda: world.api.user("alice").json()["servers"]  # noqa: E731
    wait_for(lambda: APP_ID not in servers(), 60, what=f"alice's {APP_ID} server to stop")


def test_share_gives_the_app_only(world):
    with world.client("alice") as alice, world.client("bob") as bob:
        catalog = "services/catalog/api/"
        r = alice.post(catalog + f"apps/{APP_ID}/launch", json={})
        assert r.status_code == 202, r.text
        launch = r.json()["id"]

        def running() -> bool:
            state = alice.get(catalog + f"launches/{launch}").json()["state"]
            assert state != "failed"
            return state == "running"

        wait_for(running, 120, 0.5, what="alice's demo app server")
        body = {"type": "file", "format": "text", "content": "alice's notes"}
        assert alice.put(BASE + "api/contents/notes.txt", json=body).status_code == 201

        # Alice shares the app with Bob
        # (the catalog shares it for her through the hub's sharing API)
        r = alice.post(catalog + f"launches/{launch}/shares", json={"user": "bob"})
        assert r.status_code == 201, r.text

        r = bob.get(PAGE)
        assert r.status_code == 200 and "Shared demo app" in r.text, r.text[:300]
        # the server's own URL (the hub's link to a shared server) leads to the app
        r = bob.get(BASE)
        assert r.status_code == 302
        assert r.headers["location"].rstrip("?") == "/" + PAGE
        for method, path, payload in REFUSED:
            r = bob.request(method, BASE + path, json=payload)
            assert r.status_code == 403, (method, path, r.status_code, r.text[:300])
            assert "alice's notes" not in r.text
        assert alice.get(BASE + "api/contents/planted.txt").status_code == 404

        # the owner keeps everything
        assert alice.get(PAGE).status_code == 200
        assert alice.get(BASE + "api/contents/notes.txt").status_code == 200
        assert alice.get(BASE + "api/kernels").status_code == 200
        assert alice.get(BASE + "api/terminals").status_code == 200
        assert alice.get(BASE + "lab").status_code == 200
