"""Golden tests of the kubernetes backend: the pods and home claims it asks for.

A real Kubernetes API server cannot run on this machine, so these tests
construct the real ``LabspaceKubeSpawner`` (KubeSpawner underneath) the way
JupyterHub does — a user, its server record, the hub, the config — apply a
profile through the public path (``_run_apply_user_options``, what
``User.spawn`` calls), and call KubeSpawner's real ``get_pod_manifest()`` and
``get_pvc_manifest()``, without talking to a cluster. No ``_mock=True``.

The hub and the config are the ones the Helm chart's hub pod would run: the
chart is rendered with the real ``helm`` (``tests/helm.py``; the test settings
under ``labspace:``), its ConfigMap's labspace.yaml is loaded with the hub
container's environment and mapped by ``hubconfig.build``, and the ``Hub`` is
what JupyterHub's ``init_hub`` makes of that (``tests/offline.py``). So
``JUPYTERHUB_API_URL`` in the golden pods is the hub Service's, as on a cluster.
Without helm these tests skip (under CI=true they fail).

KubeSpawner's constructor always loads a kube config and makes an API client,
so the ``offline_kube`` fixture points it at a throwaway kubeconfig for a server
address nothing listens on (``https://127.0.0.1:9``). Building manifests sends
no request; nothing here could reach a cluster if one were configured.

Manifests are serialised with the Kubernetes client's
``sanitize_for_serialization``, stored as YAML under ``tests/golden/kube/``, and
validated with kubernetes-validate's strict schemas (no unknown fields) for the
oldest Kubernetes Labspace supports and the newest the package ships. After a
deliberate change, regenerate the golden files and review the diff:

    LABSPACE_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_kube.py
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any
from urllib.parse import urlsplit

import kubernetes_asyncio.config.kube_config as kube_config
import pytest
import yaml
from kubernetes_asyncio.client import Configuration
from kubespawner import clients
from manifests import GOLDEN as GOLDEN_ROOT
from manifests import assert_valid, check_golden_file
from offline import build_spawner, chart_hub_config, settings_from
from tornado import web
from traitlets.config import Config

from labspace import hubconfig
from labspace.profiles import Mount, WorkspaceSpec
from labspace.settings import with_defaults
from labspace.spawners import kube
from labspace.spawners.kube import LabspaceKubeSpawner

GOLDEN = GOLDEN_ROOT / "kube"
VERSION_ANNOTATIONS = (
    "hub.jupyter.org/jupyterhub-version",
    "hub.jupyter.org/kubespawner-version",
)

OFFLINE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: offline
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: nobody
  user: {token: not-a-real-token}
contexts:
- name: offline
  context: {cluster: offline, user: nobody}
current-context: offline
"""

# labspace.yaml of the tests (schema-checked in `settings`)
SETTINGS = """
backend:
  type: kubernetes
  image: labspace/workspace:2025.1
  env: {LABSPACE_SITE: test}
  kubernetes:
    storage_class: fast-ssd
    home_size: 20G
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
    env: {CUDA_CACHE_PATH: /tmp/cuda}
    node_selector: {nvidia.com/gpu.present: "true"}
    tolerations:
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  - slug: data
    display_name: Shared data
    mounts:
      - {name: reference, type: pvc, source: reference-data, target: /data/reference}
      - {name: scratch, type: nfs, source: "files.example.org:/exports/scratch",
         target: /data/scratch, read_only: false}
      - {name: models, type: host, source: /srv/models, target: /data/models}
"""


@pytest.fixture
def offline_kube(tmp_path, monkeypatch):
    """KubeSpawner's client setup pointed at a kubeconfig for an address nothing serves."""
    path = tmp_path / "kubeconfig"
    path.write_text(OFFLINE_KUBECONFIG)
    # read once, at import, from $KUBECONFIG: too early for a fixture to set the variable
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # no in-cluster config
    saved = Configuration.get_default_copy()  # load_config replaces the global default
    clients.load_config.cache_clear()
    yield path
    clients.load_config.cache_clear()
    Configuration.set_default(saved)


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_from(SETTINGS)


# the hub services' spawner hooks call their services over HTTP (tested with each
# service): the chart renders of these tests turn them off, or drop the hooks
SERVICES_OFF = {name: {"enabled": False} for name in ("accounting", "catalog", "data")}
SERVICE_HOOKS = ("before_start", "after_stop", "check_options", "form_parts")


def need_helm(need) -> None:
    import helm

    problem = helm.helm_problem()
    need("helm", problem is None, problem or "")


@pytest.fixture(scope="module")
def chart(need, tmp_path_factory):
    """The chart rendered with SETTINGS under ``labspace:`` (services off), and
    what the hub pod makes of it: ``(settings, hub traitlets values)``."""
    import helm

    need_helm(need)
    folder = tmp_path_factory.mktemp("chart")
    values = folder / "values.yaml"
    values.write_text(yaml.safe_dump({"labspace": {**yaml.safe_load(SETTINGS), **SERVICES_OFF}}))
    return chart_hub_config(helm.render(values), folder)


def hub_config(built: dict[str, dict[str, Any]]) -> Config:
    config = Config()
    hubconfig.apply(config, built)
    return config


@pytest.fixture
def make_spawner(offline_kube, chart):
    """Build spawners as ``User._new_spawner`` does, with the chart's hub config:
    ``make_spawner("alice", "dash")``; ``values`` replaces the chart's settings,
    keywords are ``KubeSpawner`` config (as ``hub.config`` would set them)."""
    chart_settings, built = chart

    def make(name: str, server_name: str = "", values: dict | None = None, **kube_traits):
        config = hub_config(built)
        for trait, value in kube_traits.items():
            setattr(config.KubeSpawner, trait, value)
        values = values or chart_settings.values
        return build_spawner(LabspaceKubeSpawner, name, server_name, values, config)

    return make


async def manifests(spawner, options: dict[str, Any]) -> dict[str, Any]:
    """Pod and claim for ``options``, as plain data (version annotations blanked)."""
    spawner.user_options = options
    await spawner._run_apply_user_options(options)
    await spawner.load_user_options()  # KubeSpawner's start calls it: must not refuse
    client = spawner.api.api_client
    out = {
        "pod": client.sanitize_for_serialization(await spawner.get_pod_manifest()),
        "pvc": client.sanitize_for_serialization(spawner.get_pvc_manifest()),
    }
    for manifest in out.values():
        annotations = manifest["metadata"]["annotations"]
        for key in VERSION_ANNOTATIONS:
            annotations[key] = "<version>"
    return out


def check_golden(name: str, data: Any) -> None:
    text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
    check_golden_file(GOLDEN / f"{name}.yaml", text)


def assert_locked_down(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    (container,) = spec["containers"]
    psc, csc = spec["securityContext"], container["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["fsGroup"] == 100
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["runAsNonRoot"] is True
    assert csc["runAsUser"] == 1000
    assert csc["runAsGroup"] == 100
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in csc
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


# -- the chart's settings ----------------------------------------------------------


def test_the_chart_passes_the_settings_through(chart):
    """The chart's labspace.yaml is the operator's, plus what it sets for the pod:
    data_dir on its volume, the hub on the pod's address behind its Service, the
    proxy in its own Deployment, the release's namespace."""
    chart_settings, _ = chart
    got = copy.deepcopy(chart_settings.values)
    got.pop("data_dir")
    hub, namespace = got["hub"], got["backend"]["kubernetes"].pop("namespace")
    assert namespace == "labspace"
    forced = ("hub_ip", "connect_host", "proxy_api_url", "proxy_url")
    assert {k: hub.pop(k) for k in forced} == {
        "hub_ip": "0.0.0.0",  # noqa: S104 (the pod's every address)
        "connect_host": "labspace-hub",
        "proxy_api_url": "http://labspace-proxy-api:8001",
        "proxy_url": "http://labspace-proxy-public:8000",  # the catalog's way to workspaces
    }
    assert hub.pop("cleanup_servers") is False  # a hub restart keeps the workspaces
    expected = with_defaults({**yaml.safe_load(SETTINGS), **SERVICES_OFF})
    expected.pop("data_dir")
    expected["backend"]["kubernetes"].pop("namespace")
    for key in ("hub_ip", "connect_host", "proxy_api_url", "proxy_url", "cleanup_servers"):
        expected["hub"].pop(key)
    assert got == expected


async def test_workspaces_reach_the_hub_service(need, offline_kube, tmp_path):
    """The chart's defaults (tests/fixtures/helm/defaults.yaml, services on): a
    workspace pod's hub URLs are the hub's Service, never the hub pod's loopback,
    and the proxy reaches every service through a port that Service exposes."""
    import helm

    need_helm(need)
    objects = helm.render("defaults")
    settings, built = chart_hub_config(objects, tmp_path)
    assert built["JupyterHub"]["hub_ip"] == "0.0.0.0"  # noqa: S104
    assert built["ConfigurableHTTPProxy"]["should_start"] is False
    hub_service = helm.find(objects, "Service", "labspace-hub")
    exposed = {p["port"] for p in hub_service["spec"]["ports"]}
    urls = [urlsplit(s["url"]) for s in built["JupyterHub"]["services"] if "url" in s]
    assert {(u.hostname, u.port in exposed) for u in urls} == {("labspace-hub", True)}
    # the catalog reaches workspaces through the proxy's public Service, on its port
    assert settings.local_url() == "http://labspace-proxy-public:8000/"
    proxy_public = helm.find(objects, "Service", "labspace-proxy-public")
    assert 8000 in {p["port"] for p in proxy_public["spec"]["ports"]}
    config = hub_config(built)
    for hook in SERVICE_HOOKS:
        config.LabspaceSpawnerMixin.pop(hook)
    spawner = build_spawner(LabspaceKubeSpawner, "alice", "", settings.values, config)
    assert spawner.namespace == "labspace"
    pod = (await manifests(spawner, {}))["pod"]
    env = env_of(pod)
    assert env["JUPYTERHUB_API_URL"] == "http://labspace-hub:8081/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"] == (
        "http://labspace-hub:8081/hub/api/users/alice/activity"
    )
    assert "127.0.0.1" not in json.dumps(env)
    # the workspace runs its user's code: none of the chart's secrets (proxy
    # token, cookie secret, auth-state key) nor a service's token is in its pod
    kept = [*helm.secret_values(objects).values()]
    kept += [s["api_token"] for s in built["JupyterHub"]["services"] if s.get("api_token")]
    assert len(kept) >= 6 and all(len(value) >= 32 for value in kept)
    assert not [value for value in kept if value in json.dumps(pod)]
    assert_valid(pod)


# -- golden manifests -----------------------------------------------------------


CASES = [
    pytest.param({}, "default", id="default"),
    pytest.param({"profile": "gpu"}, "gpu", id="gpu"),
    pytest.param({"profile": "data"}, "mounts", id="mounts"),
]


@pytest.mark.parametrize(("options", "golden"), CASES)
async def test_manifests_match_golden_and_validate(make_spawner, options, golden):
    out = await manifests(make_spawner("alice"), options)
    check_golden(golden, out)
    assert_valid(out["pod"])
    assert_valid(out["pvc"])
    assert_locked_down(out["pod"])


async def test_default_profile_resources_home_and_labels(make_spawner):
    spawner = make_spawner("alice")
    pod, pvc = (await manifests(spawner, {})).values()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "labspace/workspace:2025.1"
    assert container["resources"] == {
        "requests": {"cpu": 0.5, "memory": 1024**3},
        "limits": {"cpu": 2.0, "memory": 4 * 1024**3},
    }
    assert {"name": "home", "mountPath": "/home/jovyan"} in container["volumeMounts"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}} in pod["spec"][
        "volumes"
    ]
    assert pvc["metadata"]["name"] == "home-alice"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["resources"]["requests"] == {"storage": "20Gi"}
    assert spawner.storage_pvc_ensure is True
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "labspace"
    assert labels["component"] == labels["app.kubernetes.io/component"] == "workspace"
    assert labels["labspace/profile"] == "default"
    env = env_of(pod)
    assert env["LABSPACE_PROFILE"] == "default"
    assert env["LABSPACE_SITE"] == "test"
    assert container["args"][0] == "jupyterhub-singleuser"


async def test_gpu_profile_asks_for_gpu_node_and_image(make_spawner):
    pod = (await manifests(make_spawner("alice"), {"profile": "gpu"}))["pod"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["image"] == "labspace/workspace-cuda:2025.1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


async def test_next_start_with_another_profile_keeps_nothing_of_the_last(make_spawner):
    """JupyterHub keeps one spawner per server across starts."""
    spawner = make_spawner("alice")
    await manifests(spawner, {"profile": "gpu"})
    pod = (await manifests(spawner, {"profile": "data"}))["pod"]
    (container,) = pod["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "nodeSelector" not in pod["spec"]
    assert "tolerations" not in pod["spec"]
    assert len(pod["spec"]["volumes"]) == 4  # home + 3 mounts, once each
    pod = (await manifests(spawner, {}))["pod"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["home"]


async def test_configured_volumes_and_tolerations_are_kept(make_spawner):
    """What ``hub.config`` sets is the base every profile adds to."""
    spawner = make_spawner(
        "alice",
        volumes={"b": {"name": "b", "emptyDir": {}}, "a": {"name": "a", "emptyDir": {}}},
        tolerations=[{"key": "site", "operator": "Exists"}],
    )
    for _ in range(2):
        pod = (await manifests(spawner, {"profile": "gpu"}))["pod"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["a", "b", "home"]
    assert [t["key"] for t in pod["spec"]["tolerations"]] == ["site", "nvidia.com/gpu"]


async def test_mount_source_may_name_the_user(make_spawner):
    """KubeSpawner fills its template fields in volumes, as the how-to says."""
    values = settings_from(SETTINGS)
    values["profiles"][2]["mounts"][1]["source"] = "files.example.org:/exports/home/{username}"
    pod = (await manifests(make_spawner("Ada.L@x.org", values=values), {"profile": "data"}))["pod"]
    (nfs,) = [v["nfs"] for v in pod["spec"]["volumes"] if "nfs" in v]
    assert nfs["path"] == "/exports/home/ada-l-x-org---14a68748"


# -- names ------------------------------------------------------------------------


async def test_user_server_names_never_collide(make_spawner):
    """``user-has`` + server ``dash`` vs user ``user-has-dash`` (escaping hazard)."""
    servers = [("user-has", ""), ("user-has", "dash"), ("user-has-dash", ""), ("Ada.L@x.org", "")]
    names = {}
    for user, server in servers:
        spawner = make_spawner(user, server)
        out = await manifests(spawner, {})
        names[f"{user}:{server}"] = {
            "pod": out["pod"]["metadata"]["name"],
            "pvc": out["pvc"]["metadata"]["name"],
            "home": out["pod"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "labels": {k: v for k, v in out["pod"]["metadata"]["labels"].items() if "hub." in k},
        }
        assert_valid(out["pod"])
        assert_valid(out["pvc"])
    check_golden("names", names)
    pods = [n["pod"] for n in names.values()]
    assert len(set(pods)) == len(pods)
    assert names["user-has:dash"]["pod"] != names["user-has-dash:"]["pod"]
    # one home per user, shared by the user's servers
    assert names["user-has:dash"]["pvc"] == names["user-has:"]["pvc"] == "home-user-has"
    assert names["user-has-dash:"]["pvc"] == "home-user-has-dash"
    assert len({n["pvc"] for n in names.values()}) == 3


# -- settings -----------------------------------------------------------------------


async def test_namespace_and_service_account_from_settings(make_spawner):
    values = settings_from(
        "backend:\n  type: kubernetes\n  kubernetes:\n"
        "    namespace: labspace-users\n    service_account: workspace\n"
        "    storage_class: ''\n    uid: 2000\n    fs_gid: 2000\n"
    )
    spawner = make_spawner("alice", values=values)
    assert spawner.namespace == "labspace-users"
    pod, pvc = (await manifests(spawner, {})).values()
    assert pod["spec"]["serviceAccountName"] == "workspace"
    assert "automountServiceAccountToken" not in pod["spec"]  # the account's own choice
    assert pod["spec"]["securityContext"]["fsGroup"] == 2000
    assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] == 2000
    assert pod["spec"]["containers"][0]["image"] == "labspace/workspace:latest"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    assert pvc["spec"]["resources"]["requests"] == {"storage": "10Gi"}
    assert_valid(pod)
    assert_valid(pvc)


async def test_hub_config_overrides_a_default(make_spawner):
    spawner = make_spawner("alice", storage_capacity="1Ti", component_label="lab")
    pod, pvc = (await manifests(spawner, {})).values()
    assert pvc["spec"]["resources"]["requests"] == {"storage": "1Ti"}
    assert pod["metadata"]["labels"]["component"] == "lab"


async def test_refused_profile_is_a_400_before_any_manifest(make_spawner):
    spawner = make_spawner("alice")
    with pytest.raises(web.HTTPError) as e:
        await spawner._run_apply_user_options({"profile": "nope"})
    assert e.value.status_code == 400
    assert "No such profile: 'nope'" in e.value.log_message


# -- pure helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mount", "volume", "mounted"),
    [
        pytest.param(
            Mount("ref", "pvc", "ref-data", "/data/ref"),
            {"persistentVolumeClaim": {"claimName": "ref-data", "readOnly": True}},
            {"mountPath": "/data/ref", "readOnly": True},
            id="pvc",
        ),
        pytest.param(
            Mount("scratch", "nfs", "nfs.example.org:/exports/s", "/scratch", read_only=False),
            {"nfs": {"server": "nfs.example.org", "path": "/exports/s", "readOnly": False}},
            {"mountPath": "/scratch", "readOnly": False},
            id="nfs-rw",
        ),
        pytest.param(
            Mount("models", "host", "/srv/models", "/models"),
            {"hostPath": {"path": "/srv/models", "type": "Directory"}},
            {"mountPath": "/models", "readOnly": True},
            id="host",
        ),
        pytest.param(
            Mount("home", "pvc", "team-home", "/team"),
            {"persistentVolumeClaim": {"claimName": "team-home", "readOnly": True}},
            {"mountPath": "/team", "readOnly": True},
            id="named-home",
        ),
    ],
)
def test_volume_for_each_mount_type(mount, volume, mounted):
    name = f"mount-{mount.name}"
    assert kube.volumes_for([mount]) == [{"name": name, **volume}]
    assert kube.volume_mounts_for([mount]) == [{"name": name, **mounted}]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        pytest.param(
            Mount("v", "volume", "vol", "/v"),
            "'volume' mounts do not work on the kubernetes backend (use pvc, nfs or host)",
            id="docker-volume",
        ),
        pytest.param(
            Mount("n", "nfs", "/exports/only", "/n"),
            "nfs mount source '/exports/only' is not server:/export",
            id="nfs-no-server",
        ),
        pytest.param(
            Mount("n", "nfs", "server:exports", "/n"),
            "nfs mount source 'server:exports' is not server:/export",
            id="nfs-relative",
        ),
    ],
)
def test_bad_mount_is_named(mount, message):
    with pytest.raises(ValueError) as e:
        kube.volume_for(mount)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("size", "expected"),
    [("10G", "10Gi"), ("1.5G", "1.5Gi"), ("512M", "512Mi"), ("2T", "2Ti"), ("1000", "1000")],
)
def test_quantity_is_binary_like_memory(size, expected):
    assert kube.quantity(size) == expected


def test_gpu_resources():
    assert kube.gpu_resources(0) == {}
    assert kube.gpu_resources(2) == {"nvidia.com/gpu": "2"}


def test_only_allowed_images(settings):
    from labspace.profiles import ProfileError, check_image

    spec = WorkspaceSpec(profile="x", display_name="x", image="evil/miner:latest")
    with pytest.raises(ProfileError, match="'evil/miner:latest' of profile 'x' is not allowed"):
        check_image(spec, settings["profiles"], settings["backend"])
    spec = WorkspaceSpec(profile="x", display_name="x", image="labspace/workspace-cuda:2025.1")
    assert check_image(spec, settings["profiles"], settings["backend"]) == spec.image


async def test_bad_mount_refuses_start_with_500(make_spawner):
    values = settings_from(SETTINGS)
    values["profiles"][2]["mounts"][1]["source"] = "no-export-path"
    spawner = make_spawner("alice", values=values)
    with pytest.raises(web.HTTPError) as e:
        await spawner._run_apply_user_options({"profile": "data"})
    assert e.value.status_code == 500
    assert "ask an administrator" in e.value.log_message


# -- data grants ----------------------------------------------------------------------

# what the data service answers (POST api/internal/start) for a person in lab-a with
# the grants: reference genomes read-only (a claim's folder), the group's
# scratch writable (an NFS export's folder), a node folder read-only, an s3 prefix
DATA_ROOTS = ["/srv/datasets"]
DATA_ANSWER = [
    {"id": "genomes", "title": "Reference genomes", "kind": "pvc", "level": "read",
     "source": "reference-data", "sub_path": "genomes", "mount_path": "/data/genomes"},
    {"id": "lab-a-scratch", "title": "Lab A scratch", "kind": "nfs", "level": "write",
     "source": "files.example.org:/exports/labs", "sub_path": "lab-a/scratch",
     "mount_path": "/data/lab-a-scratch"},
    {"id": "atlas", "title": "Brain atlas", "kind": "host", "level": "read",
     "source": "/srv/datasets/atlas", "sub_path": "", "mount_path": "/data/atlas"},
    {"id": "survey", "title": "Survey", "kind": "s3", "level": "read", "source": "",
     "sub_path": "", "mount_path": "/data/survey",
     "s3": {"endpoint": "https://s3.example.org", "bucket": "lab-data", "prefix": "survey/",
            "region": ""},
     "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t-example"}},
]  # fmt: skip


async def data_manifests(spawner) -> dict[str, Any]:
    """Pod, claim and files Secret after the data hook's answer went through
    the mixin's before_start path (the hook replaces the spec, the backend
    applies it)."""
    from labspace.services.data.hubside import DataGrants

    hook = DataGrants("http://127.0.0.1:9/services/data/", "unused", roots=DATA_ROOTS,
                      backend="kubernetes")  # fmt: skip
    spawner.before_start = [lambda sp, spec: hook.grant(sp, spec, DATA_ANSWER)]
    spawner.user_options = {}
    await spawner._run_apply_user_options({})
    await spawner._run_before_start(spawner.workspace_spec)
    out = await manifests_now(spawner)
    out["secret"] = spawner.files_secret_manifest()
    return out


async def manifests_now(spawner) -> dict[str, Any]:
    client = spawner.api.api_client
    out = {"pod": client.sanitize_for_serialization(await spawner.get_pod_manifest())}
    for key in VERSION_ANNOTATIONS:
        out["pod"]["metadata"]["annotations"][key] = "<version>"
    return out


async def test_data_grants_golden_and_valid(make_spawner):
    spawner = make_spawner("alice")
    out = await data_manifests(spawner)
    check_golden("data-grants", out)
    assert_valid(out["pod"])
    assert_valid({**out["secret"], "metadata": {**out["secret"]["metadata"], "namespace": "x"}})
    assert_locked_down(out["pod"])
    spec = out["pod"]["spec"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["mount-data-genomes"] == {
        "name": "mount-data-genomes",
        "mountPath": "/data/genomes",
        "readOnly": True,
        "subPath": "genomes",
    }
    assert volumes["mount-data-genomes"]["persistentVolumeClaim"] == {
        "claimName": "reference-data",
        "readOnly": True,
    }
    assert mounts["mount-data-lab-a-scratch"]["readOnly"] is False
    assert mounts["mount-data-lab-a-scratch"]["subPath"] == "lab-a/scratch"
    assert volumes["mount-data-lab-a-scratch"]["nfs"] == {
        "server": "files.example.org",
        "path": "/exports/labs",
        "readOnly": False,
    }
    assert mounts["mount-data-atlas"]["readOnly"] is True
    assert volumes["mount-data-atlas"]["hostPath"]["path"] == "/srv/datasets/atlas"
    # the s3 credentials: a Secret volume outside the home, never in the pod's env
    assert mounts["labspace-files"] == {
        "name": "labspace-files",
        "mountPath": "/run/labspace",
        "readOnly": True,
    }
    assert volumes["labspace-files"]["secret"] == {
        "secretName": "jupyter-alice-files",
        "defaultMode": 0o440,
    }
    assert "mount-data-survey" not in volumes
    env = env_of(out["pod"])
    assert "s3cr3t-example" not in json.dumps(out["pod"])
    announced = json.loads(env["LABSPACE_DATASETS"])
    assert [(d["id"], d["level"]) for d in announced] == [
        ("genomes", "read"),
        ("lab-a-scratch", "write"),
        ("atlas", "read"),
        ("survey", "read"),
    ]
    assert announced[3]["credentials_file"] == "/run/labspace/data-credentials.ini"
    ini = base64.b64decode(out["secret"]["data"]["data-credentials.ini"]).decode()
    assert ini == (
        "[labspace-survey]\naws_access_key_id = AKIDEXAMPLE\n"
        "aws_secret_access_key = s3cr3t-example\n"
    )


async def test_data_grants_are_gone_at_the_next_start(make_spawner):
    """A grant revoked since the last start: the next start's pod has neither
    its volume nor the files Secret."""
    spawner = make_spawner("alice")
    await data_manifests(spawner)
    spawner.before_start = []
    await spawner._run_apply_user_options({})
    await spawner._run_before_start(spawner.workspace_spec)
    pod = (await manifests_now(spawner))["pod"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["home"]
    assert spawner.files_secret_manifest() is None


def test_long_mount_names_fit_a_volume_name():
    long = Mount("data-" + "a" * 63, "pvc", "claim", "/data/a")
    other = Mount("data-" + "a" * 62 + "b", "pvc", "claim", "/data/b")
    names = {kube.volume_name(long), kube.volume_name(other)}
    assert len(names) == 2 and all(len(n) <= 63 for n in names)
    assert kube.volume_name(Mount("data-genomes", "pvc", "c", "/d")) == "mount-data-genomes"


def test_sub_path_may_not_leave_the_source():
    for bad in ("../etc", "/etc", "a/../../b"):
        with pytest.raises(ValueError, match="leaves the source"):
            kube.volume_mounts_for([Mount("m", "pvc", "c", "/d", sub_path=bad)])


class SecretsAPI:
    """A stand-in for the Kubernetes API's Secret endpoints (no cluster can run
    here): what the spawner sends, and Kubernetes' answers (409 for a name that
    exists, 404 for one that does not)."""

    def __init__(self):
        self.secrets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def app(self):
        from tornado import web as tw

        api = self

        class Secrets(tw.RequestHandler):
            def status(self, code, reason):
                self.set_status(code)
                self.finish({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": reason, "code": code})  # fmt: skip

            def post(self, ns):
                body = json.loads(self.request.body)
                name = body["metadata"]["name"]
                api.calls.append(("create", f"{ns}/{name}"))
                if name in api.secrets:
                    return self.status(409, "AlreadyExists")
                api.secrets[name] = body
                self.set_status(201)
                self.finish(body)

            def put(self, ns, name):
                api.calls.append(("replace", f"{ns}/{name}"))
                api.secrets[name] = json.loads(self.request.body)
                self.finish(api.secrets[name])

            def delete(self, ns, name):
                api.calls.append(("delete", f"{ns}/{name}"))
                if api.secrets.pop(name, None) is None:
                    return self.status(404, "NotFound")
                self.finish({"kind": "Status", "apiVersion": "v1", "status": "Success"})

        base = r"/api/v1/namespaces/([^/]+)/secrets"
        return tw.Application([(base, Secrets), (base + r"/([^/]+)", Secrets)])


async def test_files_secret_is_written_before_the_pod_and_deleted_after(make_spawner):
    from harness import free_port

    api = SecretsAPI()
    port = free_port()
    server = api.app().listen(port, address="127.0.0.1")
    try:
        spawner = make_spawner("alice", k8s_api_host=f"http://127.0.0.1:{port}")
        spawner.namespace = "labspace-users"
        await data_manifests(spawner)
        await spawner.prepare_workspace()
        sent = api.secrets["jupyter-alice-files"]
        assert sent == spawner.files_secret_manifest()
        assert_valid({**sent, "metadata": {**sent["metadata"], "namespace": "labspace-users"}})
        await spawner.prepare_workspace()  # a start after one whose stop was missed
        await spawner.run_post_stop_hook()
        assert api.secrets == {}
        await spawner.run_post_stop_hook()  # nothing left: a 404 is fine
        assert api.calls == [
            ("create", "labspace-users/jupyter-alice-files"),
            ("create", "labspace-users/jupyter-alice-files"),
            ("replace", "labspace-users/jupyter-alice-files"),
            ("delete", "labspace-users/jupyter-alice-files"),
            ("delete", "labspace-users/jupyter-alice-files"),
        ]
        # a start without files sends nothing
        spawner.before_start = []
        await spawner._run_apply_user_options({})
        await spawner._run_before_start(spawner.workspace_spec)
        await spawner.prepare_workspace()
        assert len(api.calls) == 5
    finally:
        server.stop()
