"""The hub image as a service under Docker (tier 4): run with the ``docker run``
arguments ``labspace install-service --docker`` writes into its unit
(``service_units.docker_run_args``: host network, the settings file and
``data_dir`` bound at their own paths, the Docker socket for the docker backend)
and Docker's restart policy, ``hub.cleanup_servers: false``. A user signs in and
starts a workspace; the container's main process is killed from the host (a
crash: ``kill -9`` of its PID, so the restart policy applies); once Docker has
restarted it and the hub answers, the user's cookie session still works, the
same workspace container answers through the proxy, and the users are there.
The image's HEALTHCHECK (``labspace health``) turns healthy.

Needs Docker and ``make images`` (both images); skipped without them (failed
under CI=true). Every container and volume it may create is removed at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess

import docker_env
import httpx
import pytest
import yaml
from harness import HubAPI, hub_settings_for, login, wait_for

from labspace import service_units
from labspace.settings import load

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "user-pass-123"


def inspect(name: str, template: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", "-f", template, name],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def signed_in_home(browser: httpx.Client, name: str) -> bool:
    """Whether ``browser``'s cookies still open the hub's home page as ``name``."""
    r = browser.get("hub/home")
    return r.status_code == 200 and r.url.path.endswith("/hub/home") and name in r.text


@pytest.fixture
def image_settings(tmp_path, service_token):
    """A settings file for the hub in its container: the docker backend, homes
    in volumes, ``hub.cleanup_servers: false``, the image's own proxy."""
    folder = tmp_path / "srv"
    folder.mkdir()
    values = hub_settings_for(folder / "data", [], service_token)
    del values["hub"]["proxy_command"]  # the image's, on its PATH
    values["hub"]["cleanup_servers"] = False
    values["auth"] = {"user_password": PASSWORD}
    values["backend"] = {
        "type": "docker",
        "image": docker_env.WORKSPACE_IMAGE,
        "docker": {"network": "host"},
    }
    path = folder / "labspace.yaml"
    path.write_text(yaml.safe_dump(values))
    return load(path, environ={})


def test_hub_image_restarts_after_a_crash_and_keeps_everything(
    docker_objects, need, image_settings, service_token
):
    why = docker_env.problem((docker_env.WORKSPACE_IMAGE, docker_env.HUB_IMAGE))
    need("the hub image", why is None, why or "")
    alice = f"alice{secrets.token_hex(3)}"
    hub_name = f"labspace-hub-test-{secrets.token_hex(3)}"
    workspace = f"labspace-{alice}"
    docker_objects.containers.update({hub_name, workspace})
    docker_objects.volumes.add(f"labspace-home-{alice}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{alice}--")

    args = service_units.docker_run_args(image_settings, image=docker_env.HUB_IMAGE, name=hub_name)
    assert "/var/run/docker.sock:/var/run/docker.sock" in args
    data_dir = image_settings.data_dir
    assert f"{data_dir}:{data_dir}" in args  # the same path inside
    subprocess.run(
        ["docker", "run", "--detach", "--restart", "unless-stopped", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    url = image_settings.local_url()
    api = HubAPI(url, service_token)
    try:
        wait_for(
            lambda: docker_env.answers(url + "hub/health"),
            180,
            0.5,
            what="the hub in its container",
        )
        api.create_user(alice)
        browser = login(url, alice, PASSWORD)
        api.start_server(alice, timeout=180)
        lab = browser.get(f"user/{alice}/lab")  # through the proxy: the OAuth dance
        assert lab.status_code == 200, lab.text[:300]
        assert browser.get(f"user/{alice}/api/status").status_code == 200
        container_id = docker_objects.container(workspace).id
        # the state is on the host, at the path the settings name
        assert (data_dir / "jupyterhub.sqlite").is_file()
        assert (data_dir / "secrets" / "cookie-secret").is_file()

        # the image's HEALTHCHECK (labspace health) says so too
        wait_for(
            lambda: inspect(hub_name, "{{.State.Health.Status}}") == "healthy",
            60,
            1,
            what="Docker's health check",
        )

        pid = int(inspect(hub_name, "{{.State.Pid}}"))
        restarts = int(inspect(hub_name, "{{.RestartCount}}"))
        os.kill(pid, signal.SIGKILL)  # tini, the container's PID 1: a crash

        def restarted():
            state = inspect(hub_name, "{{.RestartCount}} {{.State.Running}} {{.State.Pid}}")
            count, running, new_pid = state.split()
            return int(count) > restarts and running == "true" and int(new_pid) != pid

        wait_for(restarted, 60, 0.5, what="Docker to restart the hub's container")
        try:
            wait_for(
                lambda: docker_env.answers(url + "hub/health"), 180, 0.5, what="the restarted hub"
            )
        except TimeoutError as e:  # what the hub said is the only clue
            raise AssertionError(
                f"{e}; the container's log ends:\n{docker_env.container_log(hub_name, tail=60)}"
            ) from None

        # the cookie session, the same workspace through the proxy, the users
        assert signed_in_home(browser, alice)
        assert docker_objects.container(workspace).id == container_id
        lab = wait_for(
            lambda: (r := browser.get(f"user/{alice}/api/status")).status_code == 200 and r,
            60,
            0.5,
            what="the workspace through the restarted proxy",
        )
        assert "started" in lab.json()
        user = api.user(alice).json()
        assert user["servers"][""]["ready"] is True
        log = subprocess.run(
            ["docker", "logs", hub_name], capture_output=True, text=True, timeout=30
        )
        assert "Traceback" not in log.stdout + log.stderr
    finally:
        api.stop_all()  # the workspace outlives the hub by design: stop it first
        api.close()
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", hub_name],
            capture_output=True,
            timeout=60,
            check=False,
        )
