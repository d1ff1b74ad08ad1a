"""The real ``helm`` binary and renders of the Labspace chart, for tests.

- ``helm_path()``: ``$HELM``, else ``helm`` on ``PATH``, else ``.venv/bin/helm``
  (``tests/provision.sh`` installs it there); ``None`` when none is found.
  ``helm_problem()`` says why helm cannot be used (for the ``need`` fixture).
- ``template(values_file, *args, **set)``: ``helm template labspace helm/labspace``
  in namespace ``labspace`` as a ``CompletedProcess`` (the output unparsed, the
  error message of a failure in ``stderr``).
- ``render(values_file, **set)``: the rendered objects as a list of dicts,
  cached per values file and ``--set`` pairs (each call gets its own copy).
  ``render_fresh`` runs helm again (new generated secrets).
  ``set`` keys are helm's dotted paths: ``render(f, **{"labspace.hub.port": 9000})``.
  Raises ``HelmError`` with helm's message when the chart does not render.
- ``find(objects, kind, name)``, ``settings_text(objects)``, ``settings(objects)``
  (the ConfigMap's labspace.yaml), ``secret_values(objects)`` (the Secret, decoded),
  ``container(objects, deployment)`` and ``container_env(objects, deployment)``
  (its env with ``secretKeyRef`` values resolved from the rendered Secret),
  ``pod_templates``, ``policy``, ``rule_peers``, ``rule_ports``, ``tcp`` (for
  checks of NetworkPolicies).

``helm template`` has no cluster: ``lookup`` returns nothing there, so every
generated secret is new in each render. ``FakeKubeAPI`` stands in for the
Kubernetes API server (none can run here) so that ``--dry-run=server`` renders
see objects of a release installed before.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "labspace"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "helm"
RELEASE = "labspace"
# the values files every chart check renders (tests/fixtures/helm/<name>.yaml)
VALUES = ["defaults", "sso-postgres", "ingress-tls", "minimal"]
NAMESPACE = "labspace"
FULLNAME = "labspace"
TIMEOUT = 120


class HelmError(RuntimeError):
    """helm failed; the message is helm's stderr."""


def helm_path() -> str | None:
    given = os.environ.get("HELM")
    if given:
        return given if Path(given).is_file() else None
    found = shutil.which("helm")
    if found:
        return found
    local = ROOT / ".venv" / "bin" / "helm"
    return str(local) if local.is_file() else None


def helm_problem() -> str | None:
    """None when helm runs, else why not (with the fix)."""
    path = helm_path()
    if path is None:
        return "no helm binary ($HELM, PATH, .venv/bin/helm): run tests/provision.sh"
    try:
        out = subprocess.run(
            [path, "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except OSError as e:
        return f"{path} cannot run: {e}"
    if out.returncode != 0:
        return f"{path} version failed: {out.stderr.strip()}"
    return None


def run_helm(*args: str) -> subprocess.CompletedProcess:
    path = helm_path()
    if path is None:
        raise HelmError(helm_problem())
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)


def values_path(values_file: str | os.PathLike) -> Path:
    """A fixture name (``defaults``) or a path."""
    path = Path(values_file)
    if path.suffix not in (".yaml", ".yml"):
        path = FIXTURES / f"{values_file}.yaml"
    return path


def _set_args(sets: dict[str, Any]) -> list[str]:
    args = []
    for key, value in sets.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["--set", f"{key}={value}"]
    return args


def template(values_file: str | os.PathLike, *args: str, **sets: Any):
    return run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--values",
        str(values_path(values_file)),
        *_set_args(sets),
        *args,
    )


@functools.cache
def _render(values_file: str, sets: tuple[tuple[str, Any], ...]) -> tuple[dict, ...]:
    out = template(values_file, **dict(sets))
    if out.returncode != 0:
        raise HelmError(f"helm template with {values_file}: {out.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def render(values_file: str | os.PathLike, **sets: Any) -> list[dict[str, Any]]:
    """The chart's objects for ``values_file`` (and ``--set`` pairs)."""
    key = str(values_path(values_file))
    return copy.deepcopy(list(_render(key, tuple(sorted(sets.items())))))


def render_fresh(values_file: str | os.PathLike, **sets: Any) -> list[dict[str, Any]]:
    """Like ``render``, but a new ``helm template`` run (new generated secrets)."""
    out = template(values_file, **sets)
    if out.returncode != 0:
        raise HelmError(f"helm template with {values_file}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        have = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        raise LookupError(f"{kind}/{name}: {len(found)} rendered (have {have})")
    return found[0]


def settings_text(objects: list[dict]) -> str:
    """labspace.yaml as the ConfigMap holds it."""
    return find(objects, "ConfigMap", f"{FULLNAME}-config")["data"]["labspace.yaml"]


def settings(objects: list[dict]) -> dict[str, Any]:
    return yaml.safe_load(settings_text(objects)) or {}


def secret_values(objects: list[dict], name: str = f"{FULLNAME}-secret") -> dict[str, str]:
    data = find(objects, "Secret", name).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def container(objects: list[dict], deployment: str, name: str | None = None) -> dict:
    """The (first, or named) container of Deployment ``deployment``."""
    spec = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    for item in spec["containers"]:
        if name is None or item["name"] == name:
            return item
    raise LookupError(f"Deployment/{deployment} has no container {name}")


def container_env(objects: list[dict], deployment: str) -> dict[str, str]:
    """The container's environment, values from the chart's Secret resolved.

    A ``secretKeyRef`` to another Secret (``existingSecret``) cannot be resolved
    offline and raises LookupError."""
    env = {}
    for item in container(objects, deployment).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = secret_values(objects, ref["name"])[ref["key"]]
    return env


def pod_templates(objects: list[dict]):
    """``(deployment name, pod template)`` of each Deployment."""
    for o in objects:
        if o["kind"] == "Deployment":
            yield o["metadata"]["name"], o["spec"]["template"]


def policy(objects: list[dict], name: str) -> dict[str, Any]:
    """The spec of NetworkPolicy ``name``."""
    return find(objects, "NetworkPolicy", name)["spec"]


def rule_peers(rule: dict, key: str) -> list[dict | None]:
    """The pod selectors' labels of a policy rule's ``from`` or ``to`` peers."""
    return [p.get("podSelector", {}).get("matchLabels") for p in rule.get(key, [])]


def rule_ports(rule: dict) -> list[tuple[int, str]]:
    return sorted((p["port"], p["protocol"]) for p in rule.get("ports", []))


def tcp(*numbers: int) -> list[tuple[int, str]]:
    return sorted((n, "TCP") for n in numbers)


# -- a stand-in for the Kubernetes API server --------------------------------

# the kinds the chart renders: (group/version, plural, kind); "" is the core group
API_RESOURCES = [
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("v1", "secrets", "Secret"),
    ("v1", "serviceaccounts", "ServiceAccount"),
    ("v1", "services", "Service"),
    ("apps/v1", "deployments", "Deployment"),
    ("networking.k8s.io/v1", "ingresses", "Ingress"),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "roles", "Role"),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
]


def _discovery() -> dict[str, dict]:
    routes: dict[str, dict] = {"/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}}
    routes["/api"] = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    groups: dict[str, list[dict]] = {}
    for group_version, plural, kind in API_RESOURCES:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resource = {"name": plural, "singularName": kind.lower(), "namespaced": True}
        groups.setdefault(group_version, []).append({**resource, "kind": kind, "verbs": verbs})
    names = sorted({gv.split("/")[0] for gv in groups if "/" in gv})
    routes["/apis"] = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{name}/v1", "version": "v1"},
            }
            for name in names
        ],
    }
    for group_version, resources in groups.items():
        prefix = "/api" if group_version == "v1" else "/apis"
        routes[f"{prefix}/{group_version}"] = {
            "kind": "APIResourceList",
            "groupVersion": group_version,
            "resources": resources,
        }
    return routes


def _object_path(obj: dict) -> str:
    group_version = obj["apiVersion"]
    plural = next(p for gv, p, k in API_RESOURCES if (gv, k) == (group_version, obj["kind"]))
    prefix = "/api" if group_version == "v1" else "/apis"
    meta = obj["metadata"]
    return f"{prefix}/{group_version}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


class FakeKubeAPI:
    """A stand-in for the Kubernetes API server on 127.0.0.1 (a real one cannot
    run on these machines): discovery of the kinds the chart renders, and GET
    of ``objects`` (as a cluster holds them); every other path is 404, and no
    write is accepted. ``args`` are helm's flags to render against it
    (``--dry-run=server``, where ``lookup`` asks the cluster). Records the
    requests in ``requests``."""

    def __init__(self, objects: list[dict]):
        self.routes = {**_discovery(), **{_object_path(o): o for o in objects}}
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="fake-kube-")

    def __enter__(self) -> FakeKubeAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(f"GET {self.path}")
                body = fake.routes.get(self.path.split("?")[0])
                self._send(200, body) if body else self._send(404, _status(404, "NotFound"))

            def do_POST(self):
                fake.requests.append(f"{self.command} {self.path}")
                self._send(405, _status(405, "MethodNotAllowed"))

            do_PUT = do_PATCH = do_DELETE = do_POST

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        port = self._server.server_address[1]
        self.kubeconfig = Path(self._folder.name) / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}
                    ],
                    "users": [{"name": "fake", "user": {"token": "fake"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        self.kubeconfig.chmod(0o600)
        self.args = (
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(self.kubeconfig),
        )
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._folder.cleanup()


def _status(code: int, reason: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
    }
