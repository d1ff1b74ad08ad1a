"""Sharing a standalone app shares the app, not the server (issue 10, finding 5).

A standalone catalog app is a whole jupyterhub-singleuser server (alice's named
server ``demo``). Alice launches it and shares it with Bob from the catalog (which
calls the hub's sharing API). Bob then gets the app, and 403 on everything else of that server:
contents (read and write), files, kernels, terminals, JupyterLab and the other
apps of the server (Voilà and the Data Explorer would read her home). Alice
herself still has all of it.
"""

from __future__ import annotations

import sys

import pytest
from harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = {
    "id": "demo",
    "version": "1",
    "title": "Demo",
    "kind": "standalone",
    "launch": {
        "command": [
            sys.executable,
            "-m",
            "labspace.extensions.demo_app",
            "--unix-socket={unix_socket}",
        ],
        "unix_socket": True,
        "ready_path": "/healthz",
        "environment": {"DEMO_GREETING": "Shared demo app"},
    },
}
BASE = "user/alice/demo/"
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
    return security_world_factory(catalog_apps=[APP])


def test_share_gives_the_app_only(world):
    with world.client("alice") as alice, world.client("bob") as bob:
        catalog = "services/catalog/api/"
        r = alice.post(catalog + "apps/demo/launch", json={})
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

        r = bob.get(BASE + "demo/")
        assert r.status_code == 200 and "Shared demo app" in r.text, r.text[:300]
        # the server's own URL (the hub's link to a shared server) leads to the app
        r = bob.get(BASE)
        assert r.status_code == 302
        assert r.headers["location"].rstrip("?") == "/" + BASE + "demo/"
        for method, path, payload in REFUSED:
            r = bob.request(method, BASE + path, json=payload)
            assert r.status_code == 403, (method, path, r.status_code, r.text[:300])
            assert "alice's notes" not in r.text
        assert alice.get(BASE + "api/contents/planted.txt").status_code == 404

        # the owner keeps everything
        assert alice.get(BASE + "demo/").status_code == 200
        assert alice.get(BASE + "api/contents/notes.txt").status_code == 200
        assert alice.get(BASE + "api/kernels").status_code == 200
        assert alice.get(BASE + "api/terminals").status_code == 200
        assert alice.get(BASE + "lab").status_code == 200
