"""Static checks of the Helm chart (helm/labspace) with the real helm binary.

No Kubernetes API server can run on this machine, so nothing here installs the
chart: ``helm lint --strict`` and ``helm template`` run for each values file in
tests/fixtures/helm/ (defaults, sso-postgres, ingress-tls, minimal); every
rendered object is validated with kubernetes-validate's strict schemas for the
oldest Kubernetes Labspace supports and the newest the package ships, compared
with a golden render in tests/golden/helm/, and checked in Python (settings,
secrets, ports, probes, ingress, NOTES). Who may do and reach what (RBAC,
NetworkPolicies, security contexts, selectors) is tests/test_helm_access.py.
The rendered labspace.yaml must load with labspace.settings.load, with the
secret settings the hub gets from the Secret as environment.

Generated secrets differ in each render (``lookup`` finds no cluster under
``helm template``): the golden files hold ``<generated>`` instead. That they are
kept across ``helm upgrade`` (the ``lookup`` branch) needs a cluster and is not
checked here. After a deliberate change, regenerate and review the diff:

    LABSPACE_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_helm_chart.py
"""

from __future__ import annotations

import copy
import hashlib
import re

import manifests
import pytest
import yaml

import helm
from helm import policy, tcp
from helm import rule_ports as ports
from labspace import settings as labspace_settings

GOLDEN = manifests.GOLDEN / "helm"
GENERATED = ("proxy.token", "hub.cookie-secret", "hub.crypt-key")
NS = helm.NAMESPACE

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (the hub binds in its pod)


pytestmark = pytest.mark.usefixtures("helm_binary")


# -- helm itself ---------------------------------------------------------------


@pytest.mark.parametrize("name", helm.VALUES)
def test_lint_strict(name):
    out = helm.run_helm(
        "lint", "--strict", str(helm.CHART), "--values", str(helm.values_path(name))
    )
    assert out.returncode == 0, out.stdout + out.stderr


def normalised(objects):
    """Generated secrets and the proxy token's hash are new in each render."""
    out = copy.deepcopy(objects)
    for o in out:
        if o["kind"] == "Secret":
            for key in GENERATED:
                o["data"][key] = "<generated>"
        if o["kind"] == "Deployment":
            annotations = o["spec"]["template"]["metadata"].get("annotations", {})
            if "checksum/proxy-token" in annotations:
                annotations["checksum/proxy-token"] = "<generated>"
    return out


def test_golden(chart_rendered):
    name, objects = chart_rendered
    text = yaml.safe_dump_all(normalised(objects), sort_keys=True, default_flow_style=False)
    manifests.check_golden_file(GOLDEN / f"{name}.yaml", text)


def test_valid_for_kubernetes(chart_rendered):
    name, objects = chart_rendered
    for o in objects:
        manifests.assert_valid(o, where=f"{name}: ")


def test_app_version_is_labspace_version(chart_defaults):
    """Chart.yaml's appVersion is Labspace's version: the hub image's default tag."""
    import labspace

    chart = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == labspace.__version__, "update appVersion in Chart.yaml"
    assert (
        helm.container(chart_defaults, "labspace-hub")["image"]
        == f"labspace/hub:{labspace.__version__}"
    )


def test_defaults_render_the_whole_platform(chart_defaults):
    have = sorted((o["kind"], o["metadata"]["name"]) for o in chart_defaults)
    assert have == sorted(
        [
            ("ConfigMap", "labspace-config"),
            ("Deployment", "labspace-hub"),
            ("Deployment", "labspace-proxy"),
            ("NetworkPolicy", "labspace-hub"),
            ("NetworkPolicy", "labspace-proxy"),
            ("NetworkPolicy", "labspace-workspaces"),
            ("PersistentVolumeClaim", "labspace-hub-data"),
            ("PodDisruptionBudget", "labspace-hub"),
            ("PodDisruptionBudget", "labspace-proxy"),
            ("Role", "labspace-hub"),
            ("RoleBinding", "labspace-hub"),
            ("Secret", "labspace-secret"),
            ("Service", "labspace-hub"),
            ("Service", "labspace-proxy-api"),
            ("Service", "labspace-proxy-public"),
            ("ServiceAccount", "labspace-hub"),
        ]
    )


# -- the hub's settings and secrets --------------------------------------------


def test_settings_load(chart_rendered, tmp_path):
    """labspace.yaml from the ConfigMap is valid, with the secret environment."""
    name, objects = chart_rendered
    path = tmp_path / "labspace.yaml"
    path.write_text(helm.settings_text(objects))
    env = helm.container_env(objects, "labspace-hub")
    loaded = labspace_settings.load(path, environ=env)
    assert loaded.get("data_dir") == "/srv/labspace/data"
    assert loaded.get("hub.hub_ip") == ANY_ADDRESS
    assert loaded.get("hub.connect_host") == "labspace-hub"
    assert loaded.get("hub.proxy_api_url") == "http://labspace-proxy-api:8001"
    base = loaded.get("hub.base_url")
    assert loaded.local_url() == f"http://labspace-proxy-public:8000{base}"  # the catalog's way
    assert loaded.get("backend.type") == "kubernetes"
    assert loaded.get("backend.kubernetes.namespace") == NS
    assert loaded.get("hub.cleanup_servers") is False


def test_hub_config_from_the_chart_reaches_its_services(tmp_path):
    """The hub configuration Labspace builds from the rendered settings and
    environment (labspace.hubconfig.build) points the proxy and workspaces at
    the hub Service, each managed service at a port that Service and the
    proxy's NetworkPolicy open, and uses the proxy Deployment's API.
    data_dir is moved to a temporary folder (the chart's is the pod's volume)."""
    from labspace.hubconfig import build
    from labspace.state import State

    objects = helm.render("defaults")
    path = tmp_path / "labspace.yaml"
    path.write_text(yaml.safe_dump({**helm.settings(objects), "data_dir": str(tmp_path / "data")}))
    env = helm.container_env(objects, "labspace-hub")
    loaded = labspace_settings.load(path, environ=env)
    config = build(loaded, State(loaded, environ=env), ["configurable-http-proxy"])
    assert config["JupyterHub"]["hub_ip"] == ANY_ADDRESS
    assert config["JupyterHub"]["hub_connect_url"] == "http://labspace-hub:8081"
    proxy = config["ConfigurableHTTPProxy"]
    assert proxy["should_start"] is False
    assert proxy["api_url"] == "http://labspace-proxy-api:8001"
    service_ports = {
        p["port"] for p in helm.find(objects, "Service", "labspace-hub")["spec"]["ports"]
    }
    (to_hub, *_) = policy(objects, "labspace-proxy")["egress"]
    urls = {s["name"]: s["url"] for s in config["JupyterHub"]["services"] if s.get("url")}
    assert set(urls) == {"accounting", "catalog", "data"}
    for name, url in urls.items():
        host, port = url.removeprefix("http://").split(":")
        assert host == "labspace-hub", name
        assert int(port) in service_ports, name
        assert (int(port), "TCP") in ports(to_hub), name
    # the hub's own calls to the services (its spawn hooks) stay in its pod: no
    # hop back through its own Service, which some network plugins refuse
    hooks = {
        getattr(hook, "__self__", hook)
        for trait in config["LabspaceSpawnerMixin"].values()
        if isinstance(trait, list)
        for hook in trait
    }
    called = {h.caller.base_url for h in hooks if hasattr(h, "caller")}
    called |= {h.base_url for h in hooks if hasattr(h, "base_url")}
    assert {url.split(":")[2].split("/")[0] for url in called} == {
        url.split(":")[2] for url in urls.values()
    }
    assert all(url.startswith("http://127.0.0.1:") for url in called), called


def test_no_secret_value_in_the_configmap(chart_rendered):
    name, objects = chart_rendered
    config = helm.settings(objects)
    for path in labspace_settings.secret_paths():
        section, key = path.split(".")
        assert key not in (config.get(section) or {}), f"{name}: {path} in the ConfigMap"
    text = yaml.safe_dump([o for o in objects if o["kind"] == "ConfigMap"])
    for key, value in helm.secret_values(objects).items():
        assert value not in text, f"{name}: the value of {key} is in a ConfigMap"


def test_secret_settings_move_to_the_secret():
    """Every secret key of the settings schema (labspace.settings.secret_paths)
    goes to the Secret, under its name, and to the hub as LABSPACE_<KEY>."""
    paths = labspace_settings.secret_paths()
    given = {f"labspace.{p}": f"value-of-{p.replace('.', '-')}-0123456789abcdef" for p in paths}
    objects = helm.render("defaults", **given)
    secret = helm.secret_values(objects)
    env = helm.container_env(objects, "labspace-hub")
    for path in paths:
        value = given[f"labspace.{path}"]
        assert secret[path] == value
        assert env[labspace_settings.env_name(path)] == value
    assert sorted(set(secret) - set(GENERATED)) == sorted(paths)
    assert "value-of" not in helm.settings_text(objects)


def test_sso_postgres_settings_come_from_secrets():
    objects = helm.render("sso-postgres")
    fixture = yaml.safe_load(helm.values_path("sso-postgres").read_text())["labspace"]
    env = helm.container_env(objects, "labspace-hub")
    assert env["LABSPACE_AUTH_CLIENT_SECRET"] == fixture["auth"]["client_secret"]
    assert env["LABSPACE_HUB_DB_URL"] == fixture["hub"]["db_url"]
    assert env["LABSPACE_ACCOUNTING_DB_URL"] == fixture["accounting"]["db_url"]
    assert env["LABSPACE_CATALOG_DB_URL"] == fixture["catalog"]["db_url"]
    hub = helm.container(objects, "labspace-hub")
    assert hub["envFrom"] == [{"secretRef": {"name": "labspace-external"}}]
    assert "password-fixture" not in helm.settings_text(objects)


def test_generated_secrets():
    """Proxy token, cookie secret and auth-state key are generated when the
    release has no Secret yet (``lookup`` is empty under ``helm template``):
    two renders give two different values."""
    first = helm.secret_values(helm.render("defaults"))
    second = helm.secret_values(helm.render_fresh("defaults"))
    assert re.fullmatch(r"[A-Za-z0-9]{64}", first["proxy.token"])
    assert re.fullmatch(r"[0-9a-f]{64}", first["hub.cookie-secret"])
    assert re.fullmatch(r"[0-9a-f]{64}", first["hub.crypt-key"])
    for key in GENERATED:
        assert first[key] != second[key], key
    assert len({first[key] for key in GENERATED}) == 3


def test_generated_secrets_are_kept_on_upgrade():
    """`helm upgrade` keeps the generated secrets: rendered with
    ``--dry-run=server`` against a stand-in for the Kubernetes API server
    (``helm.FakeKubeAPI``, a mock: no API server can run here) that holds the
    Secret a first install made, the chart's ``lookup`` finds it and the new
    render has the same values (and the proxy's checksum is the kept token's:
    no restart of the proxy on an upgrade)."""
    first = helm.render_fresh("defaults")
    secret = helm.find(first, "Secret", "labspace-secret")
    release = {"meta.helm.sh/release-name": helm.RELEASE, "meta.helm.sh/release-namespace": NS}
    secret["metadata"].update(namespace=NS, annotations=release)  # as helm install leaves it
    with helm.FakeKubeAPI([secret]) as api:
        out = helm.template("defaults", *api.args)
    assert out.returncode == 0, out.stderr
    upgrade = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    before, after = helm.secret_values(first), helm.secret_values(upgrade)
    for key in GENERATED:
        assert after[key] == before[key], key
    proxy = helm.find(upgrade, "Deployment", "labspace-proxy")["spec"]["template"]
    token_hash = hashlib.sha256(before["proxy.token"].encode()).hexdigest()
    assert proxy["metadata"]["annotations"]["checksum/proxy-token"] == token_hash[:4]
    assert f"GET /api/v1/namespaces/{NS}/secrets/labspace-secret" in api.requests
    assert all(r.startswith("GET ") for r in api.requests), "helm wrote to the cluster"


def test_hub_and_proxy_share_the_proxy_token(chart_defaults):
    hub = helm.container_env(chart_defaults, "labspace-hub")
    proxy = helm.container_env(chart_defaults, "labspace-proxy")
    secret = helm.secret_values(chart_defaults)
    assert hub["CONFIGPROXY_AUTH_TOKEN"] == proxy["CONFIGPROXY_AUTH_TOKEN"] == secret["proxy.token"]
    assert hub["JPY_COOKIE_SECRET"] == secret["hub.cookie-secret"]
    assert hub["JUPYTERHUB_CRYPT_KEY"] == secret["hub.crypt-key"]
    assert set(proxy) == {"CONFIGPROXY_AUTH_TOKEN"}


def test_labspace_values_win_over_the_chart_defaults():
    objects = helm.render(
        "defaults",
        **{"labspace.backend.type": "docker", "labspace.hub.cleanup_servers": True},
    )
    config = helm.settings(objects)
    assert config["backend"] == {"type": "docker"}
    assert config["hub"]["cleanup_servers"] is True
    assert config["hub"]["hub_ip"] == ANY_ADDRESS
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Role", "labspace-hub") not in kinds
    assert ("NetworkPolicy", "labspace-workspaces") not in kinds


REFUSED = [
    ("data_dir", "/elsewhere", "labspace.data_dir: set by the chart"),
    ("hub.hub_ip", "127.0.0.1", "labspace.hub.hub_ip: set by the chart"),
    ("hub.connect_host", "hub.example.org", "labspace.hub.connect_host: set by the chart"),
    ("hub.proxy_api_url", "http://proxy:8001", "labspace.hub.proxy_api_url: set by the chart"),
    ("hub.proxy_url", "http://proxy:8000", "labspace.hub.proxy_url: set by the chart"),
    ("hub.tls.type", "acme", "labspace.hub.tls: Caddy's HTTPS is for one machine"),
    (
        "hub.proxy_command[0]",
        "/bin/chp",
        "labspace.hub.proxy_command: the chart runs the proxy",
    ),
]


@pytest.mark.parametrize(("key", "value", "says"), REFUSED, ids=[c[0] for c in REFUSED])
def test_keys_the_chart_cannot_take_are_refused(key, value, says):
    """Keys the chart sets, and one machine's keys the hub would refuse beside
    a proxy run apart, stop `helm install` with the key and what to do."""
    out = helm.template("defaults", **{f"labspace.{key}": value})
    assert out.returncode != 0
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("Error:")]
    assert says in line and "leave" in line, line


def test_proxy_ports_follow_the_settings():
    """hub.port / hub.proxy_api_port are the proxy pod's ports (the docker e2e
    picks free ones)."""
    objects = helm.render(
        "defaults", **{"labspace.hub.port": 9000, "labspace.hub.proxy_api_port": 9001}
    )
    chp = helm.container(objects, "labspace-proxy")
    assert "--port=9000" in chp["args"] and "--api-port=9001" in chp["args"]
    assert {p["name"]: p["containerPort"] for p in chp["ports"]} == {"http": 9000, "api": 9001}
    api = helm.find(objects, "Service", "labspace-proxy-api")["spec"]["ports"]
    public = helm.find(objects, "Service", "labspace-proxy-public")["spec"]["ports"]
    assert [p["port"] for p in api] == [9001] and [p["port"] for p in public] == [9000]
    hub_settings = helm.settings(objects)["hub"]
    assert hub_settings["proxy_api_url"] == "http://labspace-proxy-api:9001"
    assert hub_settings["proxy_url"] == "http://labspace-proxy-public:9000"
    (public_rule, api_rule) = policy(objects, "labspace-proxy")["ingress"]
    assert ports(public_rule) == tcp(9000) and ports(api_rule) == tcp(9001)


# -- what runs -----------------------------------------------------------------


def test_hub_container(chart_defaults):
    hub = helm.container(chart_defaults, "labspace-hub")
    assert hub["command"] == ["tini", "--"]
    assert hub["args"] == ["labspace", "up", "--config", "/etc/labspace/labspace.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in hub["volumeMounts"]}
    assert mounts == {"config": "/etc/labspace", "data": "/srv/labspace/data"}
    deployment = helm.find(chart_defaults, "Deployment", "labspace-hub")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "labspace-config"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "labspace-hub-data"


def test_proxy_container(chart_defaults):
    chp = helm.container(chart_defaults, "labspace-proxy")
    assert chp["command"] == ["configurable-http-proxy"]
    assert chp["args"] == [
        "--ip=0.0.0.0",
        "--port=8000",
        "--api-ip=0.0.0.0",
        "--api-port=8001",
        "--default-target=http://labspace-hub:8081",
        "--error-target=http://labspace-hub:8081/hub/error",
    ]
    spec = helm.find(chart_defaults, "Deployment", "labspace-proxy")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("defaults", {"hub": 8081, "accounting": 8010, "catalog": 8011, "data": 8012}),
        ("minimal", {"hub": 8081}),
    ],
)
def test_hub_service_ports(name, expected):
    objects = helm.render(name)
    service = helm.find(objects, "Service", "labspace-hub")["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == expected
    hub = helm.container(objects, "labspace-hub")
    assert {p["name"]: p["containerPort"] for p in hub["ports"]} == expected
    api = helm.find(objects, "Service", "labspace-proxy-api")["spec"]
    assert [(p["port"], p["targetPort"]) for p in api["ports"]] == [(8001, "api")]
    public = helm.find(objects, "Service", "labspace-proxy-public")["spec"]
    assert [(p["port"], p["targetPort"]) for p in public["ports"]] == [(8000, "http")]
    assert public["type"] == "ClusterIP"


@pytest.mark.parametrize(
    ("name", "path"), [("defaults", "/hub/health"), ("ingress-tls", "/jupyter/hub/health")]
)
def test_probes(name, path):
    objects = helm.render(name)
    hub = helm.container(objects, "labspace-hub")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert hub[probe]["httpGet"] == {"path": path, "port": "hub"}, probe
    chp = helm.container(objects, "labspace-proxy")
    for probe in ("livenessProbe", "readinessProbe"):
        assert chp[probe]["httpGet"] == {"path": "/_chp_healthz", "port": "http"}, probe


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("defaults", "port-forward service/labspace-proxy-public 8000:8000"),
        ("ingress-tls", "Open: https://hub.example.org/jupyter/"),
    ],
)
def test_notes(name, says):
    """NOTES.txt, as `helm install` prints it (--dry-run=client: no cluster)."""
    out = helm.run_helm(
        "install",
        "--dry-run=client",
        helm.RELEASE,
        str(helm.CHART),
        "--namespace",
        NS,
        "--values",
        str(helm.values_path(name)),
    )
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert says in notes
    assert "kubectl -n labspace rollout status deployment/labspace-hub" in notes


def test_ingress_tls():
    objects = helm.render("ingress-tls")
    ingress = helm.find(objects, "Ingress", "labspace")
    spec = ingress["spec"]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["hub.example.org"], "secretName": "labspace-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "hub.example.org"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/jupyter/"
    assert path["backend"] == {
        "service": {"name": "labspace-proxy-public", "port": {"name": "http"}}
    }
    assert helm.settings(objects)["hub"]["public_url"] == "https://hub.example.org/jupyter/"
