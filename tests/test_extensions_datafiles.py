"""The Data Explorer's file handling: which folders it reads, which files it
lists, and that a requested path never escapes those folders."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import xarray as xr

from labspace.extensions import datafiles


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / "results" / "deep" / "er" / "still" / "more").mkdir(parents=True)
    (home / ".hidden").mkdir()
    (home / "node_modules").mkdir()
    (home / "a.csv").write_text("x,y\n1,2\n2,4\n")
    (home / "results" / "b.parquet").write_bytes(b"")
    pd.DataFrame({"t": [1, 2, 3], "v": [0.1, 0.2, 0.3], "name": list("abc")}).to_parquet(
        home / "results" / "b.parquet"
    )
    xr.Dataset({"temp": (("time", "x"), [[1.0, 2.0], [3.0, 4.0]])}).to_netcdf(
        home / "results" / "c.nc", engine="h5netcdf"
    )
    (home / "results" / "deep" / "er" / "still" / "more" / "too-deep.csv").write_text("a\n1\n")
    (home / ".hidden" / "secret.csv").write_text("a\n1\n")
    (home / "node_modules" / "x.csv").write_text("a\n1\n")
    (home / "notes.txt").write_text("not data")
    # a data mount of the local backend: a link in the home to a folder elsewhere
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "era5.nc").write_bytes((home / "results" / "c.nc").read_bytes())
    (home / "reference").symlink_to(shared, target_is_directory=True)
    # a link to a file outside every root
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    (home / "sneaky.csv").symlink_to(outside)
    return home


def test_roots(home, tmp_path):
    roots = datafiles.data_roots(home, extra="")
    assert roots[0] == home.resolve()
    assert (tmp_path / "shared").resolve() in roots
    assert (tmp_path / "outside.csv") not in roots


def test_lists_data_files_only(home):
    roots = datafiles.data_roots(home, extra="")
    labels = [f.label for f in datafiles.list_data_files(roots, home)]
    assert labels == ["~/a.csv", "~/reference/era5.nc", "~/results/b.parquet", "~/results/c.nc"]


def test_lists_are_bounded(home):
    roots = datafiles.data_roots(home, extra="")
    assert len(datafiles.list_data_files(roots, home, max_files=2)) == 2


@pytest.mark.parametrize(
    "requested", ["~/a.csv", "a.csv", "results/b.parquet", "~/reference/era5.nc"]
)
def test_safe_path_inside(home, requested):
    roots = datafiles.data_roots(home, extra="")
    assert datafiles.safe_path(requested, roots, home).is_file()


@pytest.mark.parametrize(
    "requested, message",
    [
        ("~/../outside.csv", "outside the folders"),
        ("../outside.csv", "outside the folders"),
        ("sneaky.csv", "outside the folders"),
        ("/etc/passwd", "outside the folders"),
        ("~/notes.txt", "not a CSV, Parquet or NetCDF"),
        ("~/results", "not a CSV, Parquet or NetCDF"),
        ("~/nope.csv", "no such file"),
        ("a\x00.csv", "bad path"),
    ],
)
def test_safe_path_refuses(home, requested, message):
    roots = datafiles.data_roots(home, extra="")
    with pytest.raises(datafiles.UnsafePath, match=message):
        datafiles.safe_path(requested, roots, home)


def test_load(home):
    frame = datafiles.load(home / "results" / "b.parquet")
    assert datafiles.numeric_columns(frame) == ["t", "v"]
    dataset = datafiles.load(home / "results" / "c.nc")
    assert datafiles.plottable_variables(dataset) == ["temp"]
    assert list(datafiles.load(home / "a.csv").columns) == ["x", "y"]


def test_extra_roots_from_environment(tmp_path, monkeypatch):
    extra = tmp_path / "scratch"
    extra.mkdir()
    monkeypatch.setenv("LABSPACE_DATA_DIRS", f"{extra}:/nonexistent")
    roots = datafiles.data_roots(tmp_path)
    assert extra.resolve() in roots and all(os.path.isdir(r) for r in roots)
