"""The built wheel maps the repository's top-level folders onto ``labspace.*``.

The wheel is built from the source tree and installed (without dependencies)
into a scratch venv that borrows the test venv's third-party packages, then
imported from outside the repository, so a broken ``package-dir`` mapping or
missing package data fails here rather than for users.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUBPACKAGES = [
    "labspace",
    "labspace.cli",
    "labspace.settings",
    "labspace.hubconfig",
    "labspace.spawners",
    "labspace.spawners.local",
    "labspace.services",
    "labspace.extensions",
]

CHECK = """
import importlib, json, sys
from importlib import metadata, resources
mods = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
eps = {ep.name: ep.value for ep in metadata.entry_points(group="jupyterhub.spawners")}
spawner = metadata.entry_points(group="jupyterhub.spawners")["labspace-local"].load()
files = resources.files("labspace")
print(json.dumps({
    "modules": mods,
    "spawner": spawner.__name__,
    "scripts": [ep.value for ep in metadata.entry_points(group="console_scripts")
                if ep.name == "labspace"],
    "schema": json.loads(files.joinpath("schema/settings.schema.json").read_text())["title"],
    "hub_config": files.joinpath("jupyterhub_config.py").is_file(),
}))
"""


BUILD_CLUTTER = (".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # from a copy without build/: setuptools reuses build/lib, so a file the
    # package data leaves out would still reach the wheel from an earlier build
    source = tmp_path_factory.mktemp("source") / "labspace"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_CLUTTER))
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("labspace-*.whl")
    return found


def wheel_venv(wheel: Path, tmp_path: Path) -> tuple[Path, str]:
    """``(python, purelib)`` of a scratch venv holding the wheel (no dependencies)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # third-party dependencies come from the test venv; labspace only from the wheel
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            "--target",
            purelib,
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return python, purelib


def test_wheel_installs_and_imports_every_subpackage(wheel, tmp_path):
    python, purelib = wheel_venv(wheel, tmp_path)
    r = subprocess.run(
        [python, "-c", CHECK, *SUBPACKAGES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    for name, path in found["modules"].items():
        assert path.startswith(purelib), f"{name} imported from {path}, not the wheel"
    assert found["modules"]["labspace.spawners.local"].endswith("labspace/spawners/local.py")
    assert found["spawner"] == "LabspaceLocalSpawner"
    assert "labspace.cli:main" in found["scripts"]
    assert found["schema"] == "Labspace settings"
    assert found["hub_config"] is True


def test_a_wheel_without_an_extra_is_told_what_to_install(wheel, tmp_path):
    """A wheel installed without the docker extra, settings naming the docker
    backend: the fix is pip with the requirement the installed wheel declares
    (no Labspace folder to run make up in, no package to pip install by name)."""
    python, purelib = wheel_venv(wheel, tmp_path)
    Path(purelib, "sitecustomize.py").write_text(
        "import sys\nsys.modules['dockerspawner'] = None\n"
    )
    (tmp_path / "labspace.yaml").write_text("backend:\n  type: docker\n")
    r = subprocess.run(
        [
            python,
            "-c",
            "from labspace.cli import main; main()",
            "config",
            "validate",
            "labspace.yaml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        f"warning: backend.type: docker needs dockerspawner, not installed for {python}; "
        f"run `{python} -m pip install 'dockerspawner>=13'`\n"
    )


def test_wheel_holds_no_repository_clutter(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", "spawners/"))]
    assert "labspace/schema/settings.schema.json" in names
    assert "labspace/spawners/local.py" in names


# source folder -> where the wheel puts it (pyproject's package-dir)
PACKAGE_DIRS = {
    "labspace": "labspace",
    "services": "labspace/services",
    "extensions": "labspace/extensions",
    "spawners": "labspace/spawners",
}


def test_wheel_holds_every_template_and_static_file(wheel):
    """Pages need every file of their templates/ and static/ folders (a template
    including a .js file once went missing from the hub image: a 500 on /hub/home)."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for source, target in PACKAGE_DIRS.items():
        for path in sorted((REPO / source).rglob("*")):
            parts = path.relative_to(REPO / source).parts
            packaged = f"{target}/{'/'.join(parts)}" in names
            page_file = {"templates", "static"} & set(parts[:-1]) and "__pycache__" not in parts
            if path.is_file() and page_file and not packaged:
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"not in the wheel (pyproject's package-data): {missing}"
