"""The workspace image installs what the bundled apps need: its
requirements-apps.txt lists the same packages and versions as pyproject's
``apps`` extra (what the local backend's environment gets)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def requirements(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            found[req.name.lower()] = str(req.specifier)
    return found


def test_image_installs_the_apps_extra():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = requirements(pyproject["project"]["optional-dependencies"]["apps"])
    image = requirements((REPO / "images/workspace/requirements-apps.txt").read_text().splitlines())
    assert image == extra


def test_netcdf_reader_is_installed():
    text = (REPO / "images/workspace/requirements-apps.txt").read_text()
    assert "h5netcdf[h5py]" in text  # h5netcdf >= 1.8 reads NetCDF-4 only with h5py
