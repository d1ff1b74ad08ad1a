"""What the settings need installed, said before anything imports it.

Each backend, sign-in provider and database driver Labspace runs is a Python
package. ``missing(settings)`` names those the settings need that this Python
cannot import, one line each: the key that needs it and what to run. It looks
with ``importlib.util.find_spec`` (nothing is imported: quick, and a missing
package is a line, not a traceback), and it is called by ``labspace up`` and by
``jupyterhub_config.py`` before the hub imports a spawner or an authenticator.

The fix names what works here: no Labspace package is published, so it is
``make up`` in the Labspace folder (which installs every backend) or pip from
that folder, or, for a wheel installed by hand, the requirement lines the
installed Labspace itself declares.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import rules
from . import settings as settings_mod

if TYPE_CHECKING:
    from .settings import Settings

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Need:
    """A part of Labspace that runs on other packages."""

    modules: tuple[str, ...]  # top-level import names it cannot run without
    packages: tuple[str, ...]  # what pip installs them from, in the same order
    extra: str = ""  # the Labspace extra that installs them ("" = always installed)


# what each extra adds to Labspace's own requirements (tests/test_needs.py checks
# these against the installed metadata)
BACKENDS = {
    "docker": Need(
        ("dockerspawner", "docker", "escapism"), ("dockerspawner", "docker", "escapism"), "docker"
    ),
    "kubernetes": Need(
        ("kubespawner", "kubernetes_asyncio", "escapism", "slugify", "text_unidecode"),
        (
            "jupyterhub-kubespawner",
            "kubernetes-asyncio",
            "escapism",
            "python-slugify",
            "text-unidecode",
        ),
        "kubernetes",
    ),
}
# every single sign-on provider: labspace.authenticators imports all of OAuthenticator's
# provider modules, which import PyJWT (oauth2, azuread) and requests (github), and
# oauthenticator/__init__ imports cilogon, which imports ruamel.yaml
SIGN_IN = Need(
    ("oauthenticator", "jwt", "requests", "ruamel"),
    ("oauthenticator", "PyJWT", "requests", "ruamel.yaml"),
)
POSTGRES = Need(("psycopg",), ("psycopg[binary]",), "postgres")
# psycopg runs on one of these, or on the system's libpq
LIBPQ_WRAPPERS = ("psycopg_binary", "psycopg_c")


def missing(settings: Settings) -> list[str]:
    """One line per library the settings need that this Python cannot import:
    the key, the value that needs it, what is missing and what to run."""
    lines = []
    for key, value, need in needs(settings):
        absent = [m for m in need.modules if not importable(m)]
        if absent:
            names = ", ".join(need.packages[need.modules.index(m)] for m in absent)
            lines.append(
                f"{key}: {value} needs {names}, not installed for {sys.executable}; "
                f"{fix(need, absent)}"
            )
        elif need is POSTGRES and not has_libpq():
            lines.append(
                f"{key}: {value} needs libpq, which psycopg did not find; {fix(need, [])} "
                "(psycopg[binary] brings one), or install the system's "
                "(Debian/Ubuntu: sudo apt install libpq5)"
            )
    return lines


def needs(settings: Settings) -> list[tuple[str, str, Need]]:
    """``(key, shown value, Need)`` for each part the settings turn on."""
    out = []
    backend = settings.get("backend.type")
    if backend in BACKENDS:
        out.append(("backend.type", backend, BACKENDS[backend]))
    auth = settings.get("auth.type")
    if auth != "shared-password":
        out.append(("auth.type", auth, SIGN_IN))
    for key in database_keys(settings):
        url = settings.get(key)
        if url and rules.database_url(url, Path(), key).startswith("postgresql+psycopg"):
            out.append((key, "a PostgreSQL URL", POSTGRES))
    return out


def database_keys(settings: Settings) -> list[str]:
    """``hub.db_url`` and each enabled service's ``<name>.db_url``."""
    keys = ["hub.db_url"]
    for name in settings_mod.SERVICE_SECTIONS:
        section = settings.get(name)
        if section.get("enabled") and "db_url" in section:
            keys.append(f"{name}.db_url")
    return keys


def importable(module: str) -> bool:
    """Whether ``import module`` (a top-level name) would find it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken entry in sys.modules
        return False


def has_libpq() -> bool:
    return any(importable(m) for m in LIBPQ_WRAPPERS) or bool(ctypes.util.find_library("pq"))


def source_folder() -> Path | None:
    """The Labspace folder this package runs from (an editable install, or the
    repository itself), or None for an installed wheel."""
    root = PACKAGE_DIR.parent
    pyproject = root / "pyproject.toml"
    try:
        if 'name = "labspace"' in pyproject.read_text():
            return root
    except OSError:
        pass
    return None


def install_folders() -> list[Path]:
    """Where ``make up`` or an operator puts what Labspace runs besides Python
    (node_modules): the Labspace folder, then the folder that holds this
    Python's environment (``/opt/labspace`` for ``/opt/labspace/.venv``)."""
    folders = []
    source = source_folder()
    if source:
        folders.append(source)
    prefix = Path(sys.prefix).resolve()
    for folder in (prefix, prefix.parent):
        if folder not in folders:
            folders.append(folder)
    return folders


def fix(need: Need, absent: list[str]) -> str:
    """What to run to install ``need``'s packages into this Python."""
    source = source_folder()
    extra = f"[{need.extra}]" if need.extra else ""
    if source is None:  # a wheel installed by hand: what it declares
        wanted = requirements(need.extra) if need.extra else []
        wanted = wanted or [need.packages[need.modules.index(m)] for m in absent]
        return f"run `{sys.executable} -m pip install {' '.join(repr(w) for w in wanted)}`"
    if Path(sys.prefix).resolve() != (source / ".venv").resolve():
        return f"run `{sys.executable} -m pip install -e '{source}{extra}'`"
    pip = f"`.venv/bin/pip install -e '.{extra}'` there"
    if not need.extra:
        return f"run {pip}"
    return f"run `make up` in {source} (it installs all of Labspace's extras), or {pip}"


def requirements(extra: str) -> list[str]:
    """The requirement lines the installed Labspace declares for ``extra``."""
    try:
        declared = importlib.metadata.requires("labspace") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = f'extra == "{extra}"'
    return [line.partition(";")[0].strip() for line in declared if marker in line]
