"""Who may do and reach what, in the chart's rendered objects (real helm).

No Kubernetes API server can run on this machine, so these checks read the
objects ``helm template`` renders (tests/helm.py, cached per values file) and
say what a cluster would enforce: the hub's Role grants exactly what KubeSpawner
and spawners/kube.py call; the NetworkPolicies let workspaces reach the hub API
and DNS but not each other, the proxy API or the cloud metadata address, and
only the hub reach the proxy API; every pod is non-root with RuntimeDefault
seccomp and no capabilities; every selector matches the pods it means. Whether
a cluster's network plugin enforces the policies needs a cluster.
"""

from __future__ import annotations

import ipaddress

import pytest

import helm
from helm import policy, tcp
from helm import rule_peers as peers
from helm import rule_ports as ports
from labspace.spawners.kube import COMMON_LABELS

NS = helm.NAMESPACE

# what KubeSpawner and spawners/kube.py call (helm/labspace/README.md says why)
LEAST_RULES = {
    "pods": {"create", "delete", "list", "watch"},
    "persistentvolumeclaims": {"create", "delete", "get"},
    "events": {"list", "watch"},
    "secrets": {"create", "delete", "update"},
}
# the chart selects workspaces by these; KubeSpawner's pods carry WORKSPACE_POD_LABELS
WORKSPACE_LABELS = {
    "app.kubernetes.io/name": "labspace",
    "app.kubernetes.io/component": "workspace",
}
WORKSPACE_POD_LABELS = {
    **COMMON_LABELS,
    "app.kubernetes.io/component": "workspace",
    "component": "workspace",
}


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "labspace",
        "app.kubernetes.io/instance": helm.RELEASE,
        "app.kubernetes.io/component": component,
    }


HUB, PROXY = labels("hub"), labels("proxy")


pytestmark = pytest.mark.usefixtures("helm_binary")


def test_rbac_is_the_least_kubespawner_needs(chart_defaults):
    role = helm.find(chart_defaults, "Role", "labspace-hub")
    granted = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], rule
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for resource in rule["resources"]:
            assert resource not in granted, f"{resource} granted twice"
            granted[resource] = set(rule["verbs"])
    assert granted == LEAST_RULES
    binding = helm.find(chart_defaults, "RoleBinding", "labspace-hub")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "labspace-hub",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "labspace-hub", "namespace": NS}
    ]
    hub = helm.find(chart_defaults, "Deployment", "labspace-hub")["spec"]["template"]["spec"]
    assert hub["serviceAccountName"] == "labspace-hub"
    readme = (helm.CHART / "README.md").read_text()
    for resource, verbs in LEAST_RULES.items():
        line = f"| `{resource}` | {', '.join(f'`{v}`' for v in sorted(verbs))} |"
        assert line in readme, f"README.md lacks the row {line}"


def test_network_policies(chart_defaults):
    hub, proxy = policy(chart_defaults, "labspace-hub"), policy(chart_defaults, "labspace-proxy")
    ws = policy(chart_defaults, "labspace-workspaces")
    assert hub["podSelector"]["matchLabels"] == HUB
    assert proxy["podSelector"]["matchLabels"] == PROXY
    assert ws["podSelector"]["matchLabels"] == WORKSPACE_LABELS
    # hub <- proxy and itself (hub_port, services), <- workspaces (hub_port)
    (from_proxy, from_ws) = hub["ingress"]
    assert peers(from_proxy, "from") == [PROXY, HUB]
    assert ports(from_proxy) == tcp(8081, 8010, 8011, 8012)
    assert peers(from_ws, "from") == [WORKSPACE_LABELS]
    assert ports(from_ws) == tcp(8081)
    # proxy public port <- anyone; its API <- the hub only
    (public, api) = proxy["ingress"]
    assert "from" not in public and ports(public) == tcp(8000)
    assert peers(api, "from") == [HUB] and ports(api) == tcp(8001)
    assert proxy["policyTypes"] == ["Ingress", "Egress"]
    # workspaces <- hub and proxy only; -> hub API, DNS, non-private addresses
    assert ws["policyTypes"] == ["Ingress", "Egress"]
    ((ingress),) = ws["ingress"]
    assert peers(ingress, "from") == [HUB, PROXY] and ports(ingress) == tcp(8888)
    to_hub, dns, internet = ws["egress"]
    assert peers(to_hub, "to") == [HUB] and ports(to_hub) == tcp(8081)
    assert "to" not in dns and ports(dns) == sorted([(53, "TCP"), (53, "UDP")])
    assert_unreachable(internet, ["169.254.169.254", "10.0.0.5", "172.20.1.1", "192.168.1.1"])
    assert_reachable(internet, "151.101.0.223")


def allowed(rule, address):
    ip = ipaddress.ip_address(address)
    for peer in rule["to"]:
        block = peer["ipBlock"]
        if ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        ):
            return True
    return False


def assert_unreachable(rule, addresses):
    for address in addresses:
        assert not allowed(rule, address), f"workspaces may reach {address}"


def assert_reachable(rule, address):
    assert allowed(rule, address), f"workspaces may not reach {address}"


def test_workspaces_in_another_namespace():
    objects = helm.render("defaults", **{"labspace.backend.kubernetes.namespace": "labspace-users"})
    other = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}
    role = helm.find(objects, "Role", "labspace-hub")
    assert role["metadata"]["namespace"] == "labspace-users"
    ws = helm.find(objects, "NetworkPolicy", "labspace-workspaces")
    assert ws["metadata"]["namespace"] == "labspace-users"
    (ingress,) = ws["spec"]["ingress"]
    assert ingress["from"] == [
        {"podSelector": {"matchLabels": HUB}, **other},
        {"podSelector": {"matchLabels": PROXY}, **other},
    ]
    hub = policy(objects, "labspace-hub")
    assert hub["ingress"][1]["from"] == [
        {
            "podSelector": {"matchLabels": WORKSPACE_LABELS},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "labspace-users"}},
        }
    ]


def test_security_contexts(chart_rendered):
    name, objects = chart_rendered
    for deployment, template in helm.pod_templates(objects):
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, deployment
        assert pod["runAsUser"] != 0, deployment
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, deployment
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc.get("allowPrivilegeEscalation") is False, (deployment, c["name"])
            assert sc.get("capabilities") == {"drop": ["ALL"]}, (deployment, c["name"])
            assert sc.get("runAsNonRoot") is True, (deployment, c["name"])
            assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, (deployment, c["name"])


def test_selectors_match_pod_labels(chart_rendered):
    name, objects = chart_rendered
    pods = {d: t["metadata"]["labels"] for d, t in helm.pod_templates(objects)}
    container_ports = {
        d: {p["name"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for d, t in helm.pod_templates(objects)
    }

    def matching(selector):
        return [d for d, pod in pods.items() if selector.items() <= pod.items()]

    for o in objects:
        kind, spec, what = (
            o["kind"],
            o.get("spec", {}),
            f"{name}: {o['kind']}/{o['metadata']['name']}",
        )
        if kind == "Deployment":
            assert matching(spec["selector"]["matchLabels"]) == [o["metadata"]["name"]], what
        elif kind == "Service":
            (target,) = matching(spec["selector"])
            for port in spec["ports"]:
                assert port["targetPort"] in container_ports[target], (what, port)
        elif kind == "PodDisruptionBudget":
            assert len(matching(spec["selector"]["matchLabels"])) == 1, what
        elif kind == "NetworkPolicy":
            selector = spec["podSelector"]["matchLabels"]
            assert matching(selector) or selector.items() <= WORKSPACE_POD_LABELS.items(), what
    for deployment, pod in pods.items():
        assert not WORKSPACE_LABELS.items() <= pod.items(), f"{deployment} looks like a workspace"
    assert WORKSPACE_LABELS.items() <= WORKSPACE_POD_LABELS.items()
