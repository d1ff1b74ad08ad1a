"""Golden tests of the docker backend: the containers, homes and mounts it asks for.

Tier 1: no Docker daemon and no hub. The pure mapping (``container_name``,
``home_volume_name``, ``mounts_for``, ``host_config_for``, ``labels_for``) is
checked against tables of exact values. The real ``LabspaceDockerSpawner``
(DockerSpawner underneath) is built the way JupyterHub builds it — a user, its
server record, the hub, the config — with no ``_mock``: its constructor does
not touch Docker (DockerSpawner makes its client lazily).

``create_object()`` is DockerSpawner's own code that turns traits into the
``create_container`` call. Two things stand in for the daemon there:

- the shared ``client`` is a ``docker.APIClient`` with a fixed API version for a
  socket that does not exist: it converts host config without a request (only
  ``version="auto"`` asks the daemon);
- ``spawner.docker()``, the one door DockerSpawner sends every SDK call
  through, answers ``inspect_image`` and records ``create_container``; any other
  call fails the test.

So the dicts below are exactly what Docker would be sent.
"""

from __future__ import annotations

import dataclasses
import io
import re
import secrets
import tarfile
from typing import Any

import docker
import pytest
from offline import MockUser, build_spawner, settings_from
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from labspace.profiles import Mount, WorkspaceFile, WorkspaceSpec
from labspace.spawners.docker import (
    LabspaceDockerSpawner,
    container_name,
    docker_mount,
    files_archive,
    home_volume_name,
    host_config_for,
    labels_for,
    mount_for,
    mounts_for,
)

GiB = 1024**3
DOCKER_API = "1.41"  # Docker 20.10; device requests need 1.40
IMAGE_CMD = ["start-singleuser.sh"]
PORT = 45678  # what start() would pick with random_port() on the host network
HOME = "/home/jovyan"
# Docker's own rule for container and volume names
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

# labspace.yaml of the tests (schema-checked in `settings_from`)
SETTINGS = """
backend:
  type: docker
  image: labspace/workspace:2025.1
  env: {LABSPACE_SITE: test}
  mounts:
    - {name: shared, type: host, source: /srv/shared, target: /data/shared}
profiles:
  - slug: default
    display_name: Standard
    default: true
    cpu: {guarantee: 0.5, limit: 2}
    memory: {guarantee: 1G, limit: 4G}
  - slug: gpu
    display_name: One GPU
    cpu: {guarantee: 4, limit: 8}
    memory: {guarantee: 16G, limit: 32G}
    gpus: 1
    image: labspace/workspace-cuda:2025.1
  - slug: data
    display_name: Shared data
    mounts:
      - {name: scratch, type: volume, source: team-scratch, target: /data/scratch,
         read_only: false}
      - {name: models, type: host, source: /srv/models, target: /data/models}
"""


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_from(SETTINGS)


@pytest.fixture
def offline_client(monkeypatch, tmp_path) -> docker.APIClient:
    """DockerSpawner's shared client, for a socket nothing listens on."""
    client = docker.APIClient(base_url=f"unix://{tmp_path}/no-docker.sock", version=DOCKER_API)
    monkeypatch.setattr(LabspaceDockerSpawner, "_client", client)
    return client


@pytest.fixture
def make_spawner(settings, tmp_path):
    """Build spawners as ``User._new_spawner`` does: ``make_spawner("alice", "dash")``;
    ``values`` replaces the test settings, keywords are ``DockerSpawner`` config
    (as ``hub.config`` sets it)."""

    def make(name: str, server_name: str = "", values: dict | None = None, **traits):
        values = values or settings
        config = Config()
        config.LabspaceDockerSpawner.home_root = str(tmp_path / "users")  # as hubconfig does
        for trait, value in traits.items():
            setattr(config.DockerSpawner, trait, value)
        spawner = build_spawner(LabspaceDockerSpawner, name, server_name, values, config)
        return spawner

    return make


class DockerCalls:
    """Stands in for ``spawner.docker()``: answers what building a container asks."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    async def __call__(self, method: str, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        if method == "inspect_image":
            return {"Config": {"Cmd": IMAGE_CMD}}
        if method == "create_container":
            return {"Id": "0123456789abcdef"}
        raise AssertionError(f"unexpected Docker call: {method}{args}")


async def create_call(spawner, options: dict[str, Any] | None, monkeypatch) -> dict[str, Any]:
    """The ``create_container`` keywords for ``options`` (None: keep the last profile)."""
    if options is not None:
        spawner.user_options = options
        await spawner._run_apply_user_options(options)  # what User.spawn calls
    if spawner.host_network:
        spawner.port = PORT
    calls = DockerCalls()
    monkeypatch.setattr(spawner, "docker", calls)
    assert await spawner.create_object() == {"Id": "0123456789abcdef"}
    (create,) = [kwargs for method, _, kwargs in calls.calls if method == "create_container"]
    assert [method for method, _, _ in calls.calls] == ["inspect_image", "create_container"]
    return create


# -- names ------------------------------------------------------------------------

# (user, server, container, home volume)
NAMES = [
    pytest.param("alice", "", "labspace-alice", "labspace-home-alice", id="plain"),
    pytest.param("alice", "dash", "labspace-alice--dash", "labspace-home-alice", id="named"),
    pytest.param(
        "alice", "Dash", "labspace-alice--dash-8c3ea2ea", "labspace-home-alice", id="named-upper"
    ),
    pytest.param(
        "user-has",
        "dash",
        "labspace-user-has-60d8f5fb--dash",
        "labspace-home-user-has-60d8f5fb",
        id="hyphen-named",
    ),
    pytest.param(
        "user-has-dash",
        "",
        "labspace-user-has-dash-b7857e52",
        "labspace-home-user-has-dash-b7857e52",
        id="hyphen-long",
    ),
    pytest.param(
        "user.has",
        "",
        "labspace-user-has-fb16cc29",
        "labspace-home-user-has-fb16cc29",
        id="dot",
    ),
    pytest.param(
        "Alice", "", "labspace-alice-3bc51062", "labspace-home-alice-3bc51062", id="upper"
    ),
    pytest.param("josé", "", "labspace-jose-d994e1d0", "labspace-home-jose-d994e1d0", id="accent"),
    pytest.param("日本語", "", "labspace-x-77710aed", "labspace-home-x-77710aed", id="cjk"),
    pytest.param(
        "ada.l@x.org",
        "",
        "labspace-ada-l-x-org-480fae9c",
        "labspace-home-ada-l-x-org-480fae9c",
        id="email",
    ),
    pytest.param("a", "b", "labspace-a--b", "labspace-home-a", id="a-server-b"),
    pytest.param("a--b", "", "labspace-a-b-90827a2e", "labspace-home-a-b-90827a2e", id="a--b"),
    pytest.param(
        "a" * 100,
        "",
        f"labspace-{'a' * 39}-28165978",
        f"labspace-home-{'a' * 39}-28165978",
        id="long",
    ),
    pytest.param(
        "a" * 100 + "b",
        "",
        f"labspace-{'a' * 39}-d89d25f6",
        f"labspace-home-{'a' * 39}-d89d25f6",
        id="long-other",
    ),
    pytest.param(
        "user-has",
        "My Server",
        "labspace-user-has-60d8f5fb--my-server-c2d9a82f",
        "labspace-home-user-has-60d8f5fb",
        id="server-space",
    ),
]


@pytest.mark.parametrize(("user", "server", "container", "volume"), NAMES)
def test_names(user, server, container, volume):
    assert container_name("labspace", user, server) == container
    assert home_volume_name("labspace", user) == volume
    for name in (container, volume):
        assert DOCKER_NAME.match(name), name
        assert re.fullmatch(r"[a-z0-9-]+", name), name
        assert len(name) <= 89  # prefix + 48-character user slug + "--" + 30-character server


@pytest.mark.parametrize(("user", "server", "container", "volume"), NAMES)
def test_spawner_uses_the_names(make_spawner, user, server, container, volume):
    spawner = make_spawner(user, server)
    assert spawner.object_name == spawner.container_name == container
    assert spawner.home_volume == volume


def test_names_never_collide():
    """``user-has`` + server ``dash`` vs user ``user-has-dash`` (the escaping hazard)."""
    pairs = [(p.values[0], p.values[1]) for p in NAMES]
    containers = [container_name("labspace", u, s) for u, s in pairs]
    assert len(set(containers)) == len(containers)
    # one home per user, shared by the user's servers
    users = {u for u, _ in pairs}
    homes = {home_volume_name("labspace", u) for u in users}
    assert len(homes) == len(users)
    assert container_name("labspace", "user-has", "dash") != container_name(
        "labspace", "user-has-dash"
    )


def test_prefix_from_hub_config(make_spawner):
    spawner = make_spawner("alice", "dash", prefix="lab")
    assert spawner.object_name == "lab-alice--dash"
    assert spawner.home_volume == "lab-home-alice"


# -- mounts -------------------------------------------------------------------------

HOME_VOLUME = {
    "type": "volume",
    "source": "labspace-home-alice",
    "target": HOME,
    "read_only": False,
}


@pytest.mark.parametrize(
    ("mount", "mounted"),
    [
        pytest.param(
            Mount("models", "host", "/srv/models", "/data/models"),
            {"type": "bind", "source": "/srv/models", "target": "/data/models", "read_only": True},
            id="host-ro",
        ),
        pytest.param(
            Mount("scratch", "host", "/scratch", "/scratch", read_only=False),
            {"type": "bind", "source": "/scratch", "target": "/scratch", "read_only": False},
            id="host-rw",
        ),
        pytest.param(
            Mount("ref", "volume", "ref-data", "/data/ref"),
            {"type": "volume", "source": "ref-data", "target": "/data/ref", "read_only": True},
            id="volume-ro",
        ),
        pytest.param(
            Mount("team", "volume", "team-scratch", "/data/team", read_only=False),
            {
                "type": "volume",
                "source": "team-scratch",
                "target": "/data/team",
                "read_only": False,
            },
            id="volume-rw",
        ),
    ],
)
def test_mounts_for(mount, mounted):
    spec = WorkspaceSpec(profile="p", display_name="P", mounts=(mount,))
    assert mounts_for(spec, "volume", "labspace-home-alice") == [HOME_VOLUME, mounted]
    assert mount_for(mount) == mounted


def test_mounts_for_bind_home_and_no_mounts():
    spec = WorkspaceSpec(profile="p", display_name="P")
    assert mounts_for(spec, "bind", "/data/users/alice") == [
        {"type": "bind", "source": "/data/users/alice", "target": HOME, "read_only": False}
    ]


@pytest.mark.parametrize(
    "mount",
    [
        pytest.param(Mount("ref", "pvc", "ref-data", "/data/ref"), id="pvc"),
        pytest.param(Mount("ref", "nfs", "nfs.example.org:/ref", "/data/ref"), id="nfs"),
    ],
)
def test_mount_docker_cannot_do(make_spawner, mount):
    message = (
        f"mount 'ref': {mount.type!r} mounts do not work on the docker backend (use host or volume)"
    )
    with pytest.raises(ValueError) as e:
        mount_for(mount)
    assert str(e.value) == message
    spec = WorkspaceSpec(
        profile="p", display_name="P", image="labspace/workspace:2025.1", mounts=(mount,)
    )
    with pytest.raises(web.HTTPError) as e:
        make_spawner("alice").apply_workspace_spec(spec)
    assert e.value.status_code == 500
    assert e.value.log_message == f"This workspace cannot start: {message} (ask an administrator)"


# -- host config ----------------------------------------------------------------------

LOCKED = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            WorkspaceSpec(
                "gpu",
                "GPU",
                cpu_guarantee=1.5,
                cpu_limit=4,
                mem_guarantee=2 * GiB,
                mem_limit=8 * GiB,
                gpus=2,
            ),
            {
                **LOCKED,
                "memswap_limit": 8 * GiB,
                "mem_reservation": 2 * GiB,
                "cpu_shares": 1536,
                "device_requests": [{"count": 2, "capabilities": [["gpu"]]}],
            },
            id="all",
        ),
        pytest.param(
            WorkspaceSpec("l", "L", cpu_limit=2, mem_limit=4 * GiB),
            {**LOCKED, "memswap_limit": 4 * GiB},
            id="limits-only",
        ),
        pytest.param(
            WorkspaceSpec("g", "G", cpu_guarantee=0.5, mem_guarantee=GiB),
            {**LOCKED, "mem_reservation": GiB, "cpu_shares": 512},
            id="guarantees-only",
        ),
        pytest.param(
            WorkspaceSpec("t", "T", cpu_guarantee=0.001),
            {**LOCKED, "cpu_shares": 2},
            id="tiny-cpu",
        ),
        pytest.param(WorkspaceSpec("n", "N"), LOCKED, id="none"),
    ],
)
def test_host_config_for(spec, expected):
    assert host_config_for(spec) == expected


SHARED = {"ReadOnly": True, "Source": "/srv/shared", "Target": "/data/shared", "Type": "bind"}
HOME_MOUNT = {"ReadOnly": False, "Source": "labspace-home-alice", "Target": HOME, "Type": "volume"}


async def test_create_container_golden(make_spawner, offline_client, monkeypatch):
    """The whole ``create_container`` call for the GPU profile, as Docker gets it."""
    spawner = make_spawner("alice")
    create = await create_call(spawner, {"profile": "gpu"}, monkeypatch)
    env = create.pop("environment")
    assert create == {
        "image": "labspace/workspace-cuda:2025.1",
        "name": "labspace-alice",
        "command": [
            *IMAGE_CMD,
            "--ip=127.0.0.1",
            f"--port={PORT}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        "user": "1000:100",
        "working_dir": HOME,
        "labels": {
            "org.labspace.role": "workspace",
            "org.labspace.user": "alice",
            "org.labspace.profile": "gpu",
        },
        "ports": {f"{PORT}/tcp": None},  # exposed, never published (see PortBindings)
        "volumes": [],
        "host_config": {
            "AutoRemove": True,
            "Binds": [],
            "Links": [],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "CpuPeriod": 100_000,
            "CpuQuota": 800_000,
            "CpuShares": 4096,
            "Memory": 32 * GiB,
            "MemoryReservation": 16 * GiB,
            "MemorySwap": 32 * GiB,
            "DeviceRequests": [
                {
                    "Driver": "",
                    "Count": 1,
                    "DeviceIDs": [],
                    "Capabilities": [["gpu"]],
                    "Options": {},
                }
            ],
            "Mounts": [HOME_MOUNT, SHARED],
            "NetworkMode": "host",
        },
    }
    assert {k: env[k] for k in ("HOME", "LABSPACE_PROFILE", "LABSPACE_SITE")} == {
        "HOME": HOME,
        "LABSPACE_PROFILE": "gpu",
        "LABSPACE_SITE": "test",
    }
    assert env["JUPYTERHUB_SERVICE_URL"] == f"http://127.0.0.1:{PORT}/user/alice/"
    assert env["JUPYTER_IMAGE_SPEC"] == "labspace/workspace-cuda:2025.1"


async def test_nothing_is_published(make_spawner, offline_client, monkeypatch):
    spawner = make_spawner("alice")
    host_config = (await create_call(spawner, {}, monkeypatch))["host_config"]
    assert "PortBindings" not in host_config
    assert "PublishAllPorts" not in host_config
    assert "Privileged" not in host_config
    assert "CapAdd" not in host_config


async def test_profile_mounts_and_bind_home(make_spawner, offline_client, monkeypatch):
    values = settings_from(SETTINGS)
    values["backend"]["docker"]["home"] = "bind"
    spawner = make_spawner("Ada.L@x.org", values=values)
    create = await create_call(spawner, {"profile": "data"}, monkeypatch)
    home = f"{spawner.home_root}/ada-l-x-org-14a68748"
    assert create["host_config"]["Mounts"] == [
        {"ReadOnly": False, "Source": home, "Target": HOME, "Type": "bind"},
        SHARED,
        {"ReadOnly": False, "Source": "team-scratch", "Target": "/data/scratch", "Type": "volume"},
        {"ReadOnly": True, "Source": "/srv/models", "Target": "/data/models", "Type": "bind"},
    ]
    # the data profile bounds nothing
    for key in ("Memory", "MemorySwap", "MemoryReservation", "CpuQuota", "CpuShares"):
        assert key not in create["host_config"]


async def test_own_network(make_spawner, offline_client, monkeypatch):
    """``backend.docker.network`` other than host: the container's own IP, port 8888."""
    values = settings_from(SETTINGS)
    values["backend"]["docker"].update(network="labspace-net", uid=2000)
    spawner = make_spawner("alice", values=values)
    create = await create_call(spawner, {}, monkeypatch)
    assert create["host_config"]["NetworkMode"] == "labspace-net"
    assert "PortBindings" not in create["host_config"]
    assert create["command"] == [
        *IMAGE_CMD,
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    assert create["user"] == "2000:100"
    assert create["environment"]["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:8888/user/alice/"


async def test_next_start_with_another_profile_keeps_nothing_of_the_last(
    make_spawner, offline_client, monkeypatch
):
    """JupyterHub keeps one spawner per server across starts."""
    spawner = make_spawner("alice")
    await create_call(spawner, {"profile": "gpu"}, monkeypatch)
    create = await create_call(spawner, {"profile": "data"}, monkeypatch)
    assert create["image"] == "labspace/workspace:2025.1"
    assert create["labels"]["org.labspace.profile"] == "data"
    host_config = create["host_config"]
    assert sorted(host_config) == [
        "AutoRemove",
        "Binds",
        "CapDrop",
        "Links",
        "Mounts",
        "NetworkMode",
        "SecurityOpt",
    ]
    assert len(host_config["Mounts"]) == 4  # home + shared + 2 profile mounts, once each
    create = await create_call(spawner, {}, monkeypatch)
    assert create["host_config"]["Mounts"] == [HOME_MOUNT, SHARED]
    assert create["host_config"]["CpuShares"] == 512


# -- labels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("alice", "", "workspace", "default"),
            {
                "org.labspace.role": "workspace",
                "org.labspace.user": "alice",
                "org.labspace.profile": "default",
            },
            id="workspace",
        ),
        pytest.param(
            ("user-has", "Dash", "workspace", "gpu"),
            {
                "org.labspace.role": "workspace",
                "org.labspace.user": "user-has-60d8f5fb",
                "org.labspace.server": "dash-8c3ea2ea",
                "org.labspace.profile": "gpu",
            },
            id="named-server",
        ),
        pytest.param(
            ("Ada.L@x.org", "", "home"),
            {"org.labspace.role": "home", "org.labspace.user": "ada-l-x-org-14a68748"},
            id="home",
        ),
    ],
)
def test_labels_for(args, expected):
    assert labels_for(*args) == expected


# -- image policy ------------------------------------------------------------------------


def test_image_outside_the_allowed_set_is_refused(make_spawner):
    spawner = make_spawner("alice")
    spec = WorkspaceSpec(profile="x", display_name="X", image="evil/miner:latest")
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_workspace_spec(spec)
    assert e.value.status_code == 403
    assert e.value.log_message == (
        "Image 'evil/miner:latest' of profile 'x' is not allowed here "
        "(ask an administrator to set backend.image or the profile's image)"
    )
    assert spawner.image == "labspace/workspace:2025.1"  # unchanged


async def test_no_image_anywhere_is_refused(make_spawner):
    values = settings_from("backend: {type: docker, image: ''}\n")
    with pytest.raises(web.HTTPError) as e:
        await make_spawner("alice", values=values)._run_apply_user_options({})
    assert e.value.status_code == 403
    assert e.value.log_message == (
        "Image '' of profile 'default' is not allowed here "
        "(ask an administrator to set backend.image or the profile's image)"
    )


async def test_image_option_is_refused(make_spawner):
    """DockerSpawner's own ``image`` option never reaches it."""
    spawner = make_spawner("alice")
    options = spawner.options_from_form({"profile": ["gpu"], "image": ["evil/miner:latest"]})
    with pytest.raises(web.HTTPError) as e:
        await spawner._run_apply_user_options(options)
    assert e.value.status_code == 400
    assert e.value.log_message == (
        "Unknown option 'image': the only option is 'profile' (the slug of a profile you may use)"
    )


async def test_only_the_profile_image_may_run(make_spawner):
    spawner = make_spawner("alice")
    await spawner._run_apply_user_options({"profile": "gpu"})
    assert spawner.image == "labspace/workspace-cuda:2025.1"
    assert spawner.allowed_images == {spawner.image: spawner.image}
    with pytest.raises(web.HTTPError) as e:
        await spawner.check_allowed("labspace/workspace:2025.1")
    assert e.value.status_code == 400
    assert e.value.log_message == (
        "Image labspace/workspace:2025.1 not in allowed list: labspace/workspace-cuda:2025.1"
    )


# -- hub.config over Labspace's values -------------------------------------------------------

OUR_HOST_CONFIG = {**LOCKED, "memswap_limit": 4 * GiB, "mem_reservation": GiB, "cpu_shares": 512}
OUR_CREATE = {
    "user": "1000:100",
    "working_dir": HOME,
    "labels": {
        "org.labspace.role": "workspace",
        "org.labspace.user": "alice",
        "org.labspace.profile": "default",
    },
}


async def async_site(spawner):
    return {"dns": [f"10.0.0.{len(spawner.user.name)}"]}


@pytest.mark.parametrize(
    ("trait", "site", "expected"),
    [
        pytest.param(
            "extra_host_config",
            {"dns": ["10.0.0.1"]},
            {**OUR_HOST_CONFIG, "dns": ["10.0.0.1"]},
            id="host-add",
        ),
        pytest.param(
            "extra_host_config",
            {"cpu_shares": 100, "security_opt": ["seccomp=unconfined"]},
            {**OUR_HOST_CONFIG, "cpu_shares": 100, "security_opt": ["seccomp=unconfined"]},
            id="host-override",
        ),
        pytest.param(
            "extra_host_config",
            lambda spawner: {"dns": [spawner.user.name]},
            {**OUR_HOST_CONFIG, "dns": ["alice"]},
            id="host-callable",
        ),
        pytest.param(
            "extra_host_config",
            async_site,
            {**OUR_HOST_CONFIG, "dns": ["10.0.0.5"]},
            id="host-async",
        ),
        pytest.param(
            "extra_create_kwargs",
            {"labels": {"site": "x", "org.labspace.role": "other"}, "user": "2000:100"},
            {
                **OUR_CREATE,
                "user": "2000:100",
                "labels": {**OUR_CREATE["labels"], "org.labspace.role": "other", "site": "x"},
            },
            id="create-merge",
        ),
        pytest.param(
            "extra_create_kwargs",
            lambda spawner: {"hostname": spawner.user.name},
            {**OUR_CREATE, "hostname": "alice"},
            id="create-callable",
        ),
    ],
)
async def test_hub_config_merges_over_ours(make_spawner, trait, site, expected):
    spawner = make_spawner("alice", **{trait: site})
    await spawner._run_apply_user_options({})
    merged = getattr(spawner, trait)
    assert callable(merged)
    assert await merged(spawner) == expected


async def test_hub_config_reaches_docker_and_is_kept(make_spawner, offline_client, monkeypatch):
    host = {"cpu_period": 50_000, "log_config": {"type": "local", "config": {}}}
    create = {"labels": {"site": "x"}}
    spawner = make_spawner("alice", extra_host_config=host, extra_create_kwargs=create)
    first = await create_call(spawner, {}, monkeypatch)
    second = await create_call(spawner, None, monkeypatch)
    assert first == second
    assert first["host_config"]["CpuPeriod"] == 50_000
    assert first["host_config"]["CpuQuota"] == 100_000  # cpu limit 2 over the site's period
    assert first["host_config"]["LogConfig"] == {"Type": "local", "Config": {}}
    assert first["labels"]["site"] == "x"
    assert first["labels"]["org.labspace.role"] == "workspace"
    # the site's values are not changed by a start
    assert host == {"cpu_period": 50_000, "log_config": {"type": "local", "config": {}}}
    assert create == {"labels": {"site": "x"}}


# -- settings ----------------------------------------------------------------------------


def test_defaults_from_settings(make_spawner):
    spawner = make_spawner("alice")
    assert spawner.image == "labspace/workspace:2025.1"
    assert spawner.network_name == "host"
    assert spawner.ip == "127.0.0.1"
    assert spawner.remove is True
    assert spawner.use_internal_ip is True
    assert spawner.uid == 1000
    assert spawner.home_kind == "volume"


def test_hub_config_overrides_a_default(make_spawner):
    spawner = make_spawner("alice", network_name="labspace-net", remove=False)
    assert spawner.network_name == "labspace-net"
    assert spawner.ip == "0.0.0.0"  # noqa: S104
    assert spawner.remove is False


def test_home_root_must_be_absolute(make_spawner):
    config = Config()
    config.LabspaceDockerSpawner.home_root = "users"
    with pytest.raises(TraitError, match="home_root must be an absolute path, not .users."):
        LabspaceDockerSpawner(user=MockUser("alice"), config=config)


# -- data grants: sub_path and files ------------------------------------------------


def test_volume_sub_path_needs_a_daemon_that_honours_it():
    mount = Mount("data-ref", "volume", "team-data", "/data/ref", sub_path="genomes/hg38")
    # Docker before 26 would mount the whole volume: refused, never widened
    with pytest.raises(ValueError, match="sub_path needs Docker 26"):
        mount_for(mount)
    args = mount_for(mount, subpath_ok=True)
    assert args["volume_subpath"] == "genomes/hg38"
    assert docker_mount(args) == {
        "Target": "/data/ref",
        "Source": "team-data",
        "Type": "volume",
        "ReadOnly": True,
        "VolumeOptions": {"Subpath": "genomes/hg38"},
    }
    host = mount_for(Mount("h", "host", "/srv/data", "/data/h", sub_path="a/b"))
    assert host["source"] == "/srv/data/a/b"
    for bad in ("../x", "/etc", "."):
        with pytest.raises(ValueError, match="leaves the source"):
            mount_for(Mount("h", "host", "/srv/data", "/d", sub_path=bad), subpath_ok=True)


async def test_sub_path_refused_at_the_profile_on_an_old_daemon(
    make_spawner, offline_client, monkeypatch
):
    spawner = make_spawner("alice")
    await spawner._run_apply_user_options({})
    spec = spawner.workspace_spec
    sub = Mount("data-ref", "volume", "team-data", "/data/ref", sub_path="hg38")
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_workspace_spec(dataclasses.replace(spec, mounts=(sub,)))
    assert e.value.status_code == 500 and "sub_path needs Docker 26" in e.value.log_message


def test_files_archive_is_the_users_and_private():
    files = (WorkspaceFile("data-credentials.ini", "[labspace-x]\naws_access_key_id = A\n"),)
    with tarfile.open(fileobj=io.BytesIO(files_archive(files, 1000, 100))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"run/labspace", "run/labspace/data-credentials.ini"}
        folder, file = members["run/labspace"], members["run/labspace/data-credentials.ini"]
        assert folder.isdir() and folder.mode == 0o700 and (folder.uid, folder.gid) == (1000, 100)
        assert file.isfile() and file.mode == 0o600 and (file.uid, file.gid) == (1000, 100)
        assert tar.extractfile(file).read().startswith(b"[labspace-x]")
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError, match="plain file name"):
            files_archive((WorkspaceFile(bad, "x"),), 1000, 100)


async def test_files_reach_the_created_container_before_it_starts(make_spawner, docker_objects):
    """Against the real daemon: the spawner puts the spec's files into a created
    container; the container's first command already finds them, 0600 and its
    user's, outside the home."""
    from docker_env import WORKSPACE_IMAGE

    spawner = make_spawner("files-test")
    spawner.workspace_spec = WorkspaceSpec(
        profile="default",
        display_name="Standard",
        image=WORKSPACE_IMAGE,
        files=(WorkspaceFile("data-credentials.ini", "[labspace-s]\naws_access_key_id = AK\n"),),
    )
    name = f"labspace-test-files-{secrets.token_hex(3)}"
    docker_objects.containers.add(name)
    api = spawner.client
    script = "stat -c '%a %u %n' /run/labspace /run/labspace/*; cat /run/labspace/*; id -u"
    created = api.create_container(
        WORKSPACE_IMAGE,
        entrypoint=["sh", "-c"],
        command=[script],
        user="1000:100",
        name=name,
        host_config=api.create_host_config(network_mode="none"),
    )
    spawner.object_id = created["Id"]
    try:
        await spawner.start_object()
        assert api.wait(created["Id"], timeout=60)["StatusCode"] == 0
        out = api.logs(created["Id"]).decode().splitlines()
    finally:
        api.remove_container(created["Id"], force=True)
    assert out == [
        "700 1000 /run/labspace",
        "600 1000 /run/labspace/data-credentials.ini",
        "[labspace-s]",
        "aws_access_key_id = AK",
        "1000",
    ]
