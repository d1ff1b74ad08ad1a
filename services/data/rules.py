"""The data service's rules, each in one place: what a dataset may be, where its
files may lie, where it appears in a workspace and which grant wins.

- :func:`check_path`: a host path, normalised, under one of ``data.roots``
  (``..``, sibling prefixes and symlinks leading out of the root refused);
- :func:`check_dataset` / :func:`dataset_problems`: a dataset dict checked and
  normalised for a backend (the API answers the first problem as a 400, the
  settings check lists them all, one line each);
- :func:`check_grant`: a grant's subject and level;
- :func:`mount_path`: where a dataset appears in a workspace;
- :func:`strongest` / :func:`resolve_grants`: the strongest grant a person holds.

Pure functions (``check_path`` reads symlinks, nothing else): the service, the
hub's settings check and the hub's ``before_start`` hook all call them, so a
path refused when a dataset is saved is refused again at mount time.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from typing import Any

LEVELS = ("read", "write")  # ordered: later is stronger
ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
ID_HINT = "lowercase letters, digits and '-', at most 63, e.g. genomes"
KINDS = ("host", "volume", "pvc", "nfs", "s3")
BACKEND_KINDS = {
    "docker": ("host", "volume", "s3"),
    "kubernetes": ("pvc", "nfs", "host", "s3"),
    "local": ("host", "s3"),
}
HOME = "/home/jovyan"  # the workspace home of the docker and kubernetes backends
# folders of the image a dataset must not hide (nor anything under them)
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/opt/conda",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
)
FIELDS = (
    "id",
    "title",
    "description",
    "kind",
    "source",
    "sub_path",
    "mount_path",
    "size",
    "owner_group",
    "tags",
    "s3",
)
# keys a settings dataset also has; checked by their owners, not returned
OTHER_FIELDS = ("grants", "credentials")
S3_FIELDS = ("endpoint", "bucket", "prefix", "region")
MAX_TEXT = 200
MAX_SIZE = 2**63 - 1  # bytes a size may say (64-bit integers in every database)
MAX_DESCRIPTION = 4000

_ID_RE = re.compile(ID_PATTERN)
_VOLUME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_CLAIM_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+(:[0-9]{1,5})?/?")
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


class DataError(Exception):
    """A request or a dataset the service refuses: ``status`` is the HTTP status,
    ``message`` says what is wrong and how to put it right."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


# -- grants ------------------------------------------------------------------


def strongest(levels: Iterable[str]) -> str | None:
    """The strongest of ``levels`` (``write`` beats ``read``); unknown levels
    count for nothing; None when there is none."""
    ranks = [LEVELS.index(lv) for lv in levels if lv in LEVELS]
    return LEVELS[max(ranks)] if ranks else None


def grant_subject(grant: dict[str, Any]) -> tuple[str, str]:
    """``("group"|"user", name)`` of a grant written either way:
    ``{"group": "lab-a"}`` / ``{"user": "alice"}`` or
    ``{"subject_type": "group", "subject": "lab-a"}``."""
    if "subject_type" in grant:
        return str(grant.get("subject_type")), str(grant.get("subject") or "")
    if "group" in grant:
        return "group", str(grant["group"] or "")
    return "user", str(grant.get("user") or "")


def check_grant(grant: Any) -> dict[str, str]:
    """``{"subject_type", "subject", "level"}`` of a grant; DataError(400) for
    one that names no subject, both, an unknown subject type or level."""
    if not isinstance(grant, dict):
        raise DataError(400, 'grant: must be an object such as {"group": "lab-a", "level": "read"}')
    if "group" in grant and "user" in grant:
        raise DataError(400, "grant: names both a group and a user (one grant each)")
    kind, name = grant_subject(grant)
    if kind not in ("group", "user"):
        raise DataError(400, f"subject_type: {kind!r} is not a subject (group or user)")
    if not isinstance(grant.get(kind, grant.get("subject")), str) or not name.strip():
        raise DataError(400, "grant: names no group or user (give group: <name> or user: <name>)")
    if len(name) > 255:
        raise DataError(400, f"{kind}: longer than 255 characters")
    level = grant.get("level")
    if level not in LEVELS:
        raise DataError(400, f"level: {level!r} is not a level (read or write)")
    return {"subject_type": kind, "subject": name.strip(), "level": level}


def resolve_grants(grants: list[dict[str, Any]], user: str, groups: set[str]) -> dict[str, str]:
    """Dataset id → the strongest level ``user`` holds, by a grant to the user
    or to one of ``groups``. Each grant has ``dataset``, a subject (either
    spelling of :func:`grant_subject`) and ``level``; unknown levels count for
    nothing."""
    held: dict[str, list[str]] = {}
    for grant in grants:
        kind, name = grant_subject(grant)
        if (kind == "user" and name == user) or (kind == "group" and name in groups):
            held.setdefault(grant["dataset"], []).append(grant.get("level", ""))
    out = {}
    for dataset, levels in held.items():
        level = strongest(levels)
        if level:
            out[dataset] = level
    return out


# -- paths -------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (``/data/proj2`` is not inside
    ``/data/proj``). Both normalised."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_path(path: Any, roots: list[str], *, resolve_links: bool = True) -> str:
    """``path`` normalised, if it lies under one of ``roots``; else
    DataError(400). Refused: a path that is not absolute, has a ``..`` part,
    lies outside every root (a sibling such as ``/data/proj2`` of the root
    ``/data/proj`` included) or, with ``resolve_links``, whose real path (every
    symlink followed) leaves the root it lies under."""
    roots_hint = ", ".join(roots) or "none: set data.roots"
    if not isinstance(path, str) or not path:
        raise DataError(400, "source: no host path given (an absolute path under data.roots)")
    if "\0" in path:
        raise DataError(400, "source: the path holds a NUL character")
    if not path.startswith("/"):
        raise DataError(400, f"source: {path!r} is not an absolute path (under {roots_hint})")
    if ".." in path.split("/"):
        raise DataError(400, f"source: {path!r} has a '..' part (give the path without it)")
    norm = posixpath.normpath(path)
    norm = "/" + norm.lstrip("/")  # normpath keeps a leading '//'
    for root in roots:
        if not isinstance(root, str) or not root.startswith("/"):
            continue
        root_norm = "/" + posixpath.normpath(root).lstrip("/")
        if not _under(norm, root_norm):
            continue
        if resolve_links:
            real, real_root = os.path.realpath(norm), os.path.realpath(root_norm)
            if not _under(real, real_root):
                raise DataError(
                    400,
                    f"source: {path!r} leads out of the root {root} through a symbolic link "
                    f"(to {real}; give a path that stays under the root)",
                )
        return norm
    raise DataError(400, f"source: {path!r} is outside every allowed root ({roots_hint})")


def _relative(value: Any, field: str, example: str) -> str:
    """A relative path inside something, normalised ("" for none)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise DataError(400, f"{field}: must be a text (a relative path such as {example})")
    if value.startswith("/") or "\0" in value:
        raise DataError(400, f"{field}: {value!r} must be relative (such as {example})")
    if ".." in value.split("/"):
        raise DataError(400, f"{field}: {value!r} has a '..' part (stay inside the source)")
    norm = posixpath.normpath(value)
    return "" if norm == "." else norm


# -- datasets ----------------------------------------------------------------


def mount_path(d: dict[str, Any], backend: str) -> str:
    """Where dataset ``d`` appears in a workspace: its own ``mount_path``, else
    ``/data/<id>`` (local backend: ``~/data/<id>``, a link in the home)."""
    given = d.get("mount_path") or ""
    if given:
        return given
    return f"~/data/{d['id']}" if backend == "local" else f"/data/{d['id']}"


def parse_size(value: Any) -> int | None:
    """Bytes of a size: a number, or text such as ``10G`` (binary units, as
    every Labspace size: 10 GiB); None for ``""``/None. ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(value)
        return int(value)
    match = _SIZE_RE.fullmatch(str(value).strip())
    if not match:
        raise ValueError(value)
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _text(d: dict, field: str, default: str, limit: int) -> str:
    value = d.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise DataError(400, f"{field}: must be a text")
    if len(value) > limit:
        raise DataError(400, f"{field}: longer than {limit} characters (shorten it)")
    return value.strip()


def _id(d: dict) -> str:
    value = d.get("id")
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise DataError(400, f"id: {value!r} is not a dataset id ({ID_HINT})")
    return value


def _kind(d: dict, backend: str) -> str:
    kind = d.get("kind")
    if kind not in KINDS:
        raise DataError(400, f"kind: {kind!r} is not a kind ({', '.join(KINDS)})")
    mountable = BACKEND_KINDS.get(backend)
    if mountable is None:
        raise DataError(400, f"backend: {backend!r} is not a backend (local, docker, kubernetes)")
    if kind not in mountable:
        raise DataError(
            400,
            f"kind: the {backend} backend cannot mount {kind!r} datasets "
            f"(use one of {', '.join(mountable)})",
        )
    return kind


def _nfs(source: str) -> str:
    server, sep, export = source.partition(":")
    if not sep or not _HOST_RE.fullmatch(server) or not export.startswith("/"):
        raise DataError(
            400, f"source: {source!r} is not server:/export (e.g. files.example.org:/exports/data)"
        )
    if ".." in export.split("/"):
        raise DataError(400, f"source: {source!r} has a '..' part (give the export without it)")
    return f"{server}:/" + posixpath.normpath(export).lstrip("/")


def _source(d: dict, kind: str, roots: list[str], resolve_links: bool) -> str:
    source = d.get("source")
    if source is None:
        source = ""
    if not isinstance(source, str):
        raise DataError(400, "source: must be a text")
    if kind == "s3":
        if source:
            raise DataError(400, "source: unused for s3 datasets (give s3.bucket and s3.prefix)")
        return ""
    if not source:
        what = {
            "host": "an absolute path under data.roots",
            "volume": "a Docker volume name",
            "pvc": "a PersistentVolumeClaim name",
            "nfs": "server:/export",
        }[kind]
        raise DataError(400, f"source: missing ({what})")
    if kind == "host":
        return check_path(source, roots, resolve_links=resolve_links)
    if kind == "volume" and not _VOLUME_RE.fullmatch(source):
        raise DataError(400, f"source: {source!r} is not a Docker volume name (e.g. lab-scratch)")
    if kind == "pvc" and not _CLAIM_RE.fullmatch(source):
        raise DataError(
            400,
            f"source: {source!r} is not a claim name (lowercase letters, digits, '-', '.')",
        )
    if kind == "nfs":
        return _nfs(source)
    return source


def _sub_path(d: dict, kind: str) -> str:
    sub = _relative(d.get("sub_path"), "sub_path", "genomes/hg38")
    if sub and kind not in ("pvc", "nfs", "volume"):
        fix = "put the folder in s3.prefix" if kind == "s3" else "put the folder in source"
        raise DataError(400, f"sub_path: only pvc, nfs and volume datasets have one ({fix})")
    return sub


def _mount_path(d: dict, backend: str) -> str:
    value = d.get("mount_path")
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or "\0" in value:
        raise DataError(400, "mount_path: must be a path (empty: /data/<id>)")
    if ".." in value.split("/"):
        raise DataError(400, f"mount_path: {value!r} has a '..' part (give the path without it)")
    if backend == "local":
        if not value.startswith("~/"):
            raise DataError(
                400,
                f"mount_path: {value!r}: the local backend links datasets into the home "
                "(give ~/<folder>, or leave empty for ~/data/<id>)",
            )
        rest = posixpath.normpath(value[2:])
        if rest in (".", "") or rest.startswith("."):
            raise DataError(400, f"mount_path: {value!r} is the home or a hidden folder")
        return "~/" + rest
    if not value.startswith("/"):
        raise DataError(400, f"mount_path: {value!r} is not absolute (e.g. /data/genomes)")
    norm = "/" + posixpath.normpath(value).lstrip("/")
    if _under(HOME, norm) or _under(norm, HOME):
        raise DataError(
            400, f"mount_path: {value!r} is in or above the home {HOME} (use /data/<folder>)"
        )
    if any(_under(norm, system) for system in SYSTEM_DIRS):
        raise DataError(
            400, f"mount_path: {value!r} would hide a system folder (use /data/<folder>)"
        )
    return norm


def _s3(d: dict, kind: str) -> dict[str, str] | None:
    value = d.get("s3")
    if kind != "s3":
        if value:
            raise DataError(400, f"s3: only s3 datasets have one (this one is {kind})")
        return None
    if not isinstance(value, dict):
        raise DataError(400, "s3: missing (give endpoint, bucket, prefix, region)")
    unknown = sorted(set(value) - set(S3_FIELDS))
    if unknown:
        raise DataError(400, f"s3.{unknown[0]}: unknown ({', '.join(S3_FIELDS)})")
    out = {}
    for key in S3_FIELDS:
        item = value.get(key) or ""
        if not isinstance(item, str):
            raise DataError(400, f"s3.{key}: must be a text")
        out[key] = item.strip()
    if out["endpoint"] and not _ENDPOINT_RE.fullmatch(out["endpoint"]):
        raise DataError(
            400,
            f"s3.endpoint: {out['endpoint']!r} is not an http(s) address without user or path "
            "(e.g. https://s3.example.org; empty: AWS)",
        )
    if not _BUCKET_RE.fullmatch(out["bucket"]):
        raise DataError(
            400,
            f"s3.bucket: {out['bucket']!r} is not a bucket name (3-63 lowercase letters, "
            "digits, '.', '-')",
        )
    prefix = _relative(out["prefix"], "s3.prefix", "genomes/")
    out["prefix"] = prefix + "/" if prefix else ""
    if not re.fullmatch(r"[a-z0-9-]{0,40}", out["region"]):
        raise DataError(400, f"s3.region: {out['region']!r} is not a region (e.g. eu-west-1)")
    return out


def _size(d: dict) -> int | None:
    try:
        size = parse_size(d.get("size"))
    except (ValueError, OverflowError):
        raise DataError(
            400, f"size: {d.get('size')!r} is not a size (bytes, or e.g. 10G; empty: unknown)"
        ) from None
    if size is not None and size > MAX_SIZE:
        raise DataError(400, f"size: at most {MAX_SIZE} bytes (8 EiB)")
    return size


def _tags(d: dict) -> list[str]:
    tags = d.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise DataError(400, "tags: must be a list of non-empty texts")
    if any(len(t) > 64 for t in tags):
        raise DataError(400, "tags: a tag is longer than 64 characters")
    return list(dict.fromkeys(t.strip() for t in tags))


def _steps(d: dict, roots: list[str], backend: str, resolve_links: bool):
    """(field, function giving its normalised value) in checking order; a step
    that raises leaves the others to run (``dataset_problems`` lists them all)."""
    kind = d.get("kind") if d.get("kind") in KINDS else "host"
    return [
        ("id", lambda: _id(d)),
        ("title", lambda: _text(d, "title", "", MAX_TEXT) or str(d.get("id") or "")),
        ("description", lambda: _text(d, "description", "", MAX_DESCRIPTION)),
        ("kind", lambda: _kind(d, backend)),
        ("source", lambda: _source(d, kind, roots, resolve_links)),
        ("sub_path", lambda: _sub_path(d, kind)),
        ("mount_path", lambda: _mount_path(d, backend)),
        ("size", lambda: _size(d)),
        ("owner_group", lambda: _text(d, "owner_group", "", 255)),
        ("tags", lambda: _tags(d)),
        ("s3", lambda: _s3(d, kind)),
    ]


def _check(
    d: Any, roots: list[str], backend: str, resolve_links: bool
) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(d, dict):
        return {}, ['dataset: must be an object such as {"id": "genomes", "kind": "host", ...}']
    problems = [
        f"{key}: unknown field ({', '.join(FIELDS)})"
        for key in d
        if key not in FIELDS and key not in OTHER_FIELDS
    ]
    out: dict[str, Any] = {}
    for key, step in _steps(d, roots, backend, resolve_links):
        try:
            out[key] = step()
        except DataError as e:
            problems.append(e.message)
    return out, problems


def check_dataset(
    d: Any, roots: list[str], backend: str, *, resolve_links: bool = True
) -> dict[str, Any]:
    """Dataset ``d`` checked for ``backend`` and normalised, with defaults (title:
    the id; ``mount_path`` stays ``""`` when not given: :func:`mount_path` says
    where it appears; ``size`` in bytes or None; ``s3`` None unless kind s3).
    ``grants``/``credentials`` keys are allowed and left out (their owners check
    them). Raises DataError(400, "<field>: <what> (<fix>)") for the first problem."""
    out, problems = _check(d, roots, backend, resolve_links)
    if problems:
        raise DataError(400, problems[0])
    return out


def dataset_problems(
    where: str, d: Any, roots: list[str], backend: str, *, resolve_links: bool = True
) -> list[str]:
    """Every problem of dataset ``d``, one line each, ``<where>.<field>: ...``
    (for the settings check)."""
    if not isinstance(d, dict):
        return [f"{where}: must be a mapping (id, title, kind, source, ...)"]
    _, problems = _check(d, roots, backend, resolve_links)
    return [f"{where}.{p}" for p in problems]
