"""``labspace config helm-values``: a ``labspace.yaml`` as values of the Helm
chart (``helm/labspace``), so the settings that run on one server run on a
cluster with ``helm install labspace helm/labspace -f values.yaml``.

The settings go under ``labspace:`` as they are, except what the chart decides
or a cluster does otherwise; each key left out gets one line saying why and
what takes its place:

- ``data_dir`` and the addresses the chart sets (``hub.hub_ip``,
  ``hub.connect_host``, ``hub.proxy_api_url``, ``hub.proxy_url``): the chart
  refuses them;
- ``hub.ip``, a ``hub.port`` below 1024 (a non-root pod may not bind it),
  ``hub.proxy_command`` and ``hub.tls``: the proxy runs in its own pod, and
  HTTPS comes from the ingress (made for ``hub.tls.domain``, with its
  certificate in a Secret);
- ``backend.type: local``: workspaces would run inside the hub pod; the chart's
  default is ``kubernetes``;
- every secret setting (``hub.db_url``, ``auth.client_secret``, ...): a values
  file is often kept in git, so they go to the cluster another way
  (``--set`` or a Secret of one's own, ``existingSecret``).

Pure: ``helm_values(written)`` takes the settings as written in the file
(not with defaults) and returns ``(values, notes)``.
"""

from __future__ import annotations

import copy
from typing import Any

# keys the chart sets itself, with what sets them
CHART_KEYS = {
    "data_dir": "the chart keeps data_dir on the hub's volume (hub.db.pvc sizes it)",
    "hub.hub_ip": "the chart makes the hub listen on its pod's address",
    "hub.connect_host": "the chart names the hub Service",
    "hub.proxy_api_url": "the chart runs the proxy in its own Deployment",
    "hub.proxy_url": "the chart names the proxy's public Service",
}
# keys a cluster replaces
CLUSTER_KEYS = {
    "hub.ip": "the proxy pod listens on its own address",
    "hub.proxy_command": "the proxy runs in its own pod (proxy.chp.image)",
    "hub.tls": "HTTPS comes from the ingress: set ingress.enabled, ingress.hosts and ingress.tls",
}


def _pop(values: dict[str, Any], path: str) -> bool:
    """Remove the dotted ``path`` from ``values``; whether it was there."""
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return False
    if last not in node:
        return False
    del node[last]
    return True


def _drop_empty(values: dict[str, Any]) -> None:
    for key in [k for k, v in values.items() if isinstance(v, dict)]:
        _drop_empty(values[key])
        if not values[key]:
            del values[key]


def helm_values(written: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(values, notes)`` for the settings ``written`` in a file: the settings
    under ``labspace:``, and with ``hub.tls.domain`` an ``ingress`` for it."""
    from .settings import env_name, secret_paths

    settings = copy.deepcopy(written or {})
    values: dict[str, Any] = {"labspace": settings}
    notes = []
    domain = ((settings.get("hub") or {}).get("tls") or {}).get("domain")
    if domain:  # the host users open: the ingress's, with its certificate
        tls = [{"hosts": [domain], "secretName": "labspace-tls"}]
        values["ingress"] = {"enabled": True, "hosts": [domain], "tls": tls}
        notes.append(
            f"ingress: made for {domain}, its certificate in the Secret labspace-tls "
            "(made by you, or by cert-manager: ingress.annotations "
            "cert-manager.io/cluster-issuer)"
        )
    for path, why in {**CHART_KEYS, **CLUSTER_KEYS}.items():
        if _pop(settings, path):
            notes.append(f"{path}: left out: {why}")
    hub = settings.get("hub")
    if isinstance(hub, dict) and isinstance(hub.get("port"), int) and hub["port"] < 1024:
        port = hub.pop("port")
        notes.append(
            f"hub.port: left out: {port} is a privileged port, which a non-root proxy "
            "pod may not bind; the proxy listens on 8000 and proxy-public (or the "
            "ingress) serves users on 80 and 443"
        )
    backend = settings.get("backend")
    if isinstance(backend, dict) and backend.get("type") == "local":
        del backend["type"]
        notes.append(
            "backend.type: left out: `local` would run workspaces inside the hub pod; "
            "the chart's default, kubernetes, runs each as a pod (backend.kubernetes)"
        )
    for path in secret_paths():
        if _pop(settings, path):
            notes.append(
                f"{path}: left out (a secret): give it with "
                f"`--set labspace.{path}=...` or as {env_name(path)} in a Secret "
                "named by existingSecret"
            )
    _drop_empty(settings)
    return values, notes
