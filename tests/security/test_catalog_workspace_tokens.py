"""Issue 10, High 2: the catalog sent its own hub token (``access:servers``,
``servers`` and ``shares`` for every user) to the user's workspace when it read
an app's log or stopped a proxied app, and the workspace is the user's code.

Alice configures her workspace (``~/.jupyter/jupyter_server_config.py``, hers
to write) to record every ``Authorization`` header it receives. After the
catalog reads the log of her proxied app and stops it, every recorded
credential, asked of the hub, is a token of alice that reaches only her own
server: not the catalog's token, no hub API, not bob's server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import wait_for

from .conftest import WEB  # a static site (any folder: a listing)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECORDER = """
import os
from jupyter_server.log import log_request

RECORD = os.path.join(os.path.expanduser("~"), "recorded-authorization.txt")


def record(handler):
    value = handler.request.headers.get("Authorization")
    if value:
        with open(RECORD, "a") as f:
            f.write(value + "\\n")
    log_request(handler)


c.ServerApp.tornado_settings = {"log_function": record}
"""


def record_authorization(world) -> Path:
    """Alice's own Jupyter config: every Authorization header into a file."""
    config = world.home("alice") / ".jupyter" / "jupyter_server_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(RECORDER)
    return config


@pytest.fixture(scope="module")
def world(security_world_factory):
    """The security world; alice's workspace starts (again) with her recorder,
    bob's runs. At the end her workspace stops and the recorder goes."""
    world = security_world_factory(catalog_apps=[WEB])
    if world.api.user("alice").json()["servers"]:  # a module before started it
        world.api.stop_server("alice")
    config = record_authorization(world)
    yield security_world_factory(catalog_apps=[WEB], start=["alice", "bob"])
    world.api.stop_server("alice")
    config.unlink()


def catalog(world, who, method, path):
    return world.catalog(who, method, path)


def test_catalog_sends_only_a_token_for_that_one_server(world):
    record = world.home("alice") / "recorded-authorization.txt"
    r = catalog(world, "alice", "POST", "apps/web/launch")
    assert r.status_code == 200, r.text  # the workspace runs already
    launch = r.json()

    def running():
        state = catalog(world, "alice", "GET", f"launches/{launch['id']}").json()["state"]
        with world.client("alice") as c:  # the app starts on its first request
            c.get(launch["url"].lstrip("/"))
        return state == "running"

    wait_for(running, 60, 0.5, what="the web app")
    r = catalog(world, "alice", "GET", f"launches/{launch['id']}/logs?lines=20")
    assert r.status_code == 200, r.text
    assert not any(line.startswith("(no log") for line in r.json()["lines"]), r.text
    r = catalog(world, "alice", "POST", f"launches/{launch['id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text

    recorded = set(record.read_text().split("\n")) if record.exists() else set()
    recorded -= {"", f"token {world.tokens['alice']}"}  # the test's own requests
    assert recorded, "the catalog called the workspace without credentials?"
    service_token = (world.data_dir / "secrets" / "catalog-api-token").read_text()
    for header in recorded:
        scheme, _, token = header.partition(" ")
        assert scheme.lower() in ("token", "bearer"), header[:12]
        leaked = token == service_token.strip()
        assert not leaked, "the catalog's own token reached the workspace"
        headers = {"Authorization": f"token {token}"}
        with world.client("anonymous") as c:
            me = c.get("hub/api/user", headers=headers)
            assert me.status_code == 200, me.text
            model = me.json()
            assert (model["kind"], model["name"]) == ("user", "alice"), model
            # the hub adds to every token the identify scopes of its own user
            assert set(model["scopes"]) == {
                "access:servers!server=alice/",
                "read:users:name!user=alice",
                "read:users:groups!user=alice",
            }, model["scopes"]
            # nothing else: not bob's workspace, not the hub API, not alice's tokens
            assert c.get("user/bob/api/status", headers=headers).status_code == 403
            assert c.get("hub/api/users/alice/tokens", headers=headers).status_code == 403
            assert c.get("hub/api/users", headers=headers).status_code == 403
