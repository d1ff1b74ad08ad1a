"""What the settings need installed (``labspace.needs``) and where Labspace finds
its proxy.

Packages are hidden the way an install without an extra lacks them: the module
name is ``None`` in ``sys.modules`` (in-process, ``monkeypatch``), or a
``sitecustomize`` does that in a real ``labspace up`` and a plain
``jupyterhub -f`` subprocess (``hidden_env``), which must print one line naming
the key and what to run, and no traceback."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import LABSPACE, REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from labspace import needs
from labspace.hubconfig import find_proxy
from labspace.settings import load

PYTHON = sys.executable
IN_REPO_VENV = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
GITHUB = "auth:\n  type: github\n  client_id: id\n  client_secret: secret-of-the-app\n"
GITHUB += "  allowed_users: [alice]\n"
GOOGLE = GITHUB.replace("github", "google")

# id, settings, hidden modules, the line's start, the fix's extra
CASES = [
    (
        "docker",
        "backend:\n  type: docker\n",
        ["dockerspawner"],
        "backend.type: docker needs dockerspawner",
        "docker",
    ),
    (
        "kubernetes",
        "backend:\n  type: kubernetes\n",
        ["kubespawner", "kubernetes_asyncio"],
        "backend.type: kubernetes needs jupyterhub-kubespawner, kubernetes-asyncio",
        "kubernetes",
    ),
    ("github-jwt", GITHUB, ["jwt"], "auth.type: github needs PyJWT", ""),
    ("google-ruamel", GOOGLE, ["ruamel"], "auth.type: google needs ruamel.yaml", ""),
    (
        "hub-postgres",
        "hub:\n  db_url: postgresql://labspace@db.example.org/hub\n",
        ["psycopg"],
        "hub.db_url: a PostgreSQL URL needs psycopg[binary]",
        "postgres",
    ),
    (
        "accounting-postgres",
        "accounting:\n  db_url: postgresql+psycopg://labspace@db.example.org/acc\n",
        ["psycopg"],
        "accounting.db_url: a PostgreSQL URL needs psycopg[binary]",
        "postgres",
    ),
]


def settings_in(tmp_path: Path, text: str):
    path = tmp_path / "labspace.yaml"
    path.write_text(text)
    return load(path, environ={})


@pytest.mark.parametrize(
    ("text", "hidden", "start", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_missing_package_is_one_line_with_the_key_and_the_fix(
    tmp_path, monkeypatch, text, hidden, start, extra
):
    settings = settings_in(tmp_path, text)
    assert needs.missing(settings) == []  # all installed here (the test extra has them all)
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)
    (line,) = needs.missing(settings)
    assert line.startswith(f"{start}, not installed for {PYTHON}; run ")
    if IN_REPO_VENV:  # `make up`'s venv: the fix is make up, or pip from the folder
        pip = f"`.venv/bin/pip install -e '.{f'[{extra}]' if extra else ''}'` there"
        make = f"`make up` in {REPO} (it installs all of Labspace's extras), or " if extra else ""
        assert line.endswith(f"; run {make}{pip}"), line
    assert "Traceback" not in line


def _closure(requirements: list[str], seen: set[str]) -> set[str]:
    """The installed distributions ``requirements`` pull in (names normalised)."""
    for line in requirements:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        _closure(dist.requires or [], seen)
    return seen


@pytest.mark.parametrize("extra", ["docker", "kubernetes", "postgres"])
def test_the_table_names_every_package_an_extra_adds(extra):
    """Each distribution an extra installs beyond Labspace's own requirements
    (the installed metadata, transitively) is one the table checks for."""
    declared = importlib.metadata.requires("labspace")
    core = _closure([r for r in declared if "extra ==" not in r], set())
    added = _closure(needs.requirements(extra), set()) - core
    need = needs.POSTGRES if extra == "postgres" else needs.BACKENDS[extra]
    listed = {canonicalize_name(p.split("[")[0]) for p in need.packages}
    assert added and added <= listed, added - listed
    by_module = importlib.metadata.packages_distributions()
    for module, package in zip(need.modules, need.packages, strict=True):
        names = {canonicalize_name(d) for d in by_module[module]}
        assert canonicalize_name(package.split("[")[0]) in names, (module, names)


def test_nothing_is_needed_for_the_embedded_default(tmp_path, monkeypatch):
    """The default settings (local backend, shared password, SQLite) need no extra."""
    for module in ("dockerspawner", "kubespawner", "psycopg", "oauthenticator", "jwt"):
        monkeypatch.setitem(sys.modules, module, None)
    assert needs.missing(settings_in(tmp_path, "")) == []


def test_a_disabled_service_database_needs_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    text = "catalog:\n  enabled: false\n  db_url: postgresql://labspace@db.example.org/catalog\n"
    assert needs.missing(settings_in(tmp_path, text)) == []


def test_psycopg_without_a_libpq_is_named(tmp_path, monkeypatch):
    """psycopg imports only with psycopg[binary], psycopg-c or the system's libpq."""
    settings = settings_in(tmp_path, "hub:\n  db_url: postgresql://labspace@db.example.org/hub\n")
    for module in needs.LIBPQ_WRAPPERS:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    (line,) = needs.missing(settings)
    assert line.startswith("hub.db_url: a PostgreSQL URL needs libpq, which psycopg did not find; ")
    assert line.endswith("or install the system's (Debian/Ubuntu: sudo apt install libpq5)")


def test_a_wheel_install_is_told_the_requirements_it_declares(tmp_path, monkeypatch):
    """No Labspace folder (a wheel installed by hand): pip the requirement lines
    the installed Labspace declares for the extra (from its real metadata)."""
    assert needs.requirements("docker") == ["dockerspawner>=13"]
    monkeypatch.setattr(needs, "source_folder", lambda: None)
    monkeypatch.setitem(sys.modules, "dockerspawner", None)
    (line,) = needs.missing(settings_in(tmp_path, "backend:\n  type: docker\n"))
    assert line.endswith(f"; run `{PYTHON} -m pip install 'dockerspawner>=13'`")


def test_the_labspace_folder_is_this_repository():
    assert needs.source_folder() == REPO
    assert needs.install_folders()[0] == REPO


def test_the_proxy_make_up_installed_is_found_from_anywhere(tmp_path, monkeypatch, proxy_command):
    """Settings in /etc-like folder, started from another folder, nothing on
    PATH: the repository's node_modules (where `make up` ran `npm ci`)."""
    installed = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if not installed.exists():
        pytest.skip("no node_modules in the repository (the proxy came from PATH)")
    etc, elsewhere, empty = tmp_path / "etc", tmp_path / "elsewhere", tmp_path / "bin"
    for folder in (etc, elsewhere, empty):
        folder.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PATH", str(empty))
    assert find_proxy(settings_in(etc, "")) == [str(installed)]


# -- through labspace up and plain jupyterhub ----------------------------------


@pytest.fixture
def hidden_env(tmp_path):
    """``env(*modules)``: an environment whose Pythons cannot import ``modules``."""

    def env(*modules: str) -> dict[str, str]:
        site = tmp_path / "hide"
        site.mkdir(exist_ok=True)
        lines = ["import sys"] + [f"sys.modules[{m!r}] = None" for m in modules]
        (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
        base = {k: v for k, v in os.environ.items() if not k.startswith("LABSPACE_")}
        return {**base, "PYTHONPATH": str(site)}

    return env


ALL_MISSING = (
    "backend:\n  type: docker\nhub:\n  db_url: postgres://labspace@db.example.org/hub\n" + GITHUB
)
ALL_LINES = [
    "  backend.type: docker needs dockerspawner, docker, not installed for",
    "  auth.type: github needs PyJWT, not installed for",
    "  hub.db_url: a PostgreSQL URL needs psycopg[binary], not installed for",
]


@pytest.mark.e2e
def test_labspace_up_names_every_missing_package_and_starts_nothing(tmp_path, hidden_env):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "labspace.yaml").write_text(ALL_MISSING)
    r = subprocess.run(
        [*LABSPACE, "up", "--config", str(etc / "labspace.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=hidden_env("dockerspawner", "docker", "jwt", "psycopg"),
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"{etc / 'labspace.yaml'}: 3 problems in Labspace settings", r.stderr
    for line, start in zip(lines[1:], ALL_LINES, strict=True):
        assert line.startswith(start), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (etc / "labspace-data").exists()  # nothing made


@pytest.mark.e2e
def test_plain_jupyterhub_names_the_missing_backend(tmp_path, hidden_env):
    """jupyterhub -f with the packaged config: the same line, not the spawner's
    import traceback."""
    (tmp_path / "labspace.yaml").write_text("backend:\n  type: docker\n")
    env = {**hidden_env("dockerspawner"), "LABSPACE_CONFIG": str(tmp_path / "labspace.yaml")}
    r = subprocess.run(
        [PYTHON, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert f"  backend.type: docker needs dockerspawner, not installed for {PYTHON}; " in r.stderr
    assert "Traceback" not in r.stderr


def test_config_validate_warns_of_what_this_python_lacks(tmp_path, monkeypatch):
    """The file is valid (it may be meant for another machine): exit 0, with a
    warning that the hub would not start here."""
    from click.testing import CliRunner

    from labspace import cli

    settings_in(tmp_path, "backend:\n  type: docker\n")
    monkeypatch.setitem(sys.modules, "dockerspawner", None)
    result = CliRunner().invoke(cli.main, ["config", "validate", str(tmp_path / "labspace.yaml")])
    assert result.exit_code == 0
    assert result.stderr.startswith(
        f"warning: backend.type: docker needs dockerspawner, not installed for {PYTHON}; run "
    )
    assert result.stdout.strip().endswith("labspace.yaml: valid")
