"""Finding and opening the data files the Data Explorer shows.

The explorer only reads files under its *roots*: the home folder, ``/data`` when
it exists, the folders that the data mounts link into the home (local backend:
``~/<mount>`` is a link to the mount's source), and any folder in
``LABSPACE_DATA_DIRS`` (``:``-separated). A path from a request is resolved
(links included) and refused unless it lies inside one of those roots.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".netcdf": "netcdf",
}
SKIP_DIRS = {
    "node_modules",
    "__pycache__",
    ".git",
    ".ipynb_checkpoints",
    ".cache",
    ".local",
    ".jupyter",
    ".ipython",
    ".npm",
    ".conda",
    "site-packages",
}
MAX_FILES = 500
MAX_DEPTH = 4
MAX_ROWS = 200_000  # a plot of more points is neither fast nor readable


class UnsafePath(ValueError):
    """A requested path outside every root (or not a data file)."""


@dataclass(frozen=True)
class DataFile:
    label: str  # what the user sees: "~/results/run.csv", "/data/era5.nc"
    path: Path  # resolved
    kind: str  # csv | parquet | netcdf


def data_roots(home: str | os.PathLike | None = None, extra: str | None = None) -> list[Path]:
    """The resolved folders the explorer may read, home first, without duplicates."""
    home = Path(home or os.path.expanduser("~"))
    candidates = [home, Path("/data")]
    extra = os.environ.get("LABSPACE_DATA_DIRS", "") if extra is None else extra
    candidates += [Path(p) for p in extra.split(":") if p]
    # mounts of the local backend: links in the home to folders elsewhere
    with contextlib.suppress(OSError):
        candidates += [p for p in sorted(home.iterdir()) if p.is_symlink() and p.is_dir()]
    roots: list[Path] = []
    for candidate in candidates:
        if not candidate.is_dir():
            continue
        resolved = candidate.resolve()
        if resolved not in roots:
            roots.append(resolved)
    return roots


def _label(path: Path, roots: list[Path], home: Path) -> str:
    for base, prefix in ((home, "~"), *((r, str(r)) for r in roots)):
        if path.is_relative_to(base):
            rel = path.relative_to(base).as_posix()
            return f"{prefix}/{rel}" if prefix != "/" else f"/{rel}"
    return str(path)


def safe_path(requested: str, roots: list[Path], home: Path | None = None) -> Path:
    """The resolved data file a user asked for (``~/x.csv``, an absolute path, or
    a path relative to the home), or UnsafePath when it escapes every root."""
    home = Path(home or roots[0])
    if "\x00" in requested:
        raise UnsafePath("bad path")
    if requested.startswith("~/"):
        candidate = home / requested[2:]
    elif requested.startswith("/"):
        candidate = Path(requested)
    else:
        candidate = home / requested
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise UnsafePath(f"no such file: {requested}") from e
    if not any(resolved.is_relative_to(root) for root in roots):
        raise UnsafePath(f"{requested} is outside the folders the explorer may read")
    if not resolved.is_file() or resolved.suffix.lower() not in SUFFIXES:
        raise UnsafePath(f"{requested} is not a CSV, Parquet or NetCDF file")
    return resolved


def list_data_files(
    roots: list[Path],
    home: Path | None = None,
    max_files: int = MAX_FILES,
    max_depth: int = MAX_DEPTH,
) -> list[DataFile]:
    """Data files under the roots, breadth first, bounded in count and depth;
    hidden and tool folders are skipped, links are followed only inside roots."""
    home = Path(home or roots[0]).resolve()
    found: dict[Path, DataFile] = {}
    for root in roots:
        queue = [(root, 0)]
        while queue and len(found) < max_files:
            folder, depth = queue.pop(0)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.name in SKIP_DIRS:
                    continue
                try:
                    resolved = Path(entry.path).resolve()
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if not any(resolved.is_relative_to(r) for r in roots):
                    continue
                if is_dir:
                    if depth + 1 < max_depth:
                        queue.append((Path(entry.path), depth + 1))
                    continue
                kind = SUFFIXES.get(resolved.suffix.lower())
                if kind and resolved not in found and len(found) < max_files:
                    found[resolved] = DataFile(
                        _label(Path(entry.path), roots, home), resolved, kind
                    )
    return sorted(found.values(), key=lambda f: f.label)


def kind_of(path: Path) -> str:
    return SUFFIXES[path.suffix.lower()]


def load(path: Path):
    """A pandas DataFrame (CSV, Parquet; at most MAX_ROWS rows) or an xarray Dataset."""
    kind = kind_of(path)
    if kind == "netcdf":
        import xarray as xr

        return xr.open_dataset(path, engine="h5netcdf")
    import pandas as pd

    if kind == "csv":
        return pd.read_csv(path, nrows=MAX_ROWS)
    frame = pd.read_parquet(path)
    return frame.head(MAX_ROWS)


def numeric_columns(frame) -> list[str]:
    return [str(c) for c in frame.columns if frame[c].dtype.kind in "iufcmM"]


def plottable_variables(dataset) -> list[str]:
    return [str(name) for name, var in dataset.data_vars.items() if var.ndim >= 1]
