"""Docker for the tier-4 tests: what is missing, what the daemon says about a
workspace, and removing by name what a test made.

- ``problem(images)``: why the Docker tests cannot run here (None: they can);
- ``client()``: a Docker SDK client that speaks the daemon's API version;
- ``DockerObjects``: names of containers and volumes a test may create, all
  removed by name at ``cleanup()``, even when the test failed half-way;
- ``run(container, cmd)``: ``docker exec`` → ``(exit code, output)``;
- ``start``, ``wait_ready``, ``progress``: a start over the hub's REST API, as
  a script does it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import httpx
from harness import HubAPI, progress, wait_for  # noqa: F401 (progress: for the tests)

WORKSPACE_IMAGE = "labspace/workspace:latest"
HUB_IMAGE = "labspace/hub:latest"

try:
    import docker
    import docker.errors
except ImportError:  # the `docker` extra is not installed
    docker = None


def client():
    return docker.from_env(version="auto", timeout=120)


def problem(images: tuple[str, ...] = (WORKSPACE_IMAGE,)) -> str | None:
    """Why the Docker tests cannot run here, or None."""
    if docker is None:
        return "the docker Python package is missing (pip install -e '.[test]')"
    if shutil.which("docker") is None:
        return "the docker command is missing (apt install docker.io)"
    try:
        with contextlib.closing(client()) as c:
            c.ping()
            missing = [i for i in images if not c.images.list(name=i)]
    except docker.errors.DockerException as e:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return (
            f"no Docker daemon answers at {where} ({type(e).__name__}); "
            "as root: dockerd --bridge=none --iptables=false"
        )
    if missing:
        return f"image {', '.join(missing)} is missing (run `make images`)"
    return None


class DockerObjects:
    """Containers and volumes a test may create, removed by name at ``cleanup()``.

    ``container_prefixes`` also removes every container whose name starts with
    one of them (the one-off containers that prepare a home).
    """

    def __init__(self):
        self.client = client()
        self.containers: set[str] = set()
        self.container_prefixes: set[str] = set()
        self.volumes: set[str] = set()

    def container(self, name: str):
        """The container called ``name``, or None."""
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def volume(self, name: str):
        try:
            return self.client.volumes.get(name)
        except docker.errors.NotFound:
            return None

    def containers_named(self, prefix: str) -> list[str]:
        found = self.client.containers.list(all=True, filters={"name": prefix})
        return [c.name for c in found if c.name.startswith(prefix)]

    def cleanup(self) -> list[str]:
        """Remove everything recorded; return what was still there."""
        left = []
        names = set(self.containers)
        for prefix in self.container_prefixes:
            names.update(self.containers_named(prefix))
        for name in sorted(names):
            found = self.container(name)
            if found is not None:
                left.append(f"container {name}")
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    found.remove(force=True, v=True)
        for name in sorted(self.volumes):
            found = self.volume(name)
            if found is not None:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    found.remove(force=True)
        self.client.close()
        return left


def container_log(name: str, tail: int | None = None) -> str:
    """``docker logs`` of container ``name`` (its last ``tail`` lines), both streams."""
    args = ["docker", "logs", *(["--tail", str(tail)] if tail else []), name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def run(container, cmd: str | list[str], user: str = "") -> tuple[int, str]:
    """``docker exec`` (as the container's user unless ``user``)."""
    code, out = container.exec_run(cmd, user=user, demux=False)
    return code, out.decode(errors="replace").strip()


def server_path(name: str, server: str = "") -> str:
    return f"users/{name}/servers/{server}" if server else f"users/{name}/server"


def start(api: HubAPI, name: str, body: dict | None = None, server: str = "") -> httpx.Response:
    """POST a start, as a script does; the caller waits for ready."""
    r = api.request("POST", server_path(name, server), json=body)
    if r.status_code in (201, 202) and not server:
        api.started.add(name)
    return r


def wait_ready(api: HubAPI, name: str, server: str = "", timeout: float = 120) -> dict:
    def ready():
        found = api.user(name).json()["servers"].get(server, {})
        return found if found.get("ready") else None

    return wait_for(ready, timeout, 0.25, what=f"{name}'s server {server!r}")


def stop(api: HubAPI, name: str, server: str = "", timeout: float = 60) -> None:
    r = api.request("DELETE", server_path(name, server))
    assert r.status_code in (202, 204), r.text
    wait_for(
        lambda: server not in api.user(name).json()["servers"],
        timeout,
        0.25,
        what=f"{name}'s server {server!r} stopped",
    )
    if not server:
        api.started.discard(name)
