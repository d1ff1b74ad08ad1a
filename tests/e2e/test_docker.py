"""The docker backend on a real Docker daemon (tier 4): a real hub starts
workspaces as containers, over the REST API as scripts do, and the daemon
shows what each one got: its profile's limits, a non-root user, its mounts and
a home that outlives the container. Refused choices start nothing. All
containers use the host's network.

Needs Docker and ``make images``; skipped without them (failed under CI=true).
Every container and volume a test may create is removed by name at the end.
"""

from __future__ import annotations

import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import docker_env
import httpx
import pytest
from docker_env import run, start, stop, wait_ready
from harness import HubAPI
from jupyterhub.slugs import safe_slug

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MiB = 1024**2
PROFILES = [
    {
        "slug": "small",
        "display_name": "Small",
        "default": True,
        "cpu": {"limit": 0.5},
        "memory": {"limit": "512M", "guarantee": "256M"},
    },
    {
        "slug": "large",
        "display_name": "Large",
        "groups": ["research"],
        "cpu": {"limit": 1, "guarantee": 0.5},
        "memory": {"limit": "1G"},
        "env": {"LARGE": "yes"},
    },
]


@pytest.fixture
def settings(hub_settings, tmp_path) -> dict:
    """``hub_settings`` on the docker backend with two profiles, a read-only host
    folder and a read-write named volume, and a token that may manage groups."""
    reference = tmp_path / "reference"
    reference.mkdir(mode=0o755)
    reference.chmod(0o755)
    (reference / "README.txt").write_text("shared reference data\n")
    hub_settings["profiles"] = PROFILES
    hub_settings["backend"] = {
        "type": "docker",
        "image": docker_env.WORKSPACE_IMAGE,
        "docker": {"network": "host"},
        "mounts": [
            {"name": "reference", "type": "host", "source": str(reference), "target": "/ref"},
            {
                "name": "scratch",
                "type": "volume",
                "source": f"labspace-test-scratch-{secrets.token_hex(3)}",
                "target": "/scratch",
                "read_only": False,
            },
        ],
    }
    return hub_settings


def as_service(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def mounts_of(container) -> dict[str, dict]:
    return {m["Destination"]: m for m in container.attrs["Mounts"]}


def check_limits(container, memory: int, reservation: int, quota: int, shares: int) -> None:
    host = container.attrs["HostConfig"]
    assert host["Memory"] == memory
    assert host["MemoryReservation"] == reservation
    assert (host["CpuQuota"], host["CpuPeriod"]) == (quota, 100_000)
    assert host["CpuShares"] == shares
    assert host["NetworkMode"] == "host"
    assert host["PortBindings"] in (None, {})  # nothing published
    assert host["AutoRemove"] is True
    assert (host["CapDrop"], host["SecurityOpt"]) == (["ALL"], ["no-new-privileges"])


def check_runs_as_user(container, uid: int) -> None:
    assert container.attrs["Config"]["User"] == f"{uid}:100"
    code, status = run(container, ["cat", "/proc/1/status"])  # tini, PID 1
    assert code == 0
    (uids,) = [line for line in status.splitlines() if line.startswith("Uid:")]
    assert uids.split()[1:] == [str(uid)] * 4, uids  # real, effective, saved, fs
    processes = container.top(ps_args="-o pid,uid,args")["Processes"]
    server = [p for p in processes if "labspace.singleuser" in p[-1]]  # the image's CMD
    assert server and all(p[1] == str(uid) for p in server), processes


def test_profiles_limits_mounts_and_home(docker_objects, hub_factory, settings, service_token):
    alice, bob, carol = (f"{n}{secrets.token_hex(3)}" for n in ("alice", "bob", "carol"))
    for name in (alice, bob, carol):
        docker_objects.containers.add(f"labspace-{name}")
        docker_objects.volumes.add(f"labspace-home-{name}")
        docker_objects.container_prefixes.add(f"labspace--home-init--{name}--")
    scratch = settings["backend"]["mounts"][1]["source"]
    docker_objects.volumes.add(scratch)

    hub = hub_factory(settings).start()
    api = HubAPI(hub.url, service_token)
    try:
        for name in (alice, bob, carol):
            api.create_user(name)
        r = api.request("POST", "groups/research", json={"users": [bob]})
        assert r.status_code == 201, r.text

        # refused choices start nothing: no container, no home volume
        r = start(api, carol, {"profile": "large"})
        assert r.status_code == 403, r.text
        assert r.json()["message"] == "Profile 'large' is not open to your groups"
        r = start(api, carol, {"image": "busybox"})
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("Unknown option 'image'")
        assert api.user(carol).json()["servers"] == {}
        assert docker_objects.container(f"labspace-{carol}") is None
        assert docker_objects.volume(f"labspace-home-{carol}") is None
        assert not docker_objects.containers_named(f"labspace-{carol}")

        # alice gets the default profile, bob (in research) the large one
        with ThreadPoolExecutor(3) as pool:
            events = pool.submit(docker_env.progress, hub.url, service_token, alice)
            posts = [
                pool.submit(start, api, name, body)
                for name, body in ((alice, None), (bob, {"profile": "large"}))
            ]
            for posted in posts:
                assert posted.result().status_code in (201, 202), posted.result().text
            shown = [e["message"] for e in events.result()]
        for name in (alice, bob):
            wait_ready(api, name)
        for step in ("Creating your home", f"Starting container labspace-{alice}"):
            assert step in shown, shown

        a = docker_objects.container(f"labspace-{alice}")
        b = docker_objects.container(f"labspace-{bob}")
        assert a.status == b.status == "running"
        assert a.attrs["Config"]["Image"] == docker_env.WORKSPACE_IMAGE
        check_limits(a, memory=512 * MiB, reservation=256 * MiB, quota=50_000, shares=0)
        check_limits(b, memory=1024 * MiB, reservation=0, quota=100_000, shares=512)
        env = dict(item.split("=", 1) for item in b.attrs["Config"]["Env"])
        assert (env["LABSPACE_PROFILE"], env["LARGE"]) == ("large", "yes")
        assert a.labels["org.labspace.profile"] == "small"
        for container in (a, b):
            check_runs_as_user(container, 1000)

        # mounts: the home volume (read-write), the read-only host folder, the volume
        mounts = mounts_of(a)
        home = mounts["/home/jovyan"]
        assert (home["Type"], home["Name"], home["RW"]) == (
            "volume",
            f"labspace-home-{alice}",
            True,
        )
        ref = mounts["/ref"]
        assert (ref["Type"], ref["Source"], ref["RW"]) == (
            "bind",
            settings["backend"]["mounts"][0]["source"],
            False,
        )
        assert (mounts["/scratch"]["Name"], mounts["/scratch"]["RW"]) == (scratch, True)
        assert run(a, ["cat", "/ref/README.txt"]) == (0, "shared reference data")
        code, out = run(a, ["touch", "/ref/new"])
        assert code != 0 and "Read-only file system" in out
        assert run(a, ["stat", "-c", "%u:%g %a", "/home/jovyan"]) == (0, "1000:100 755")
        assert mounts_of(b)["/home/jovyan"]["Name"] == f"labspace-home-{bob}"

        # each workspace answers through the proxy
        for name in (alice, bob):
            r = httpx.get(
                f"{hub.url}user/{name}/api/status", headers=as_service(service_token), timeout=30
            )
            assert r.status_code == 200, r.text

        # a file written through the contents API outlives the container
        url = f"{hub.url}user/{alice}/api/contents/hello.txt"
        body = {"type": "file", "format": "text", "content": "kept"}
        r = httpx.put(url, json=body, headers=as_service(service_token), timeout=30)
        assert r.status_code == 201, r.text
        assert run(a, ["stat", "-c", "%u", "/home/jovyan/hello.txt"]) == (0, "1000")
        stop(api, alice)
        assert docker_objects.container(f"labspace-{alice}") is None
        assert docker_objects.volume(f"labspace-home-{alice}") is not None

        assert start(api, alice).status_code in (201, 202)
        wait_ready(api, alice)
        again = docker_objects.container(f"labspace-{alice}")
        assert again.id != a.id
        r = httpx.get(url, headers=as_service(service_token), timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "kept"

        # stopped workspaces leave no container behind
        for name in (alice, bob):
            stop(api, name)
            assert docker_objects.container(f"labspace-{name}") is None
        assert not docker_objects.containers_named("labspace--home-init--")
    finally:
        api.stop_all()
        api.close()
        hub.stop()


def test_names_never_collide_and_bind_homes(
    docker_objects, hub_factory, settings, service_token, tmp_path
):
    """Names that plain templates would merge get their own containers and
    homes: users ``user.has``, ``user-has`` and ``user-has--dash``, and server
    ``dash`` of ``user-has``. With ``home: bind`` a home is a host folder owned
    by the settings' ``uid``, shared by the user's servers.

    (User ``user-has`` + server ``dash`` and user ``user-has-dash`` cannot both
    run: JupyterHub 6 names both OAuth clients ``jupyterhub-user-user-has-dash``.)
    """
    # with home: bind, homes are folders under data_dir/users
    home_root = Path(settings["data_dir"]) / "users"
    settings["backend"]["docker"].update(home="bind", uid=1234)
    settings["backend"]["mounts"] = []
    users = ("user.has", "user-has", "user-has--dash")
    slug = {name: safe_slug(name, max_length=48) for name in users}
    names = {
        ("user.has", ""): f"labspace-{slug['user.has']}",
        ("user-has", ""): f"labspace-{slug['user-has']}",
        ("user-has", "dash"): f"labspace-{slug['user-has']}--dash",
        ("user-has--dash", ""): f"labspace-{slug['user-has--dash']}",
    }
    assert len(set(slug.values())) == 3 and len(set(names.values())) == 4, names
    docker_objects.containers.update(names.values())

    hub = hub_factory(settings).start()
    api = HubAPI(hub.url, service_token)
    try:
        for user in slug:
            api.create_user(user)
        with ThreadPoolExecutor(len(names)) as pool:
            posts = [pool.submit(start, api, user, None, server) for user, server in names]
            for posted in posts:
                assert posted.result().status_code in (201, 202), posted.result().text
        for (user, server), container_name in names.items():
            wait_ready(api, user, server)
            container = docker_objects.container(container_name)
            assert container is not None and container.status == "running", container_name
            check_runs_as_user(container, 1234)
            home = mounts_of(container)["/home/jovyan"]
            folder = home_root / slug[user]
            assert (home["Type"], home["Source"]) == ("bind", str(folder))
            stat = folder.stat()
            assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (1234, 100, 0o700)

            prefix = f"{hub.url}user/{user}/{server + '/' if server else ''}"
            r = httpx.get(f"{prefix}api/status", headers=as_service(service_token), timeout=30)
            assert r.status_code == 200, r.text
            body = {"type": "file", "format": "text", "content": user}
            r = httpx.put(
                f"{prefix}api/contents/{server or 'default'}.txt",
                json=body,
                headers=as_service(service_token),
                timeout=30,
            )
            assert r.status_code == 201, r.text
        # a user's servers share one home; users never share one
        for user in users:
            files = sorted(p.name for p in (home_root / slug[user]).glob("*.txt"))
            assert files == (["dash.txt", "default.txt"] if user == "user-has" else ["default.txt"])
            written = home_root / slug[user] / "default.txt"
            assert (written.read_text(), written.stat().st_uid) == (user, 1234)
        for user, server in names:
            stop(api, user, server)
        for container_name in names.values():
            assert docker_objects.container(container_name) is None
    finally:
        api.stop_all()
        api.close()
        hub.stop()


def test_images_run_the_hubs_versions(need):
    images = (docker_env.WORKSPACE_IMAGE, docker_env.HUB_IMAGE)
    why = docker_env.problem(images)
    need("Docker", why is None, why or "")
    hub_versions = f"jupyterhub {version('jupyterhub')}\njupyterlab {version('jupyterlab')}"

    def docker_run(image: str, *cmd: str) -> str:
        r = subprocess.run(
            ["docker", "run", "--rm", "--network", "host", image, *cmd],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = docker_run(
        docker_env.WORKSPACE_IMAGE,
        "sh",
        "-c",
        "id -u; python -c 'import jupyterhub, jupyterlab; "
        'print(f"jupyterhub {jupyterhub.__version__}\\njupyterlab {jupyterlab.__version__}")\'; '
        "cat /opt/labspace/share/jupyter/lab/settings/overrides.json",
    )
    assert out.startswith(f"1000\n{hub_versions}\n"), out
    assert '"fetchNews": "false"' in out
    out = docker_run(docker_env.HUB_IMAGE, "labspace", "version")
    assert hub_versions in out, out
    assert docker_run(docker_env.HUB_IMAGE, "configurable-http-proxy", "--version").strip()


def test_workspace_outlives_a_hub_restart(docker_objects, hub_factory, settings, service_token):
    """With ``hub.cleanup_servers: false`` a running container is found again by
    the next hub, through the state it kept (name and loopback port)."""
    settings["hub"]["cleanup_servers"] = False
    settings["backend"]["mounts"] = []
    name = f"dora{secrets.token_hex(3)}"
    docker_objects.containers.add(f"labspace-{name}")
    docker_objects.volumes.add(f"labspace-home-{name}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{name}--")

    first = hub_factory(settings).start()
    api = HubAPI(first.url, service_token)
    api.create_user(name)
    assert start(api, name).status_code in (201, 202)
    wait_ready(api, name)
    before = docker_objects.container(f"labspace-{name}")
    api.close()
    assert first.stop() == 0
    assert docker_objects.container(f"labspace-{name}").status == "running"

    second = hub_factory(settings).start()
    api = HubAPI(second.url, service_token)
    try:
        assert api.user(name).json()["servers"][""]["ready"] is True
        r = httpx.get(
            f"{second.url}user/{name}/api/status", headers=as_service(service_token), timeout=30
        )
        assert r.status_code == 200, r.text
        # the same container answered: it was never recreated
        assert docker_objects.container(f"labspace-{name}").id == before.id
        stop(api, name)
        assert docker_objects.container(f"labspace-{name}") is None
    finally:
        api.stop_all()
        api.close()
        second.stop()


def test_failed_start_says_why_and_leaves_nothing(
    docker_objects, hub_factory, settings, service_token, tmp_path
):
    """A start Docker refuses answers with Docker's reason and what to do, and
    leaves no container behind: a GPU profile on a host without a GPU runtime,
    a host folder that does not exist."""
    missing = tmp_path / "not-there"
    settings["backend"]["mounts"] = []
    settings["profiles"] = [
        {"slug": "gpu", "default": True, "gpus": 1},
        {
            "slug": "broken",
            "mounts": [{"name": "gone", "type": "host", "source": str(missing), "target": "/x"}],
        },
    ]
    name = f"gus{secrets.token_hex(3)}"
    docker_objects.containers.add(f"labspace-{name}")
    docker_objects.volumes.add(f"labspace-home-{name}")
    docker_objects.container_prefixes.add(f"labspace--home-init--{name}--")
    gpu_runtime = "nvidia" in docker_objects.client.info().get("Runtimes", {})

    hub = hub_factory(settings).start()
    api = HubAPI(hub.url, service_token)
    try:
        api.create_user(name)
        r = start(api, name, {"profile": "gpu"})
        if gpu_runtime:  # a GPU host: the device request is honoured
            assert r.status_code in (201, 202), r.text
            wait_ready(api, name)
            requests = docker_objects.container(f"labspace-{name}").attrs["HostConfig"]
            assert requests["DeviceRequests"][0]["Count"] == 1
            stop(api, name)
        else:
            assert r.status_code == 500, r.text
            message = r.json()["message"]
            assert message.startswith("Docker could not start your workspace: "), message
            assert "[[gpu]]" in message and "NVIDIA Container Toolkit" in message, message
        assert docker_objects.container(f"labspace-{name}") is None

        r = start(api, name, {"profile": "broken"})
        assert r.status_code == 500, r.text
        message = r.json()["message"]
        assert message.startswith("Docker could not create your workspace: "), message
        assert str(missing) in message, message
        assert docker_objects.container(f"labspace-{name}") is None
        assert api.user(name).json()["servers"] == {}
    finally:
        api.stop_all()
        api.close()
        hub.stop()
