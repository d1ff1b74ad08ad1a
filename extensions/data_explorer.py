"""Data Explorer: a Panel app that opens a CSV, Parquet or NetCDF file from the
home folder or the mounted data and plots it (hvplot on Bokeh).

Served by ``panel serve`` through jupyter-server-proxy (see bundled.py); Bokeh
and Panel serve their own JavaScript, so it works without internet. Open a file
directly with ``?file=~/path/to/file.csv``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import hvplot.pandas  # noqa: F401  (registers .hvplot on DataFrames)
import hvplot.xarray  # noqa: F401  (registers .hvplot on DataArrays)
import panel as pn

from labspace.extensions import datafiles

pn.extension("tabulator", sizing_mode="stretch_width", notifications=True)

KINDS = ["line", "scatter", "bar", "area", "hist", "box"]
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#|~])")


def text(value) -> str:
    """Any file name, column name, path or error message as literal text for a
    Markdown pane (Alert included): Markdown and HTML both escaped, so a name such
    as ``<img src=x onerror=...>`` is shown, never run."""
    return html.escape(MARKDOWN_SPECIAL.sub(r"\\\1", str(value)))


def frame_view(frame, title: str):
    columns = [str(c) for c in frame.columns]
    numeric = datafiles.numeric_columns(frame) or columns
    x = pn.widgets.Select(label="x", options=["(index)", *columns], value=columns[0])
    chosen = [c for c in numeric if c != columns[0]][:3] or numeric[-1:]
    y = pn.widgets.MultiSelect(label="y", options=numeric, value=chosen, size=6)
    kind = pn.widgets.Select(label="Plot", options=KINDS, value="line")

    def plot(x, y, kind):
        if not y:
            return pn.pane.Markdown("Choose one or more columns for **y**.")
        options = {"kind": kind, "y": list(y), "title": title, "responsive": True, "height": 420}
        if x != "(index)" and kind not in ("hist", "box"):
            options["x"] = x
        try:
            return frame.hvplot(**options)
        except Exception as e:  # a column the plot kind cannot draw: say so, keep the app
            return pn.pane.Alert(
                f"Cannot draw a {text(kind)} plot of these columns: {text(e)}",
                alert_type="warning",
            )

    # Tabulator puts column titles into the page as HTML: give it escaped ones
    titles = {c: html.escape(str(c)) for c in frame.columns}
    table = pn.widgets.Tabulator(
        frame.head(100), titles=titles, height=260, disabled=True, pagination=None
    )
    controls = pn.Row(kind, x, y)
    return pn.Column(
        controls,
        pn.bind(plot, x, y, kind),
        pn.pane.Markdown(f"{len(frame):,} rows × {len(columns)} columns"),
        table,
    )


def dataset_view(dataset, title: str):
    variables = datafiles.plottable_variables(dataset)
    if not variables:
        return pn.pane.Markdown("This file has no variables with dimensions to plot.")
    var = pn.widgets.Select(label="Variable", options=variables, value=variables[0])

    def plot(var):
        array = dataset[var]
        options = {"title": f"{title}: {var}", "responsive": True, "height": 440}
        try:
            if array.ndim == 1:
                return array.hvplot.line(**options)
            # a map of the last two dimensions, a slider for each other one
            *others, y, x = array.dims
            return array.hvplot.image(
                x=x, y=y, groupby=list(others), widget_location="bottom", **options
            )
        except Exception as e:
            return pn.pane.Alert(f"Cannot plot {text(var)}: {text(e)}", alert_type="warning")

    summary = pn.pane.HTML(dataset._repr_html_(), sizing_mode="stretch_width")
    return pn.Column(
        var, pn.bind(plot, var), pn.layout.Card(summary, title="Dataset", collapsed=True)
    )


def view_file(path: Path, label: str):
    try:
        data = datafiles.load(path)
    except Exception as e:  # unreadable file: tell the user, keep the app alive
        return pn.pane.Alert(f"Could not open {text(label)}: {text(e)}", alert_type="danger")
    if datafiles.kind_of(path) == "netcdf":
        return dataset_view(data, label)
    return frame_view(data, label)


def cannot_open_link():
    """Say that the ``?file=`` of the link was refused. Notifications are HTML and
    a link is anyone's to write: the requested path is never echoed."""
    if pn.state.notifications is not None:
        pn.state.notifications.error(
            "The file in this link cannot be opened: it is missing, not a CSV, Parquet "
            "or NetCDF file, or outside your home and your data. Choose one below.",
            duration=0,
        )


def build():
    home = Path.home()
    roots = datafiles.data_roots(home)
    files = datafiles.list_data_files(roots, home)
    options = {f.label: str(f.path) for f in files}
    picker = pn.widgets.Select(label="File", options={"(choose a file)": "", **options})
    requested = (
        pn.state.session_args.get("file", [b""])[0].decode() if pn.state.session_args else ""
    )
    if requested:
        try:
            path = datafiles.safe_path(requested, roots, home)
        except datafiles.UnsafePath:
            pn.state.onload(cannot_open_link)
        else:
            label = next((f.label for f in files if f.path == path), str(path))
            picker.options = {**picker.options, label: str(path)}
            picker.value = str(path)

    def show(value):
        if not value:
            found = f"{len(files)} data file(s)" if files else "No CSV, Parquet or NetCDF files"
            where = ", ".join(text(r) for r in roots)
            return pn.pane.Markdown(f"{found} found in {where}. Choose one above.")
        path = datafiles.safe_path(value, roots, home)
        label = next((k for k, v in picker.options.items() if v == value), value)
        return view_file(path, label)

    header = pn.pane.Markdown("# Data Explorer", margin=(0, 10))
    return pn.Column(header, picker, pn.panel(pn.bind(show, picker), loading_indicator=True))


build().servable(title="Data Explorer")
