"""Which apps a workspace serves and under which rules (apps.collect): the
operator's ``c.ServerProxy.servers`` first, then the bundled apps, other
entry points, then the catalog's; a taken or reserved name is skipped."""

from __future__ import annotations

import json
import logging

from jupyter_server_proxy.config import ServerProxy

from labspace.extensions import apps, bundled

DEMO = {
    "id": "demo",
    "title": "Demo",
    "version": "3",
    "launch": {
        "command": ["demo", "--port={port}"],
        "ready_path": "/ok",
        "ready_status": 204,
        "timeout": 9,
        "cwd": "work",
    },
}


def collect(servers: dict, catalog: list, tmp_path, caplog, shared_loopback=False):
    config = ServerProxy(servers=servers)
    with caplog.at_level(logging.INFO, logger="labspace.apps"):
        found = apps.collect(
            config, json.dumps(catalog), str(tmp_path), shared_loopback=shared_loopback
        )
    return {sp.name: (sp, app) for sp, app in found}


def test_bundled_and_catalog(tmp_path, caplog):
    found = collect({}, [DEMO], tmp_path, caplog)
    assert {"data-explorer", "dashboards", "demo"} <= set(found)
    sp, app = found["demo"]
    assert (app.source, app.version, app.ready_path, app.ready_status, app.timeout, app.cwd) == (
        "catalog",
        "3",
        "/ok",
        204,
        9.0,
        "work",
    )
    assert sp.launcher_entry.title == "Demo" and sp.launcher_entry.category == "Notebook"
    _, explorer = found["data-explorer"]
    assert (explorer.source, explorer.ready_path, explorer.ready_status) == (
        "bundled",
        *bundled.READINESS["data-explorer"],
    )
    assert explorer.unix_socket is True


def test_operator_config_first_and_names_taken(tmp_path, caplog):
    servers = {
        "dashboards": {"command": ["my-voila", "{port}"], "timeout": 20},
        "external": {"port": 9999},  # no command: proxied as is
    }
    catalog = [{**DEMO, "id": "data-explorer"}, {**DEMO, "id": "lab"}, DEMO]
    found = collect(servers, catalog, tmp_path, caplog)
    sp, app = found["dashboards"]
    assert app.source == "config" and sp.command == ["my-voila", "{port}"]
    assert app.ready_status is None  # unknown app: any answer below 500
    assert found["external"][1] is None
    assert found["data-explorer"][1].source == "bundled"
    assert "lab" not in found  # a path the workspace serves
    assert "catalog app data-explorer skipped: the name is taken" in caplog.text
    assert "app lab: the id is a path the workspace already serves" in caplog.text


def test_bundled_entry_in_catalog_is_not_registered_twice(tmp_path, caplog):
    catalog = [{"id": i, "launch": {"bundled": True}} for i in ("data-explorer", "dashboards")]
    found = collect({}, catalog, tmp_path, caplog)
    assert found["data-explorer"][1].source == "bundled"
    assert found["dashboards"][1] is None  # Voilà's server extension: no process
    assert "taken" not in caplog.text


def test_shared_loopback_serves_no_tcp_app(tmp_path, caplog):
    """Other users' workspaces share 127.0.0.1: an app on a TCP port (it has no
    login) is not served; apps on unix sockets and inside the server are."""
    servers = {"mine": {"command": ["my-app", "{port}"]}, "external": {"port": 9999}}
    socket_app = {
        **DEMO,
        "id": "sock",
        "launch": {"command": ["demo", "--unix-socket={unix_socket}"], "unix_socket": True},
    }
    found = collect(servers, [DEMO, socket_app], tmp_path, caplog, shared_loopback=True)
    assert {"data-explorer", "dashboards", "sock", "external"} <= set(found)
    assert "demo" not in found and "mine" not in found
    assert "app demo: listens on a TCP port of 127.0.0.1" in caplog.text
    assert "config mine skipped: it listens on a TCP port of 127.0.0.1" in caplog.text
