"""A catalog app on a TCP ``{port}`` is refused where workspaces share 127.0.0.1
(issue 10, finding 4): in labspace.yaml (start-up stops, naming the app and the
fix) and in ``definition_problems`` (saves through the API, when the service says
the loopback is shared). Kubernetes and docker networks other than ``host`` give
each workspace its own loopback: there it is accepted."""

from __future__ import annotations

import pytest

from labspace import settings as settings_mod
from labspace.services.catalog import apps as appdefs

TCP = {
    "id": "web",
    "version": "1",
    "title": "Web",
    "kind": "proxied",
    "launch": {"command": ["python3", "-m", "http.server", "{port}"]},
}
SOCKET = {
    "id": "sock",
    "version": "1",
    "title": "Sock",
    "kind": "proxied",
    "launch": {"command": ["my-app", "--socket", "{unix_socket}"], "unix_socket": True},
}
REFUSAL = "catalog.apps[0].launch.unix_socket: an app on a TCP '{port}' listens on 127.0.0.1"
PRIVATE = {"hub": {"config": {"Spawner": {"environment": {"LABSPACE_LOOPBACK": "private"}}}}}


@pytest.mark.parametrize(
    "extra, refused",
    [
        ({}, True),
        ({"backend": {"type": "docker"}}, True),
        ({"backend": {"type": "docker", "docker": {"network": "host"}}}, True),
        ({"backend": {"type": "docker", "docker": {"network": "labspace"}}}, False),
        ({"backend": {"type": "kubernetes"}}, False),
        (PRIVATE, False),
    ],
    ids=["local", "docker-default", "docker-host", "docker-own-network", "kube", "declared"],
)
def test_settings_refuse_tcp_apps_on_a_shared_loopback(extra, refused):
    problems = settings_mod.validate({**extra, "catalog": {"apps": [TCP, SOCKET]}})
    mine = [p for p in problems if p.startswith("catalog.apps")]
    if refused:
        assert len(mine) == 1 and mine[0].startswith(REFUSAL), problems
    else:
        assert mine == [], problems


def test_api_definition_refused_when_the_loopback_is_shared():
    assert appdefs.definition_problems(TCP) == []
    (problem,) = appdefs.definition_problems(TCP, shared_loopback=True)
    assert problem.startswith("app.launch.unix_socket: an app on a TCP '{port}'")
    assert "Set unix_socket: true" in problem
    assert appdefs.definition_problems(SOCKET, shared_loopback=True) == []
