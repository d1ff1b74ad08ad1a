"""The Helm chart's ``values.schema.json``, generated from the settings schema.

One source: ``labspace:`` in the chart's values is ``labspace.yaml`` itself, so
its schema is Labspace's settings schema (:func:`labspace.settings.schema`,
with each service's section), copied whole. Everything else in the values is
the chart's own Kubernetes keys (:data:`CHART_KEYS`, z2jh's names where the
meaning is the same). Every object refuses keys it does not know
(``additionalProperties: false``), so ``helm install`` with a misspelt key
fails and names it; objects that Kubernetes itself defines (resources,
affinity, node selectors) are passed through.

``python -m labspace.helm_schema`` writes ``helm/labspace/values.schema.json``;
``--check`` only says whether the file is current (``make helm-schema``).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

from . import settings

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "helm" / "labspace" / "values.schema.json"
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

# -- building blocks -----------------------------------------------------------


def _obj(description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """A closed object: only the keys given."""
    return {
        "type": "object",
        "additionalProperties": False,
        "description": description,
        "properties": properties,
    }


def _free(description: str) -> dict[str, Any]:
    """An object Kubernetes defines (resources, affinity): passed through as is."""
    return {"type": "object", "description": description}


def _str_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": description,
    }


def _list(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description}


def _nullable(kind: str, description: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], "description": description, **more}


def _bool(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _image(what: str) -> dict[str, Any]:
    return _obj(
        f"The container image of the {what}.",
        name={"type": "string", "description": "Image name without the tag."},
        tag=_nullable("string", "Image tag; empty: the chart's appVersion (Labspace's version)."),
        pullPolicy={
            "enum": [None, "", "IfNotPresent", "Always", "Never"],
            "description": "The container's `imagePullPolicy`; empty: Kubernetes' default.",
        },
    )


def _pdb(what: str) -> dict[str, Any]:
    return _obj(
        f"A PodDisruptionBudget for the {what} (one replica: `maxUnavailable: 1` lets a "
        "node drain go on, `minAvailable: 1` blocks voluntary evictions).",
        enabled=_bool("Create the PodDisruptionBudget."),
        maxUnavailable=_nullable("integer", "Pods that may be unavailable at once.", minimum=0),
        minAvailable=_nullable("integer", "Pods that must stay available.", minimum=0),
    )


def _pod(what: str) -> dict[str, dict[str, Any]]:
    """Where a pod runs, what its container may use, and as whom."""
    return {
        "resources": _free(f"CPU and memory requests and limits of the {what} container."),
        "nodeSelector": _str_map(f"Node labels the {what} pod must run on."),
        "tolerations": _list(f"Tolerations of the {what} pod (Kubernetes `Toleration` objects)."),
        "affinity": _free(f"Affinity of the {what} pod (Kubernetes `Affinity`)."),
        "podSecurityContext": _free(f"The {what} pod's `securityContext` (non-root by default)."),
        "containerSecurityContext": _free(
            f"The {what} container's `securityContext` (no capabilities, RuntimeDefault seccomp)."
        ),
    }


def _enabled_policy(what: str, **rules: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        f"The NetworkPolicy of the {what}: only the traffic Labspace needs, plus the rules here.",
        enabled=_bool("Create the NetworkPolicy."),
        **rules,
    )


SERVICE_TYPES = ["ClusterIP", "NodePort", "LoadBalancer"]
EXTRA_EGRESS = _list("Extra egress rules (Kubernetes `NetworkPolicyEgressRule` objects).")

# -- the chart's own keys --------------------------------------------------------


def _hub() -> dict[str, Any]:
    return _obj(
        "The hub pod: `labspace up` with the settings under `labspace:`.",
        image=_image("hub (and, by default, the proxy)"),
        annotations=_str_map("Extra annotations of the hub pod."),
        labels=_str_map("Extra labels of the hub pod."),
        **_pod("hub"),
        extraEnv=_list("Extra environment variables of the hub (Kubernetes `EnvVar` objects)."),
        pdb=_pdb("hub"),
        db=_obj(
            "The hub's volume.",
            pvc=_obj(
                "The PersistentVolumeClaim of `data_dir` (SQLite databases, generated "
                "secrets, the accounting outbox); made even with PostgreSQL.",
                storage={"type": "string", "minLength": 1, "description": "Size, e.g. `1Gi`."},
                storageClassName=_nullable("string", "Empty: the cluster's default class."),
                accessModes={
                    "type": "array",
                    "items": {"enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]},
                    "description": "Access modes of the claim.",
                },
                annotations=_str_map("Annotations of the claim."),
            ),
        ),
        service=_obj(
            "The hub's Service `<fullname>-hub` (hub_port and each managed service's port).",
            type={"enum": SERVICE_TYPES, "description": "The Service type."},
            annotations=_str_map("Annotations of the Service."),
        ),
        serviceAccount=_obj(
            "The hub's ServiceAccount, whose token KubeSpawner uses.",
            create=_bool("Create it (else `name` must exist)."),
            name=_nullable("string", "Its name; empty: `<fullname>-hub`."),
            annotations=_str_map("Annotations of the ServiceAccount."),
        ),
        networkPolicy=_enabled_policy(
            "hub",
            ingress=_list("Extra ingress rules (Kubernetes `NetworkPolicyIngressRule` objects)."),
        ),
    )


def _proxy() -> dict[str, Any]:
    return _obj(
        "The proxy (configurable-http-proxy) in its own pod: a hub restart or upgrade "
        "keeps workspaces reachable.",
        chp=_obj(
            "The proxy container.",
            image=_image("proxy; empty name: the hub's image"),
            **_pod("proxy"),
            networkPolicy=_enabled_policy("proxy", egress=EXTRA_EGRESS),
        ),
        pdb=_pdb("proxy"),
        service=_obj(
            "The public Service `<fullname>-proxy-public` (port 8000).",
            type={"enum": SERVICE_TYPES, "description": "The Service type."},
            annotations=_str_map("Annotations of the Service."),
            nodePorts=_obj(
                "Node ports with `type: NodePort`.",
                http=_nullable(
                    "integer",
                    "The HTTP node port; empty: chosen by Kubernetes.",
                    minimum=1,
                    maximum=65535,
                ),
            ),
            loadBalancerSourceRanges={
                "type": "array",
                "items": {"type": "string"},
                "description": "Client address ranges allowed with `type: LoadBalancer`.",
            },
        ),
    )


def _scheduling() -> dict[str, Any]:
    priority = {"type": "integer", "minimum": -1000000000, "maximum": 1000000000}
    return _obj(
        "The warm pool on the kubernetes backend (`labspace.backend.warm_pool.enabled`): "
        "placeholder pods per pooled profile and the priorities that let workspaces "
        "preempt them (z2jh's names).",
        podPriority=_obj(
            "The PriorityClasses made with the warm pool on.",
            defaultPriority={**priority, "description": "Priority of workspace pods."},
            imagePullerPriority={**priority, "description": "Priority of the pre-puller."},
            userPlaceholderPriority={
                **priority,
                "description": "Priority of the placeholders (the lowest).",
            },
        ),
        userPlaceholder=_obj(
            "The placeholder (pause) pods: `warm_pool.size` per pooled profile.",
            image=_image("placeholders"),
            resources=_free("Requests of each placeholder; empty: the pooled profile's."),
            annotations=_str_map("Annotations of the placeholder pods."),
            labels=_str_map("Labels of the placeholder pods."),
            containerSecurityContext=_free(
                "The placeholders' `securityContext` (non-root, no capabilities)."
            ),
        ),
    )


def chart_keys() -> dict[str, dict[str, Any]]:
    """The values that are the chart's, not Labspace's settings (z2jh's names)."""
    return {
        "nameOverride": _nullable("string", "Replaces the chart name in object names."),
        "fullnameOverride": _nullable("string", "Replaces `<release>-<chart>` in object names."),
        "imagePullSecrets": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "Secrets with registry credentials for the hub and proxy images.",
        },
        "existingSecret": _nullable(
            "string",
            "A Secret you made whose keys are environment variables of the hub, e.g. "
            "`LABSPACE_HUB_DB_URL` for an external PostgreSQL.",
        ),
        "rbac": _obj(
            "The Role and RoleBinding that let the hub manage workspace pods.",
            create=_bool("Create them (else bind the hub's service account yourself)."),
        ),
        "hub": _hub(),
        "proxy": _proxy(),
        "grafana": _obj(
            "Grafana, where the chart helps it.",
            dashboards=_obj(
                "Labspace's dashboards as ConfigMaps for Grafana's dashboard sidecar.",
                enabled=_bool("Create the ConfigMaps (one per dashboard)."),
                labels=_str_map("Labels of each ConfigMap (the sidecar finds them by label)."),
                annotations=_str_map("Annotations of each ConfigMap, e.g. the sidecar's folder."),
            ),
        ),
        "scheduling": _scheduling(),
        "prePuller": _obj(
            "The image pre-puller of the warm pool (kubernetes backend, "
            "`labspace.backend.warm_pool.enabled`): a DaemonSet per pooled profile.",
            continuous=_obj(
                "Pull on every node, also on nodes added later.",
                enabled=_bool("Create the DaemonSets (only with the warm pool on)."),
            ),
            resources=_free("Requests and limits of the pre-puller's containers."),
            containerSecurityContext=_free(
                "The pre-puller containers' `securityContext` (non-root, no capabilities)."
            ),
        ),
        "singleuser": _obj(
            "Workspace pods, where no Labspace setting says it.",
            networkPolicy=_enabled_policy(
                "workspaces",
                egressAllowRules=_obj(
                    "Broad egress rules, as z2jh's.",
                    nonPrivateIPs=_bool(
                        "Also the internet: every address but private, link-local "
                        "(the metadata address) and loopback ones."
                    ),
                ),
                egress=EXTRA_EGRESS,
            ),
        ),
        "ingress": _obj(
            "An Ingress to the proxy-public Service.",
            enabled=_bool("Create the Ingress."),
            ingressClassName=_nullable("string", "The Ingress's `ingressClassName`."),
            annotations=_str_map("Annotations, e.g. `cert-manager.io/cluster-issuer`."),
            hosts={
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "description": "Host names; the first one makes `hub.public_url`.",
            },
            pathType={
                "enum": ["Prefix", "Exact", "ImplementationSpecific"],
                "description": "Path type of the rule for `hub.base_url`.",
            },
            tls=_list(
                "TLS sections (`{hosts: [...], secretName: ...}`): a pre-made Secret, "
                "or the one cert-manager makes."
            ),
        ),
    }


# -- the whole schema ------------------------------------------------------------

# helm checks patterns with Go's regexp (RE2): no lookaround, no backreference.
# A settings pattern that uses them gets its RE2 equivalent here, with the
# keywords that say the rest; a new one stops the generator until it is added.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")
_DOMAIN = (
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
GO_PATTERNS: dict[str, dict[str, Any]] = {
    # hub.tls.domain: "at most 253 characters" was a lookahead
    f"^(|(?=.{{1,253}}$){_DOMAIN})$": {"pattern": f"^(|{_DOMAIN})$", "maxLength": 253},
}


class PatternError(ValueError):
    """A settings pattern Go's regexp cannot read, and no translation for it."""


def _go_patterns(node: Any, path: str = "") -> None:
    """Replace, in place, the patterns RE2 cannot read (see :data:`GO_PATTERNS`)."""
    if isinstance(node, list):
        for item in node:
            _go_patterns(item, path)
        return
    if not isinstance(node, dict):
        return
    pattern = node.get("pattern")
    if isinstance(pattern, str) and _NOT_RE2.search(pattern):
        if pattern not in GO_PATTERNS:
            raise PatternError(
                f"{path or '(root)'}: pattern {pattern!r} uses lookaround or a backreference, "
                "which helm (Go's RE2) cannot read (add its RE2 form to GO_PATTERNS in "
                "labspace/helm_schema.py, or simplify it in the settings schema)"
            )
        node.update(GO_PATTERNS[pattern])
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                _go_patterns(sub, f"{path}.{name}" if path else name)
        elif key != "pattern":
            _go_patterns(value, path)


def settings_part() -> dict[str, Any]:
    """``labspace:``: the settings schema, as ``labspace.yaml`` is checked, in RE2."""
    part = copy.deepcopy(settings.schema())
    _go_patterns(part)
    for key in ("$schema", "$id", "title"):
        part.pop(key, None)
    part["description"] = (
        "Labspace's settings, exactly as in labspace.yaml (docs/reference/settings.md); "
        "rendered into the ConfigMap, their secrets into the Secret."
    )
    return part


def build() -> dict[str, Any]:
    """The values schema of ``helm/labspace``."""
    return {
        "$schema": JSON_SCHEMA,
        "title": "Labspace Helm chart values",
        "description": "Generated by `python -m labspace.helm_schema` from "
        "labspace/schema/settings.schema.json: do not edit.",
        "type": "object",
        "additionalProperties": False,
        "properties": {"labspace": settings_part(), **chart_keys()},
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labspace.helm_schema", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--output", type=Path, default=SCHEMA_FILE, help="where to write (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only say whether the file is current")
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current == text:
            print(f"{args.output}: current")
            return 0
        print(f"{args.output}: out of date (run `python -m labspace.helm_schema`)", file=sys.stderr)
        return 1
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    print(f"{args.output}: {'written' if current != text else 'current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
