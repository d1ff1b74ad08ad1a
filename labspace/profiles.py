"""Workspace profiles: which a person may choose, and what a choice means.

``resolve()`` is the one rule: settings + the person's groups + ``user_options``
→ a ``WorkspaceSpec``. Every backend turns that spec into its own objects
(a process, a container, a pod); nothing from ``user_options`` reaches a
backend except through it. Pure functions, golden-tested.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.traitlets import ByteSpecification

ALLOWED_OPTIONS = frozenset({"profile"})
DEFAULT_SLUG = "default"


class ProfileError(Exception):
    """A choice the person may not make; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Mount:
    """Something mounted into a workspace: a host folder, a named volume, a PVC or NFS."""

    name: str
    type: str  # host | volume | pvc | nfs
    source: str  # host path | volume name | claim name | server:/export
    target: str  # path inside the workspace; local backend: "~/..." is a link in the home
    read_only: bool = True
    sub_path: str = ""  # volume, pvc, nfs: a relative folder inside the source


# where the docker and kubernetes backends put a spec's files in the workspace
FILES_DIR = "/run/labspace"


@dataclass(frozen=True)
class WorkspaceFile:
    """A file one start of a workspace gets outside its home (e.g. credentials),
    readable by the workspace's user only, and never kept past the workspace: the
    backend puts it in its ``files_dir`` (``/run/labspace`` in a container or
    pod; a per-server folder under the hub's data folder for the local backend,
    removed at stop). ``name`` is a plain file name."""

    name: str
    content: str

    def __repr__(self) -> str:  # the content may be a secret: never in a log
        return f"WorkspaceFile({self.name!r}, <{len(self.content)} characters>)"


@dataclass(frozen=True)
class WorkspaceSpec:
    """What one workspace gets. Memory in bytes, CPU in cores; None = no bound."""

    profile: str
    display_name: str
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: int | None = None
    mem_limit: int | None = None
    gpus: int = 0
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    files: tuple[WorkspaceFile, ...] = ()  # added by before_start hooks, never by settings


def to_bytes(value: str | int | float | None) -> int | None:
    """``"4G"`` → 4294967296, as JupyterHub's ``mem_limit`` reads it; a number
    without a unit (``"512"``, which the schema allows) is bytes."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value[-1].isdigit():
        return int(float(value))
    return int(ByteSpecification().validate(None, value))


def human_bytes(n: int | None) -> str:
    if n is None:
        return "no limit"
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            text = f"{n / size:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}B"
    return f"{n} B"


def mounts_from(items: list[dict[str, Any]]) -> tuple[Mount, ...]:
    return tuple(
        Mount(m["name"], m["type"], m["source"], m["target"], m.get("read_only", True))
        for m in items
    )


def implicit_profile(backend: dict[str, Any]) -> dict[str, Any]:
    """The one profile of a settings file that declares none."""
    return {
        "slug": DEFAULT_SLUG,
        "display_name": "Default",
        "description": "The standard workspace.",
        "default": True,
        "groups": [],
    }


def all_profiles(settings_profiles: list[dict[str, Any]], backend: dict[str, Any]) -> list[dict]:
    return list(settings_profiles) or [implicit_profile(backend)]


def visible_profiles(
    settings_profiles: list[dict[str, Any]], backend: dict[str, Any], groups: set[str]
) -> list[dict[str, Any]]:
    """Profiles a person in ``groups`` may use (``groups: []`` = everyone)."""
    return [
        p
        for p in all_profiles(settings_profiles, backend)
        if not p.get("groups") or set(p["groups"]) & groups
    ]


def default_profile(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    return next((p for p in profiles if p.get("default")), profiles[0])


def check_options(user_options: Any, extra_keys: frozenset[str] = frozenset()) -> None:
    """Refuse what is not a JSON object or names an option nobody handles;
    ``extra_keys`` are the options services handle (e.g. ``project``, ``app``)."""
    if not isinstance(user_options, dict):
        raise ProfileError(400, 'Options must be a JSON object such as {"profile": "small"}')
    unknown = sorted(set(user_options) - ALLOWED_OPTIONS - extra_keys)
    if unknown:
        if extra_keys:
            known = ", ".join(repr(k) for k in sorted(ALLOWED_OPTIONS | extra_keys))
            hint = f"the options are {known}"
        else:
            hint = "the only option is 'profile' (the slug of a profile you may use)"
        raise ProfileError(400, f"Unknown option {unknown[0]!r}: {hint}")
    if "profile" in user_options and not isinstance(user_options["profile"], str):
        raise ProfileError(400, "Option 'profile' must be a profile slug (a string)")


def resolve(
    settings_profiles: list[dict[str, Any]],
    backend: dict[str, Any],
    groups: set[str],
    user_options: Any,
    extra_keys: frozenset[str] = frozenset(),
) -> WorkspaceSpec:
    """The workspace a person gets for ``user_options``; raises ProfileError."""
    check_options(user_options, extra_keys)
    everyone = all_profiles(settings_profiles, backend)
    mine = visible_profiles(settings_profiles, backend, groups)
    slug = user_options.get("profile")
    if slug is None:
        if not mine:
            raise ProfileError(
                403, "No workspace profile is open to your groups (ask an administrator)"
            )
        chosen = default_profile(mine)
    else:
        chosen = next((p for p in everyone if p["slug"] == slug), None)
        if chosen is None:
            names = ", ".join(p["slug"] for p in mine) or "none"
            raise ProfileError(400, f"No such profile: {slug!r} (yours: {names})")
        if chosen not in mine:
            raise ProfileError(403, f"Profile {slug!r} is not open to your groups")
    return spec_for(chosen, backend)


def spec_for(profile: dict[str, Any], backend: dict[str, Any]) -> WorkspaceSpec:
    """Merge a profile over the backend's defaults."""
    cpu = profile.get("cpu") or {}
    mem = profile.get("memory") or {}
    env = {**backend.get("env", {}), **profile.get("env", {})}
    return WorkspaceSpec(
        profile=profile["slug"],
        display_name=profile.get("display_name") or profile["slug"],
        cpu_guarantee=cpu.get("guarantee"),
        cpu_limit=cpu.get("limit"),
        mem_guarantee=to_bytes(mem.get("guarantee")),
        mem_limit=to_bytes(mem.get("limit")),
        gpus=profile.get("gpus", 0),
        image=profile.get("image") or backend.get("image", ""),
        env=env,
        mounts=mounts_from(backend.get("mounts", [])) + mounts_from(profile.get("mounts", [])),
        node_selector=dict(profile.get("node_selector", {})),
        tolerations=tuple(profile.get("tolerations", [])),
    )


def allowed_images(settings_profiles: list[dict[str, Any]], backend: dict[str, Any]) -> set[str]:
    """The only images a workspace may run: the backend's and the profiles'."""
    images = {backend.get("image", "")} | {p.get("image", "") for p in settings_profiles}
    return {i for i in images if i}


def check_image(
    spec: WorkspaceSpec, settings_profiles: list[dict[str, Any]], backend: dict[str, Any]
) -> str:
    """The spec's image if the settings allow it (``backend.image`` or a profile's);
    else ProfileError 403. Only backends that run images call it."""
    allowed = allowed_images(settings_profiles, backend)
    if spec.image not in allowed:
        raise ProfileError(
            403,
            f"Image {spec.image!r} of profile {spec.profile!r} is not allowed here "
            "(ask an administrator to set backend.image or the profile's image)",
        )
    return spec.image


def describe(profile: dict[str, Any], backend: dict[str, Any]) -> str:
    """One line of resources, as the spawn form shows it."""
    spec = spec_for(profile, backend)
    cpu = f"{spec.cpu_limit:g} CPU" if spec.cpu_limit else "shared CPU"
    parts = [cpu, f"{human_bytes(spec.mem_limit)} memory" if spec.mem_limit else "shared memory"]
    if spec.gpus:
        parts.append(f"{spec.gpus} GPU" + ("s" if spec.gpus > 1 else ""))
    return " · ".join(parts)


def options_form(
    profiles: list[dict[str, Any]],
    backend: dict[str, Any],
    labels: dict[str, str] | None = None,
    extra_html: str = "",
) -> str:
    """The spawn form: one radio button per profile the person may use.

    ``labels`` fill each choice's ``labspace-price`` slot (accounting puts the
    price there); ``extra_html`` (already safe HTML from a service, e.g. the
    project to charge) follows the list.
    """
    labels = labels or {}
    chosen = default_profile(profiles)["slug"]
    rows = []
    for p in profiles:
        slug = html.escape(p["slug"])
        checked = " checked" if p["slug"] == chosen else ""
        rows.append(
            f"""<label class="labspace-profile" for="profile-{slug}">
  <input type="radio" name="profile" id="profile-{slug}" value="{slug}"{checked}>
  <span class="labspace-profile-name">{html.escape(p.get("display_name") or p["slug"])}</span>
  <span class="labspace-profile-resources">{html.escape(describe(p, backend))}</span>
  <span class="labspace-profile-description">{html.escape(p.get("description", ""))}</span>
  <span class="labspace-price" data-profile="{slug}">{html.escape(labels.get(p["slug"], ""))}</span>
</label>"""
        )
    return (
        '<fieldset class="labspace-profiles"><legend>Workspace</legend>\n'
        + "\n".join(rows)
        + "\n</fieldset>"
        + (f"\n{extra_html}" if extra_html else "")
    )


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields → ``user_options``; validated later by ``resolve`` like any API call."""
    options: dict[str, Any] = {}
    if formdata.get("profile"):
        options["profile"] = formdata["profile"][0]
    extra = sorted(k for k in formdata if k != "profile" and not k.startswith("_"))
    for key in extra:  # carried through so resolve() refuses them by name
        options[key] = formdata[key][0] if formdata[key] else ""
    return options


NFS_SOURCE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:/\S*$")
RESERVED_TARGETS = {"/home/jovyan", "/home"}
MOUNT_TYPES = {
    "local": {"host"},
    "docker": {"host", "volume"},
    "kubernetes": {"pvc", "nfs", "host"},
}


def _bound_problems(where: str, section: dict[str, Any], convert) -> list[str]:
    low, high = section.get("guarantee"), section.get("limit")
    if low is None or high is None:
        return []
    if convert(low) > convert(high):
        return [f"{where}.guarantee: {low} is more than the limit {high} (at most the limit)"]
    return []


def problems(settings_profiles: list[dict[str, Any]], backend: dict[str, Any]) -> list[str]:
    """Settings problems of ``profiles`` and ``backend.mounts`` (already schema-valid)."""
    out: list[str] = []
    kind = backend.get("type", "local")
    # every workspace gets the backend's mounts and its profile's: names and
    # targets must differ across both lists
    shared = _mount_keys("backend.mounts", backend.get("mounts", []))
    seen: dict[str, int] = {}
    for i, p in enumerate(settings_profiles):
        where = f"profiles[{i}]"
        if p["slug"] in seen:
            out.append(
                f"{where}.slug: {p['slug']!r} is also profiles[{seen[p['slug']]}] "
                "(give each profile its own slug)"
            )
        seen.setdefault(p["slug"], i)
        out += _bound_problems(f"{where}.cpu", p.get("cpu") or {}, float)
        out += _bound_problems(f"{where}.memory", p.get("memory") or {}, to_bytes)
        out += _mount_problems(f"{where}.mounts", p.get("mounts", []), kind, shared)
    defaults = [i for i, p in enumerate(settings_profiles) if p.get("default")]
    if len(defaults) > 1:
        out.append(
            f"profiles[{defaults[1]}].default: profiles[{defaults[0]}] is the default "
            "already (mark one profile default)"
        )
    out += _mount_problems("backend.mounts", backend.get("mounts", []), kind)
    return out


def _mount_keys(where: str, mounts: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """``{("name", n): "where[j]", ("target", t): "where[j]"}``, first use wins."""
    keys: dict[tuple[str, str], str] = {}
    for j, m in enumerate(mounts):
        keys.setdefault(("name", m["name"]), f"{where}[{j}]")
        keys.setdefault(("target", m["target"]), f"{where}[{j}]")
    return keys


def _mount_problems(
    where: str,
    mounts: list[dict[str, Any]],
    kind: str,
    shared: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """Mount types the backend cannot do; names and targets used twice, in this
    list or in ``shared`` (the backend's mounts, which every workspace gets too)."""
    out = []
    taken = dict(shared or {})
    for j, m in enumerate(mounts):
        if m["type"] not in MOUNT_TYPES[kind]:
            fits = ", ".join(sorted(MOUNT_TYPES[kind]))
            out.append(
                f"{where}[{j}].type: {m['type']!r} mounts do not work on the {kind} "
                f"backend (use one of: {fits})"
            )
        elif m["type"] == "nfs" and not NFS_SOURCE.match(m["source"]):
            out.append(
                f"{where}[{j}].source: {m['source']!r} is not an NFS export "
                "(server:/export, e.g. nfs.example.org:/srv/data)"
            )
        if m["target"].rstrip("/") in RESERVED_TARGETS:
            out.append(
                f"{where}[{j}].target: {m['target']!r} is where the home folder is mounted "
                "(mount below it or elsewhere, e.g. /data/<name>)"
            )
        for key in ("name", "target"):
            other = taken.setdefault((key, m[key]), f"{where}[{j}]")
            if other != f"{where}[{j}]":
                out.append(
                    f"{where}[{j}].{key}: {m[key]!r} is also the {key} of {other} "
                    f"(give each mount its own {key})"
                )
    return out
