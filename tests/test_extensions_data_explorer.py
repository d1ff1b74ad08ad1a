"""The Data Explorer's views render to real Bokeh plots (no server, no browser):
a table gets a plot and a table, a NetCDF variable gets an image with a slider
for its extra dimension, an unreadable file a message."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr


@pytest.fixture
def explorer(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    sys.modules.pop("labspace.extensions.data_explorer", None)
    return importlib.import_module("labspace.extensions.data_explorer")


def model_types(layout) -> set[str]:
    from bokeh.document import Document

    root = layout.get_root(Document())
    return {type(m).__name__ for m in root.references()}


def test_table_view(explorer):
    frame = pd.DataFrame({"day": range(10), "temp": np.linspace(1, 5, 10), "site": list("ab") * 5})
    types = model_types(explorer.frame_view(frame, "~/w.csv"))
    assert {"figure", "Line"} <= types
    assert "DataTabulator" in types


def test_netcdf_view(explorer):
    data = np.arange(24, dtype=float).reshape(2, 3, 4)
    dataset = xr.Dataset(
        {"temp": (("time", "lat", "lon"), data)},
        coords={"time": [0, 1], "lat": [10.0, 20.0, 30.0], "lon": [1.0, 2.0, 3.0, 4.0]},
    )
    types = model_types(explorer.dataset_view(dataset, "~/era5.nc"))
    assert "Image" in types or "QuadMesh" in types
    assert any("Slider" in t for t in types)  # the time dimension


def test_unreadable_file(explorer, tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    view = explorer.view_file(bad, "~/broken.parquet")
    assert "Could not open \\~/broken.parquet" in view.object


def test_names_are_text_not_html(explorer, tmp_path):
    """A file or column name is escaped for the Markdown alerts and the table's
    column titles (Tabulator puts titles in as HTML)."""
    payload = "<img src=x onerror=alert(1)>[a](javascript:x)"
    bad = tmp_path / f"{payload}.parquet"
    bad.write_bytes(b"not parquet")
    shown = explorer.view_file(bad, payload).object
    assert "<img" not in shown and "&lt;img src=x onerror=alert\\(1\\)&gt;" in shown
    assert "\\[a\\]\\(javascript:x\\)" in shown
    frame = pd.DataFrame({payload: [1, 2], "y": [3, 4]})
    table = explorer.frame_view(frame, "t").objects[-1]
    assert table.titles[payload] == "&lt;img src=x onerror=alert(1)&gt;[a](javascript:x)"
