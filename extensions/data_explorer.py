"""Data Explorer: a Panel app that opens a CSV, Parquet or NetCDF file from the
home folder or the mounted data and plots it (hvplot on Bokeh).

Served by ``panel serve`` through jupyter-server-proxy (see bundled.py); Bokeh
and Panel serve their own JavaScript, so it works without internet. Open a file
directly with ``?file=~/path/to/file.csv``.

The datasets of the workspace (``LABSPACE_DATASETS``, see datasets.py) are listed
too: a folder dataset's files wherever it is mounted, an s3 dataset's files
through fsspec with the grant's own key pair.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import hvplot.pandas  # noqa: F401  (registers .hvplot on DataFrames)
import hvplot.xarray  # noqa: F401  (registers .hvplot on DataArrays)
import panel as pn

from labspace.extensions import datafiles, datasets

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
    return view_data(lambda: datafiles.load(path), datafiles.kind_of(path), label)


def view_s3(value: str, label: str):
    """``value`` is ``s3:<dataset id>:<key>`` (an option of the picker)."""
    _, dataset_id, key = value.split(":", 2)
    kind = datafiles.SUFFIXES.get(Path(key).suffix.lower(), "csv")
    return view_data(lambda: datasets.load(dataset_id, key), kind, label)


def view_data(load, kind: str, label: str):
    try:
        data = load()
    except Exception as e:  # unreadable file: tell the user, keep the app alive
        return pn.pane.Alert(f"Could not open {text(label)}: {text(e)}", alert_type="danger")
    if kind == "netcdf":
        return dataset_view(data, label)
    return frame_view(data, label)


def dataset_roots() -> str:
    """LABSPACE_DATA_DIRS plus the folders of the workspace's folder datasets
    (a mount_path outside /data is listed too)."""
    paths = [d["path"] for d in datasets.datasets() if d["kind"] != "s3"]
    return ":".join([os.environ.get("LABSPACE_DATA_DIRS", ""), *paths])


def s3_files() -> tuple[dict[str, str], list[str]]:
    """Picker options ``{label: "s3:<id>:<key>"}`` of every s3 dataset, and one
    line per s3 dataset that could not be listed (its message, no secret)."""
    options: dict[str, str] = {}
    problems: list[str] = []
    for d in datasets.datasets():
        if d["kind"] != "s3":
            continue
        try:
            found = datasets.s3_data_files(d["id"])
        except Exception as e:  # unreachable endpoint, a revoked key: say so, list the rest
            problems.append(f"{d['id']}: cannot be listed ({e})")
            continue
        options.update({label: f"s3:{d['id']}:{key}" for label, key in found})
    return options, problems


def datasets_note(problems: list[str]):
    """What the workspace was given: each dataset, its level and where it is."""
    rows = [
        f"- **{text(d['title'])}** ({text(d['level'])}): {text(d['url'] or d['path'])}"
        for d in datasets.datasets()
    ]
    rows += [f"- {text(p)}" for p in problems]
    return (
        pn.pane.Markdown("**Datasets of this workspace**\n\n" + "\n".join(rows)) if rows else None
    )


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
    roots = datafiles.data_roots(home, extra=dataset_roots())
    files = datafiles.list_data_files(roots, home)
    remote, problems = s3_files()
    options = {**{f.label: str(f.path) for f in files}, **remote}
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
            count = len(files) + len(remote)
            found = f"{count} data file(s)" if count else "No CSV, Parquet or NetCDF files"
            where = ", ".join([*(text(r) for r in roots), *(text(k) for k in s3_roots())])
            return pn.pane.Markdown(f"{found} found in {where}. Choose one above.")
        label = next((k for k, v in picker.options.items() if v == value), value)
        if value.startswith("s3:") and value in remote.values():
            return view_s3(value, label)
        return view_file(datafiles.safe_path(value, roots, home), label)

    header = pn.pane.Markdown("# Data Explorer", margin=(0, 10))
    note = datasets_note(problems)
    body = pn.panel(pn.bind(show, picker), loading_indicator=True)
    return pn.Column(header, *([note] if note else []), picker, body)


def s3_roots() -> list[str]:
    return [d["url"] for d in datasets.datasets() if d["kind"] == "s3"]


build().servable(title="Data Explorer")
