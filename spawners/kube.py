"""The kubernetes backend: each workspace is a pod (KubeSpawner).

``LabspaceKubeSpawner`` maps a resolved ``WorkspaceSpec`` and the
``backend.kubernetes`` settings onto KubeSpawner's traits; KubeSpawner builds
the pod and the home claim from them. The mapping is a handful of pure
functions (``volumes_for``, ``security_contexts``, ``quantity``, ...) with
golden tests; the spawner only orchestrates.

What a workspace gets:

- a pod named ``jupyter-{user_server}`` (KubeSpawner 7's ``safe`` slugs, so user
  ``user-has`` + server ``dash`` and user ``user-has-dash`` never share a name);
- one home claim per user, ``home-{username}``, mounted at ``/home/jovyan`` by all
  of the user's servers (created on first start, kept when a named server is
  deleted);
- a non-root, unprivileged container: ``runAsNonRoot``, the settings' uid and
  ``fs_gid``, no privilege escalation, every capability dropped, the runtime's
  default seccomp profile (Pod Security Standard "restricted", except ``host``
  mounts);
- no Kubernetes API token unless ``backend.kubernetes.service_account`` names an
  account;
- its mounts as volumes (``pvc``, ``nfs``, ``host``; ``subPath`` for a
  ``sub_path``, ``readOnly`` unless writable);
- the spec's files (e.g. a data grant's credentials) in a Secret
  ``<pod>-files`` mounted read-only at ``/run/labspace`` (0440: root's, the
  workspace group's ``fs_gid``), created before the pod and deleted when the
  workspace ends, never in the home.

Warm starts (``backend.warm_pool``) on this backend are the cluster's, not the
hub's: the chart (helm/labspace, ``templates/scheduling``) keeps placeholder
pods of each pooled profile's size at a priority below every workspace's, so
nodes with room exist before a class arrives, and pre-pulls the pooled
profiles' images on every node; with the pool on, workspace pods get the
chart's PriorityClass (``priority_class_name``, from
``LABSPACE_WORKSPACE_PRIORITY_CLASS``), so the scheduler evicts a placeholder to
make room at once. There is no pre-started process to hand an identity to: the
hub keeps no pool (``warm_provider`` is None) and every start is a cold start
that skips the node scale-up and the image pull.

Every value is a ``@default``, so ``hub.config`` may still override any of them
for one site.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import default

from labspace.profiles import FILES_DIR, Mount, WorkspaceFile, WorkspaceSpec

from .mixin import LabspaceSpawnerMixin

HOME = "/home/jovyan"
HOME_VOLUME = "home"
FILES_VOLUME = "labspace-files"
FILES_MODE = 0o440  # kubelet makes them root's with the pod's fsGroup: the user reads
GPU_RESOURCE = "nvidia.com/gpu"
PROFILE_LABEL = "labspace/profile"
# the chart's PriorityClass of workspace pods (above its placeholders'), set in
# the hub's environment when backend.warm_pool is on
PRIORITY_CLASS_ENV = "LABSPACE_WORKSPACE_PRIORITY_CLASS"
COMMON_LABELS = {
    "app.kubernetes.io/name": "labspace",
    "app.kubernetes.io/managed-by": "kubespawner",
}
# KubeSpawner traits a profile sets; the values configured before any profile
# (e.g. through hub.config) are kept as the base every profile adds to
LIST_TRAITS = ("volumes", "volume_mounts", "tolerations")  # a list, or a dict sorted by key
DICT_TRAITS = (
    "extra_resource_limits",
    "extra_resource_guarantees",
    "node_selector",
    "extra_labels",
)


# -- pure mapping -------------------------------------------------------------


def quantity(size: str) -> str:
    """A Labspace size as a Kubernetes quantity.

    Labspace sizes are binary (``4G`` is 4 GiB, as JupyterHub's ``mem_limit``
    reads it); Kubernetes writes those ``4Gi`` (its ``4G`` is 4·10⁹ bytes).
    """
    return f"{size}i" if size[-1:] in ("K", "M", "G", "T") else size


def volume_name(mount: Mount) -> str:
    """Pod volume of a mount; the prefix keeps a mount named ``home`` apart. A
    name too long for a volume (63) is cut and ends with a hash of the whole."""
    name = f"mount-{mount.name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(mount.name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def nfs_source(source: str) -> tuple[str, str]:
    """``server:/export`` → ``(server, /export)``."""
    server, _, path = source.partition(":")
    if not server or not path.startswith("/"):
        raise ValueError(
            f"nfs mount source {source!r} is not server:/export "
            "(e.g. files.example.org:/exports/data)"
        )
    return server, path


def volume_for(mount: Mount) -> dict[str, Any]:
    """The pod volume of one mount (``pvc``, ``nfs`` or ``host``)."""
    name = volume_name(mount)
    if mount.type == "pvc":
        claim = {"claimName": mount.source, "readOnly": mount.read_only}
        return {"name": name, "persistentVolumeClaim": claim}
    if mount.type == "nfs":
        server, path = nfs_source(mount.source)
        return {"name": name, "nfs": {"server": server, "path": path, "readOnly": mount.read_only}}
    if mount.type == "host":
        # "Directory": the folder must exist on the node; nothing is created as root
        return {"name": name, "hostPath": {"path": mount.source, "type": "Directory"}}
    raise ValueError(
        f"mount {mount.name!r}: {mount.type!r} mounts do not work on the kubernetes "
        "backend (use pvc, nfs or host)"
    )


def volumes_for(mounts: Iterable[Mount]) -> list[dict[str, Any]]:
    return [volume_for(m) for m in mounts]


def volume_mount_for(mount: Mount) -> dict[str, Any]:
    out = {"name": volume_name(mount), "mountPath": mount.target, "readOnly": mount.read_only}
    if mount.sub_path:
        parts = mount.sub_path.split("/")
        if mount.sub_path.startswith("/") or ".." in parts:
            raise ValueError(f"mount {mount.name!r}: sub_path {mount.sub_path!r} leaves the source")
        out["subPath"] = mount.sub_path
    return out


def volume_mounts_for(mounts: Iterable[Mount]) -> list[dict[str, Any]]:
    return [volume_mount_for(m) for m in mounts]


def files_secret_name(pod_name: str) -> str:
    return f"{pod_name}-files"


def files_volume(secret_name: str) -> dict[str, Any]:
    """The pod volume of a spec's files: its Secret, read-only for the user."""
    secret = {"secretName": secret_name, "defaultMode": FILES_MODE}
    return {"name": FILES_VOLUME, "secret": secret}


def files_volume_mount() -> dict[str, Any]:
    return {"name": FILES_VOLUME, "mountPath": FILES_DIR, "readOnly": True}


def files_secret(
    name: str, files: Iterable[WorkspaceFile], labels: dict[str, str]
) -> dict[str, Any]:
    """The Secret that holds a spec's files (one key per file name)."""
    data = {}
    for f in files:
        if "/" in f.name or f.name in ("", ".", ".."):
            raise ValueError(f"workspace file {f.name!r} is not a plain file name")
        data[f.name] = base64.b64encode(f.content.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(labels)},
        "type": "Opaque",
        "data": data,
    }


def home_volume(claim: str) -> dict[str, Any]:
    return {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": claim}}


def home_volume_mount() -> dict[str, Any]:
    return {"name": HOME_VOLUME, "mountPath": HOME}


def gpu_resources(gpus: int) -> dict[str, str]:
    """Extended resources for ``gpus`` GPUs (requests must equal limits)."""
    return {GPU_RESOURCE: str(gpus)} if gpus else {}


def security_contexts() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(pod, container)`` security contexts beyond KubeSpawner's own
    ``uid``/``gid``/``fs_gid``: non-root, no escalation, no capabilities,
    the runtime's default seccomp profile."""
    seccomp = {"type": "RuntimeDefault"}
    pod = {"runAsNonRoot": True, "seccompProfile": seccomp}
    container = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": seccomp,
    }
    return pod, container


def workspace_priority_class(warm_pool: dict[str, Any], environ) -> str:
    """The workspace pods' PriorityClass: the chart's (``PRIORITY_CLASS_ENV``)
    when the warm pool is on, else none (the cluster's default priority)."""
    if warm_pool.get("enabled") is not True:  # `auto` is off on kubernetes
        return ""
    return environ.get(PRIORITY_CLASS_ENV, "")


# -- the spawner ----------------------------------------------------------------


class LabspaceKubeSpawner(LabspaceSpawnerMixin, KubeSpawner):
    """Run each workspace as a pod, from the ``backend.kubernetes`` settings.

    Profiles are Labspace's (``profiles:`` in labspace.yaml), resolved by the
    mixin; KubeSpawner's own ``profile_list`` is not used.
    """

    runs_images = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._configured = {name: dict(getattr(self, name)) for name in DICT_TRAITS}
        for name in LIST_TRAITS:
            self._configured[name] = list(self._sorted_dict_values(getattr(self, name)))

    @property
    def kube_settings(self) -> dict[str, Any]:
        return self.backend_settings.get("kubernetes", {})

    @default("namespace")
    def _default_namespace_from_settings(self):
        return self.kube_settings.get("namespace") or self._namespace_default()

    @default("cmd")
    def _default_singleuser_cmd(self):
        # the command and its arguments, so Spawner.args and default_url apply
        return ["jupyterhub-singleuser"]

    @default("uid")
    def _default_uid_from_settings(self):
        return self.kube_settings.get("uid", 1000)

    @default("fs_gid")
    def _default_fs_gid_from_settings(self):
        return self.kube_settings.get("fs_gid", 100)

    @default("gid")
    def _default_gid_is_fs_gid(self):
        # the primary group too, never root's group 0 when the uid has no passwd entry
        return self.fs_gid

    @default("pod_security_context")
    def _default_pod_security_context(self):
        return security_contexts()[0]

    @default("container_security_context")
    def _default_container_security_context(self):
        return security_contexts()[1]

    @default("service_account")
    def _default_service_account_from_settings(self):
        return self.kube_settings.get("service_account") or None

    @default("automount_service_account_token")
    def _default_automount(self):
        return None if self.service_account else False

    @default("pvc_name_template")
    def _default_home_claim_name(self):
        # per user: all of a user's servers share the home, and deleting a named
        # server keeps it (KubeSpawner deletes only claims named per server)
        return "home-{username}"

    @default("handle_legacy_names")
    def _default_no_legacy_names(self):
        # no Labspace install predates KubeSpawner 7's names: skip the lookups
        return False

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("storage_capacity")
    def _default_home_size(self):
        return quantity(self.kube_settings.get("home_size", "10G"))

    @default("storage_class")
    def _default_storage_class_from_settings(self):
        return self.kube_settings.get("storage_class") or None  # None: cluster default

    @default("common_labels")
    def _default_common_labels(self):
        return dict(COMMON_LABELS)

    @default("component_label")
    def _default_component_label(self):
        return "workspace"

    @default("priority_class_name")
    def _default_priority_class_with_the_pool(self):
        """With ``backend.warm_pool`` on, the chart's workspace PriorityClass, so
        a workspace preempts the placeholder pods that hold its room; else none."""
        return workspace_priority_class(self.warm_pool or {}, os.environ)

    @classmethod
    def warm_provider(cls, hub_app):
        """No hub-side pool on kubernetes: the placeholders and the image
        pre-puller are the chart's (see the module's docstring)."""
        return None

    def warm_key(self, spec: WorkspaceSpec) -> str | None:
        """None: a pod never starts from a pre-started member. Kubernetes' warm
        start is capacity and image (placeholder pods that workspace pods
        preempt, images already on every node), not a process waiting for an
        identity, so each start here is a cold start without the scale-up and
        the pull."""
        return None

    async def load_user_options(self):
        """Nothing to load: the mixin's ``apply_user_options`` applied the profile.

        (KubeSpawner's version checks ``user_options`` against its own
        ``profile_list``, which is empty here, and would refuse every profile.)
        """

    def apply_workspace_spec(self, spec: WorkspaceSpec) -> None:
        super().apply_workspace_spec(spec)
        try:
            volumes = volumes_for(spec.mounts)
            mounted = volume_mounts_for(spec.mounts)
        except ValueError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise web.HTTPError(
                500, f"This workspace cannot start: {e} (ask an administrator)"
            ) from None
        base = self._configured
        # "{pvc_name}" is expanded when the pod is built: KubeSpawner may still
        # settle the claim's name during start
        if spec.files:
            volumes.append(files_volume(files_secret_name(self.pod_name)))
            mounted.append(files_volume_mount())
        self.volumes = [*base["volumes"], home_volume("{pvc_name}"), *volumes]
        self.volume_mounts = [*base["volume_mounts"], home_volume_mount(), *mounted]
        gpus = gpu_resources(spec.gpus)
        self.extra_resource_limits = {**base["extra_resource_limits"], **gpus}
        self.extra_resource_guarantees = {**base["extra_resource_guarantees"], **gpus}
        self.node_selector = {**base["node_selector"], **spec.node_selector}
        self.tolerations = [*base["tolerations"], *spec.tolerations]
        self.extra_labels = {**base["extra_labels"], PROFILE_LABEL: spec.profile}

    def files_secret_manifest(self) -> dict[str, Any] | None:
        """The Secret of this start's files, or None when it has none."""
        spec = self.workspace_spec
        if not spec or not spec.files:
            return None
        labels = {**self.common_labels, "app.kubernetes.io/component": "workspace-files"}
        return files_secret(files_secret_name(self.pod_name), spec.files, labels)

    async def write_files_secret(self) -> None:
        """Create (or replace) the Secret of this start's files before the pod."""
        manifest = self.files_secret_manifest()
        if manifest is None:
            return
        name = manifest["metadata"]["name"]
        try:
            await self.api.create_namespaced_secret(self.namespace, manifest)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.api.replace_namespaced_secret(name, self.namespace, manifest)
        self.log.info("Wrote secret %s for %s", name, self._log_name)

    async def delete_files_secret(self) -> None:
        name = files_secret_name(self.pod_name)
        try:
            await self.api.delete_namespaced_secret(name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                self.log.error("Could not delete secret %s: %s", name, e.reason)

    async def run_post_stop_hook(self):
        try:
            await super().run_post_stop_hook()
        finally:
            await self.delete_files_secret()  # a grant's credentials never outlive the pod

    async def prepare_workspace(self) -> None:
        await self.write_files_secret()
        self.log.info(
            "Starting pod %s for %s in namespace %s (home claim %s)",
            self.pod_name,
            self._log_name,
            self.namespace,
            self.pvc_name,
        )
