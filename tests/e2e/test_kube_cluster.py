"""A workspace pod on a real Kubernetes cluster, started and stopped by the
kubernetes backend.

Runs only when ``KUBECONFIG`` names a cluster (kind, minikube, k3d or a real one
with a default storage class). Kubernetes cannot run on this project's machines,
developers' or CI's, so unlike the other tier-4 tests this one is skipped with
the reason even under ``CI=true``; ``tests/test_kube.py`` checks every manifest
offline instead.

The spawner is built as the hub builds it and started through the mixin
(profile, start slot, KubeSpawner's start): the home claim is created, the pod
runs with the locked-down security context, and stop removes the pod. The
hub is the one the chart's hub pod makes (reached at the ``labspace-hub``
Service), but none runs in the cluster, so only the pod's state is checked,
not JupyterLab. Knobs:

- ``LABSPACE_KUBE_NAMESPACE`` (default ``default``): where the pod and claim go;
- ``LABSPACE_KUBE_IMAGE`` (default ``quay.io/jupyterhub/singleuser:5``): an
  image with ``jupyterhub-singleuser`` and a uid-1000 user;
- ``LABSPACE_KUBE_STORAGE_CLASS`` (default: the cluster's default class).
"""

from __future__ import annotations

import os
import secrets
from types import SimpleNamespace

import pytest
from jupyterhub import orm
from kubespawner import clients
from offline import hub_of
from traitlets.config import Config

from labspace.settings import validate, with_defaults
from labspace.spawners.kube import LabspaceKubeSpawner

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is not set: no Kubernetes cluster to spawn on "
        "(none can run on this project's machines, so this skip holds under CI=true too)",
    ),
]

NAMESPACE = os.environ.get("LABSPACE_KUBE_NAMESPACE", "default")
IMAGE = os.environ.get("LABSPACE_KUBE_IMAGE", "quay.io/jupyterhub/singleuser:5")


class ClusterUser(SimpleNamespace):
    groups: list = []

    @property
    def escaped_name(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"


def cluster_settings() -> dict:
    data = {
        "backend": {
            "type": "kubernetes",
            "image": IMAGE,
            "http_timeout": 5,
            "kubernetes": {
                "namespace": NAMESPACE,
                "home_size": "1G",
                "storage_class": os.environ.get("LABSPACE_KUBE_STORAGE_CLASS", ""),
            },
        },
        "profiles": [
            {"slug": "small", "default": True, "cpu": {"limit": 1}, "memory": {"limit": "1G"}}
        ],
    }
    assert validate(data) == []
    return with_defaults(data)


@pytest.fixture
async def cluster_spawner():
    """A spawner for a fresh user; its pod and home claim are removed at teardown."""
    clients.load_config.cache_clear()  # the real kubeconfig, whatever ran before
    values = cluster_settings()
    config = Config()
    config.LabspaceSpawnerMixin.profiles = values["profiles"]
    config.LabspaceSpawnerMixin.backend_settings = values["backend"]
    config.KubeSpawner.start_timeout = 300  # first pull of the image
    config.KubeSpawner.http_timeout = 5
    # the hub as the chart's hub pod makes it: reached at the hub Service
    # (tests/test_kube.py checks that the chart's settings give this URL)
    config.JupyterHub.hub_connect_url = "http://labspace-hub:8081"
    user = ClusterUser(name=f"e2e-{secrets.token_hex(3)}", id=1, settings={})
    server = orm.Server(proto="http", ip="", port=0, base_url=user.url, cookie_name="unused")
    spawner = LabspaceKubeSpawner(
        user=user,
        orm_spawner=SimpleNamespace(name="", display_name="", server=server),
        hub=hub_of(config),
        config=config,
        api_token=secrets.token_hex(16),
        oauth_client_id=f"jupyterhub-user-{user.name}",
        user_options={},
    )
    yield spawner
    try:
        await spawner.stop(now=True)
        await spawner.delete_forever()  # the default server's home claim
    finally:
        await LabspaceKubeSpawner._stop_all_reflectors()


async def test_default_profile_pod_starts_and_stops(cluster_spawner):
    spawner = cluster_spawner
    await spawner._run_apply_user_options({})
    url = await spawner.start()
    assert url.endswith(":8888"), url

    pod = await spawner.api.read_namespaced_pod(spawner.pod_name, NAMESPACE)
    assert pod.status.phase == "Running"
    assert pod.metadata.labels["labspace/profile"] == "small"
    (container,) = pod.spec.containers
    assert container.security_context.run_as_non_root is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.resources.limits["memory"] in (str(1024**3), "1Gi")
    claim = await spawner.api.read_namespaced_persistent_volume_claim(spawner.pvc_name, NAMESPACE)
    assert claim.metadata.name == f"home-{spawner.user.name}"
    assert await spawner.poll() is None

    await spawner.stop()
    assert isinstance(await spawner.poll(), int)
