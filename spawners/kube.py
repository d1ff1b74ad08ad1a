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
  account.

Every value is a ``@default``, so ``hub.config`` may still override any of them
for one site.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubespawner import KubeSpawner
from tornado import web
from traitlets import default

from labspace.profiles import Mount, WorkspaceSpec

from .mixin import LabspaceSpawnerMixin

HOME = "/home/jovyan"
HOME_VOLUME = "home"
GPU_RESOURCE = "nvidia.com/gpu"
PROFILE_LABEL = "labspace/profile"
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
    """Pod volume of a mount; the prefix keeps a mount named ``home`` apart."""
    return f"mount-{mount.name}"


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


def volume_mounts_for(mounts: Iterable[Mount]) -> list[dict[str, Any]]:
    return [
        {"name": volume_name(m), "mountPath": m.target, "readOnly": m.read_only} for m in mounts
    ]


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

    async def load_user_options(self):
        """Nothing to load: the mixin's ``apply_user_options`` applied the profile.

        (KubeSpawner's version checks ``user_options`` against its own
        ``profile_list``, which is empty here, and would refuse every profile.)
        """

    def apply_workspace_spec(self, spec: WorkspaceSpec) -> None:
        super().apply_workspace_spec(spec)
        try:
            volumes = volumes_for(spec.mounts)
        except ValueError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise web.HTTPError(
                500, f"This workspace cannot start: {e} (ask an administrator)"
            ) from None
        base = self._configured
        # "{pvc_name}" is expanded when the pod is built: KubeSpawner may still
        # settle the claim's name during start
        self.volumes = [*base["volumes"], home_volume("{pvc_name}"), *volumes]
        self.volume_mounts = [
            *base["volume_mounts"],
            home_volume_mount(),
            *volume_mounts_for(spec.mounts),
        ]
        gpus = gpu_resources(spec.gpus)
        self.extra_resource_limits = {**base["extra_resource_limits"], **gpus}
        self.extra_resource_guarantees = {**base["extra_resource_guarantees"], **gpus}
        self.node_selector = {**base["node_selector"], **spec.node_selector}
        self.tolerations = [*base["tolerations"], *spec.tolerations]
        self.extra_labels = {**base["extra_labels"], PROFILE_LABEL: spec.profile}

    def prepare_workspace(self) -> None:
        self.log.info(
            "Starting pod %s for %s in namespace %s (home claim %s)",
            self.pod_name,
            self._log_name,
            self.namespace,
            self.pvc_name,
        )
