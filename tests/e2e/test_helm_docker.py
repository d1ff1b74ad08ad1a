"""The chart's own configuration runs (tier 4): ``helm template`` of ``helm/labspace``
with ``tests/fixtures/helm/docker-local.yaml`` (the docker backend, as an operator
tries the chart on one machine), then the rendered hub and proxy Deployments run in
the hub image under Docker, each container as a kubelet would run it: its
``command`` (which replaces the image's entrypoint, as on Kubernetes) and ``args``,
``workingDir``, its environment with every ``secretKeyRef`` resolved from the
rendered Secret and ``envFrom`` from the Secret the test plays the operator making
(the values reach ``docker run`` through its environment, never its
arguments), its volume mounts (the ConfigMap's files read-only, a fresh folder for
the claim, owned by the pod's user and fsGroup) and its security context (user,
groups, read-only root, capabilities dropped, no new privileges).

Kubernetes is not here: both containers use the host's network, and the Service
names ``labspace-hub``, ``labspace-proxy-api`` and ``labspace-proxy-public`` resolve
to 127.0.0.1 with ``--add-host`` (the values file gives workspace containers the
hub's). The test
adds only what a Docker host needs: the Docker socket in the hub container (the
docker backend), free ports and a test password by ``--set``. Under the host's
network the chart's ``0.0.0.0`` addresses listen on every interface of this machine
for the test's duration; all its traffic goes to 127.0.0.1.

One hub start shows: the hub's probe answers on the hub port, ``/hub/health``
through the separate proxy, a password sign-in (the password from the rendered
Secret, not the ConfigMap; the admin's from a Secret the operator made, named in
``existingSecret``), a workspace started from the home page and reached
through the proxy (its ``JUPYTERHUB_API_URL`` is the hub's Service name) that
keeps answering while the hub is stopped and is the hub's again after its restart
(the chart's ``hub.cleanup_servers: false``, the proxy in a pod of its own), the
catalog service through the proxy (its URL is the hub's Service name too),
``labspace config validate`` (the chart's NOTES) and ``labspace backup`` (as
docs/how-to/kubernetes.md shows it) in the hub container, ``labspace restore`` of that
backup in a one-off container of the hub's pod once the hub is stopped, and a
clean stop on SIGTERM (what a pod's deletion sends) with no traceback and no secret
(passwords, proxy token) in either container's log. Every container and volume is
removed at the end.

Needs helm, Docker and both images (``make images``); skipped without them (failed
under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import docker_env
import httpx
import pytest
from harness import free_port, login, wait_for

import helm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICE_HOSTS = ("labspace-hub", "labspace-proxy-api", "labspace-proxy-public")
DOCKER_SOCKET = "/var/run/docker.sock"
CONFIG = "/etc/labspace/labspace.yaml"


def pod_spec(objects: list[dict], deployment: str) -> dict:
    return helm.find(objects, "Deployment", deployment)["spec"]["template"]["spec"]


def volume_folders(pod: dict, objects: list[dict], root: Path) -> dict[str, Path]:
    """A host folder for each volume of ``pod``: a ConfigMap's keys as files (as
    the kubelet projects them), a claim or emptyDir empty and owned by the pod's
    user and fsGroup (as a kubelet makes a volume writable by fsGroup)."""
    context = pod.get("securityContext", {})
    owner = (context.get("runAsUser", 0), context.get("fsGroup", context.get("runAsGroup", 0)))
    out = {}
    for volume in pod.get("volumes", []):
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        if "configMap" in volume:
            data = helm.find(objects, "ConfigMap", volume["configMap"]["name"])["data"]
            for key, text in data.items():
                (folder / key).write_text(text)
                (folder / key).chmod(0o644)
            folder.chmod(0o755)
        elif {"persistentVolumeClaim", "emptyDir"} & volume.keys():
            os.chown(folder, *owner)
            folder.chmod(0o2770)
        else:
            raise AssertionError(f"volume {volume['name']}: a kind this test does not run")
        out[volume["name"]] = folder
    return out


def docker_args(pod: dict, spec: dict, volumes: dict[str, Path], name: str) -> list[str]:
    """``docker run`` options for container ``spec`` of ``pod``: the host's
    network with the Service names on loopback, the security context, the mounts."""
    pod_context = pod.get("securityContext", {})
    context = {**pod_context, **spec.get("securityContext", {})}
    args = ["--name", name, "--network", "host"]
    args += [f"--add-host={host}:127.0.0.1" for host in SERVICE_HOSTS]
    if "runAsUser" in context:
        args += ["--user", f"{context['runAsUser']}:{context.get('runAsGroup', 0)}"]
    if "fsGroup" in pod_context:
        args += ["--group-add", str(pod_context["fsGroup"])]
    if spec.get("workingDir"):
        args += ["--workdir", spec["workingDir"]]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in context.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for mount in spec.get("volumeMounts", []):
        source = volumes[mount["name"]] / mount.get("subPath", "")
        mode = ",readonly" if mount.get("readOnly") else ""
        args += ["--mount", f"type=bind,source={source},target={mount['mountPath']}{mode}"]
    return args


def docker_run(args: list[str], spec: dict, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``docker run`` of the hub image with ``spec``'s command and args; ``env``
    is passed by name (``--env NAME``), its values through docker's environment."""
    command = spec.get("command") or []
    entry = ["--entrypoint", command[0]] if command else []
    names = [word for name in env for word in ("--env", name)]
    cmd = ["docker", "run", *args, *names, *entry, docker_env.HUB_IMAGE]
    return subprocess.run(
        [*cmd, *command[1:], *spec.get("args", [])],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def probe_url(spec: dict) -> str:
    """The readiness probe's URL, on this host."""
    probe = spec["readinessProbe"]["httpGet"]
    port = probe["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in spec["ports"] if p["name"] == port]
    return f"http://127.0.0.1:{port}{probe['path']}"


def option(spec: dict, name: str) -> str:
    """The value of ``--name=value`` in a container's command or args."""
    words = [*spec.get("command", []), *spec.get("args", [])]
    (value,) = [w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")]
    return value


def stops_cleanly(name: str) -> tuple[str, float]:
    """``docker stop`` (SIGTERM, as a pod's deletion): the exit code and seconds."""
    started = time.monotonic()
    done = docker("stop", "--time", "30", name, timeout=60)
    assert done.returncode == 0, done.stderr
    took = time.monotonic() - started
    return docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip(), took


def container_env(objects: list[dict], deployment: str, made: dict[str, dict]) -> dict:
    """The container's environment as the kubelet gives it: ``envFrom`` Secrets
    (``made``: Secrets an operator made with kubectl, by name), then ``env`` (its
    ``secretKeyRef`` values from the chart's rendered Secret)."""
    env = {}
    for source in helm.container(objects, deployment).get("envFrom", []):
        env.update(made[source["secretRef"]["name"]])
    return {**env, **helm.container_env(objects, deployment)}


def run_deployment(
    objects: list[dict],
    deployment: str,
    name: str,
    folder: Path,
    extra: tuple = (),
    made: dict[str, dict] | None = None,
) -> tuple[dict, dict[str, Path]]:
    """Run the (one) container of ``deployment`` as ``name``; its spec and volume
    folders. ``made``: the Secrets an operator made (``existingSecret``)."""
    pod = pod_spec(objects, deployment)
    (spec,) = pod["containers"]
    volumes = volume_folders(pod, objects, folder)
    args = ["--detach", *docker_args(pod, spec, volumes, name), *extra]
    done = docker_run(args, spec, container_env(objects, deployment, made or {}))
    assert done.returncode == 0, done.stderr
    return spec, volumes


def run_in_pod(
    objects: list[dict],
    deployment: str,
    name: str,
    volumes: dict[str, Path],
    made: dict,
    *command: str,
) -> subprocess.CompletedProcess:
    """``command`` in a one-off container ``name`` of ``deployment``'s pod (its
    volumes, user and environment), as docs/how-to/kubernetes.md's restore pod runs it."""
    pod = pod_spec(objects, deployment)
    (spec,) = pod["containers"]
    once = {**spec, "command": list(command), "args": []}
    args = ["--rm", *docker_args(pod, once, volumes, name)]
    return docker_run(args, once, container_env(objects, deployment, made))


def open_workspace(url: str, name: str, password: str) -> httpx.Client:
    """Sign in, press "Start My Server", open JupyterLab through the proxy."""
    browser = login(url, name, password)
    browser.get("hub/spawn")
    wait_for(
        lambda: browser.get("hub/api/user").json()["servers"].get("", {}).get("ready"),
        180,
        0.5,
        what=f"{name}'s workspace",
    )
    lab = browser.get(f"user/{name}/lab")  # through the proxy: the OAuth hand-off
    assert lab.status_code == 200, lab.text[:300]
    assert lab.url.path == f"/user/{name}/lab"
    return browser


def stop_workspace(browser: httpx.Client, name: str) -> None:
    xsrf = browser.cookies.get("_xsrf", path="/hub/")
    browser.delete(f"hub/api/users/{name}/server", headers={"X-XSRFToken": xsrf})
    wait_for(
        lambda: not browser.get("hub/api/user").json()["servers"],
        60,
        0.5,
        what=f"{name}'s workspace to stop",
    )


def test_the_charts_hub_and_proxy_run_under_docker(docker_objects, need, tmp_path):
    why = helm.helm_problem()
    need("helm", why is None, why or "")
    why = docker_env.problem((docker_env.WORKSPACE_IMAGE, docker_env.HUB_IMAGE))
    need("the hub image", why is None, why or "")
    alice, password = "alice", secrets.token_hex(12)
    # docs/how-to/kubernetes.md: secrets in a Secret of your own (existingSecret)
    admin_password = secrets.token_hex(20)
    made = {"labspace-env": {"LABSPACE_AUTH_ADMIN_PASSWORD": admin_password}}
    keys = ("hub.port", "hub.hub_port", "hub.proxy_api_port", "catalog.port")
    ports = {key: free_port() for key in keys}
    sets = {f"labspace.{key}": port for key, port in ports.items()}
    sets |= {"labspace.auth.user_password": password, "existingSecret": "labspace-env"}
    objects = helm.render("docker-local", **sets)
    settings = helm.settings(objects)
    assert password not in helm.settings_text(objects)  # moved to the Secret
    assert settings["hub"]["connect_host"] == "labspace-hub"
    hub_env = container_env(objects, "labspace-hub", made)
    assert hub_env["LABSPACE_AUTH_USER_PASSWORD"] == password
    # the proxy listens where its rendered args say, and the hub finds its API there
    proxy_spec = helm.container(objects, "labspace-proxy")
    assert settings["hub"]["proxy_api_url"] == (
        f"http://labspace-proxy-api:{option(proxy_spec, '--api-port')}"
    )
    url = f"http://127.0.0.1:{option(proxy_spec, '--port')}/"

    tag = secrets.token_hex(3)
    hub, proxy = f"labspace-helm-hub-{tag}", f"labspace-helm-proxy-{tag}"
    once = f"labspace-helm-once-{tag}"
    docker_objects.containers.update({hub, proxy, once, f"labspace-{alice}"})
    docker_objects.volumes.add(f"labspace-home-{alice}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{alice}--")
    # the docker backend: the Docker socket, and its group (this host only)
    engine = ("--mount", f"type=bind,source={DOCKER_SOCKET},target={DOCKER_SOCKET}")
    engine += ("--group-add", str(os.stat(DOCKER_SOCKET).st_gid))
    try:
        run_deployment(objects, "labspace-proxy", proxy, tmp_path / "proxy")
        hub_spec, volumes = run_deployment(
            objects, "labspace-hub", hub, tmp_path / "hub", engine, made
        )
        wait_for(lambda: docker_env.answers(probe_url(hub_spec)), 180, 0.5, what="the hub's probe")
        wait_for(
            lambda: docker_env.answers(url + "hub/health"),
            60,
            0.5,
            what="the hub through the proxy",
        )

        browser = open_workspace(url, alice, password)
        workspace = docker_objects.container(f"labspace-{alice}")
        env = dict(e.split("=", 1) for e in workspace.attrs["Config"]["Env"])
        assert env["JUPYTERHUB_API_URL"] == f"http://labspace-hub:{ports['hub.hub_port']}/hub/api"
        # the hub restarts (an upgrade): the proxy and the workspace keep running
        code, _ = stops_cleanly(hub)
        assert code == "0", docker_env.container_log(hub)[-3000:]
        status = browser.get(f"user/{alice}/api/status")  # the hub is down
        assert status.status_code == 200, status.text[:300]
        assert docker("start", hub).returncode == 0
        wait_for(lambda: docker_env.answers(url + "hub/health"), 180, 0.5, what="the restarted hub")
        assert browser.get("hub/api/user").json()["servers"][""]["ready"]
        assert docker_objects.container(f"labspace-{alice}").id == workspace.id

        # a managed service: the proxy reaches it at labspace-hub:<its port>, and it
        # signs the person in through the hub's API (OAuth) at the same name
        # (it answers 503 while it starts, after the hub is up)
        catalog = wait_for(
            lambda: (r := browser.get("services/catalog/")).status_code == 200 and r,
            60,
            0.5,
            what="the catalog through the proxy",
        )
        assert catalog.url.path.startswith("/services/catalog/")

        # the admin's password came from the operator's Secret (envFrom), none was made
        login(url, "admin", admin_password)
        assert not (volumes["data"] / "secrets" / "admin-password").exists()

        # the chart's NOTES: the settings checked where the hub reads them
        checked = docker("exec", hub, "labspace", "config", "validate", CONFIG)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # docs/how-to/kubernetes.md, "Back up": in the hub's container, into the claim
        to = "/srv/labspace/data/backups"
        backup = docker("exec", hub, "labspace", "backup", "--config", CONFIG, "--to", to)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert "hub: databases/hub.sqlite" in backup.stdout
        (folder,) = re.findall(r"^Backed up \S+ to (\S+):$", backup.stdout, re.MULTILINE)

        stop_workspace(browser, alice)
        code, took = stops_cleanly(hub)
        assert (code, took < 25) == ("0", True), (code, took, docker_env.container_log(hub)[-3000:])
        log = docker_env.container_log(hub)
        assert "Traceback" not in log
        for secret in (password, admin_password, hub_env["CONFIGPROXY_AUTH_TOKEN"]):
            assert secret not in log + docker_env.container_log(proxy)

        # docs/how-to/kubernetes.md, "restore": the hub stopped, in a pod with its claim,
        # settings and environment
        command = ("labspace", "restore", "--config", CONFIG, "--force", folder)
        restored = run_in_pod(objects, "labspace-hub", once, volumes, made, *command)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert f"Restored {folder} to /srv/labspace/data:" in restored.stdout
    except BaseException:
        for name in (hub, proxy):
            print(f"---- docker logs {name}\n{docker_env.container_log(name)[-6000:]}")
        raise
    finally:
        for name in (hub, proxy):
            with contextlib.suppress(subprocess.SubprocessError):
                docker("rm", "--force", "--volumes", name)
