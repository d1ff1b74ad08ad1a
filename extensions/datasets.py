"""The datasets of this workspace, for notebooks and the Data Explorer.

The hub resolves a person's grants at every start and announces what went into
the workspace in ``LABSPACE_DATASETS``, a JSON list without any secret::

    [{"id": "genomes", "title": "Reference genomes", "kind": "host",
      "level": "read", "path": "/data/genomes"},
     {"id": "climate", "title": "Climate runs", "kind": "s3", "level": "write",
      "url": "s3://bucket/climate/", "profile": "labspace-climate",
      "credentials_file": "/run/labspace/datasets.ini",
      "endpoint_url": "http://s3.example.org"}]

An s3 dataset's key pair lives in ``credentials_file`` (a boto-style INI file,
0600, outside the home), in the section ``profile``. Use them as::

    from labspace.extensions import datasets

    datasets.datasets()                  # what this workspace has
    fs = datasets.filesystem("genomes")  # fsspec: rooted at /data/genomes
    fs.ls("")
    fs = datasets.filesystem("climate")  # s3fs.S3FileSystem with the grant's key
    fs.ls(datasets.root("climate"))      # "bucket/climate"

The key pair is read when a filesystem is made and never printed: not by this
module, not in its errors.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
from pathlib import PurePosixPath
from typing import Any

from labspace.extensions import datafiles

ENV = "LABSPACE_DATASETS"
ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
FOLDER_KINDS = ("local", "host", "volume", "pvc", "nfs")
MAX_BYTES = 512 * 2**20  # a Parquet or NetCDF file the explorer reads whole
MAX_FOLDERS = 200  # folders of an s3 dataset the explorer lists at most
# the explorer answers a page: an S3 API that does not answer is reported after
# about 2 x 10 s, not waited for (boto's and s3fs's retries would take minutes)
QUICK_CONFIG = {"connect_timeout": 5, "read_timeout": 10, "retries": {"total_max_attempts": 1}}
QUICK_RETRIES = 2
FIELDS = ("id", "title", "kind", "level", "path", "url", "profile", "credentials_file")
log = logging.getLogger("labspace.datasets")


class DatasetError(Exception):
    """A dataset this workspace does not have, or cannot open; the message says
    what to do and never holds a secret."""


def parse(text: str | None) -> list[dict[str, Any]]:
    """The datasets announced in ``text`` (LABSPACE_DATASETS): each a dict with
    every key of FIELDS (and ``endpoint_url``, ``region``); an entry that is not
    a dataset is left out with a warning, text that is not JSON gives none."""
    if not text:
        return []
    try:
        entries = json.loads(text)
    except ValueError as e:
        log.warning("%s is not JSON (%s): this workspace lists no datasets", ENV, e.msg)
        return []
    if not isinstance(entries, list):
        log.warning("%s is not a JSON list: this workspace lists no datasets", ENV)
        return []
    found: list[dict[str, Any]] = []
    for n, entry in enumerate(entries):
        problem = _problem(entry)
        if problem:
            log.warning("%s[%d] is left out: %s", ENV, n, problem)
            continue
        found.append(_normalised(entry))
    return found


def _problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    if not isinstance(entry.get("id"), str) or not ID.fullmatch(entry["id"]):
        return "no valid id"
    kind = entry.get("kind")
    if kind == "s3":
        if not str(entry.get("url", "")).startswith("s3://"):
            return f"{entry['id']}: an s3 dataset needs a url s3://bucket/prefix"
    elif kind in FOLDER_KINDS:
        if not isinstance(entry.get("path"), str) or not entry["path"]:
            return f"{entry['id']}: no path"
    else:
        return f"{entry['id']}: unknown kind {kind!r}"
    return ""


def _normalised(entry: dict[str, Any]) -> dict[str, Any]:
    d = {key: entry.get(key) or "" for key in FIELDS}
    d["title"] = d["title"] or d["id"]
    d["level"] = d["level"] if d["level"] in ("read", "write") else "read"
    d["endpoint_url"] = entry.get("endpoint_url") or ""
    d["region"] = entry.get("region") or ""
    if d["kind"] in FOLDER_KINDS:
        d["path"] = os.path.expanduser(d["path"])
    return d


def datasets() -> list[dict[str, Any]]:
    """The datasets of this workspace, from ``LABSPACE_DATASETS``."""
    return parse(os.environ.get(ENV))


def dataset(dataset_id: str) -> dict[str, Any]:
    for d in datasets():
        if d["id"] == dataset_id:
            return d
    names = ", ".join(d["id"] for d in datasets()) or "none"
    raise DatasetError(
        f"This workspace has no dataset {dataset_id!r} (it has: {names}); a grant "
        "given since it started appears at its next start"
    )


def root(dataset_id: str) -> str:
    """Where the dataset starts in ``filesystem(dataset_id)``: "" for a folder
    (the filesystem is rooted there), ``bucket/prefix`` for s3."""
    d = dataset(dataset_id)
    return d["url"].removeprefix("s3://").rstrip("/") if d["kind"] == "s3" else ""


def filesystem(dataset_id: str, **options: Any):
    """An fsspec filesystem for the dataset: a ``DirFileSystem`` rooted at its
    folder, or for s3 an ``s3fs.S3FileSystem`` with the grant's key pair (read
    from its credentials file) and the dataset's endpoint; ``options`` go to
    ``S3FileSystem`` (e.g. ``config_kwargs={"read_timeout": 300}``)."""
    d = dataset(dataset_id)
    if d["kind"] != "s3":
        from fsspec.implementations.dirfs import DirFileSystem
        from fsspec.implementations.local import LocalFileSystem

        if not os.path.isdir(d["path"]):
            raise DatasetError(f"dataset {dataset_id}: {d['path']} is not there (not mounted)")
        return DirFileSystem(path=d["path"], fs=LocalFileSystem())
    import s3fs

    key, secret, token = credentials(d)
    client_kwargs = {"region_name": d["region"]} if d["region"] else {}
    return s3fs.S3FileSystem(
        key=key,
        secret=secret,
        token=token or None,
        endpoint_url=d["endpoint_url"] or None,
        client_kwargs=client_kwargs,
        skip_instance_cache=True,  # a new key after a restart is used, not a cached one
        **options,
    )


def credentials(d: dict[str, Any]) -> tuple[str, str, str]:
    """(access key id, secret, session token or "") of an s3 dataset, from the
    section ``profile`` of its INI file; errors name the file, never a value."""
    if not d["credentials_file"] or not d["profile"]:
        raise DatasetError(
            f"dataset {d['id']}: no key pair came with it (an admin sets the dataset's "
            f"{d['level']} credential; it arrives at the next start)"
        )
    where = f"dataset {d['id']}: credentials file {d['credentials_file']}"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(d["credentials_file"], encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise DatasetError(f"{where}: {e.strerror} (restart the workspace)") from None
    except configparser.Error:
        raise DatasetError(f"{where}: not an INI file (restart the workspace)") from None
    if not parser.has_section(d["profile"]):
        raise DatasetError(f"{where}: no profile [{d['profile']}] (restart the workspace)")
    section = parser[d["profile"]]
    key = section.get("aws_access_key_id", "")
    secret = section.get("aws_secret_access_key", "")
    if not key or not secret:
        raise DatasetError(f"{where}: profile [{d['profile']}] has no key pair")
    return key, secret, section.get("aws_session_token", "")


# -- data files of s3 datasets, for the Data Explorer ------------------------


def _quick(dataset_id: str):
    """The s3 dataset's filesystem with short timeouts and few retries."""
    fs = filesystem(dataset_id, config_kwargs=QUICK_CONFIG)
    fs.retries = QUICK_RETRIES  # s3fs's own retries, on top of boto's
    return fs


def s3_data_files(dataset_id: str, max_files: int = datafiles.MAX_FILES) -> list[tuple[str, str]]:
    """(label, key) of the CSV, Parquet and NetCDF files of an s3 dataset,
    bounded in count and depth; label ``s3://bucket/prefix/file.csv``."""
    fs, start = _quick(dataset_id), root(dataset_id)
    keys: list[str] = []
    queue = [(start, 0)]
    # breadth first with ls, which raises when the key is refused (find with a
    # maxdepth answers [] instead); bounded in files and in folders asked
    for _ in range(MAX_FOLDERS):
        if not queue or len(keys) >= max_files:
            break
        folder, depth = queue.pop(0)
        for entry in sorted(fs.ls(folder, detail=True), key=lambda e: e["name"]):
            name = entry["name"].rstrip("/")
            if entry["type"] == "directory":
                if depth + 1 < datafiles.MAX_DEPTH:
                    queue.append((name, depth + 1))
            elif PurePosixPath(name).suffix.lower() in datafiles.SUFFIXES:
                keys.append(name)
    return [(f"s3://{k}", k) for k in sorted(keys[:max_files])]


def load(dataset_id: str, key: str, max_bytes: int = MAX_BYTES):
    """A file of an s3 dataset as ``datafiles.load`` gives a local one (a
    DataFrame of at most MAX_ROWS rows, or an xarray Dataset), read through the
    filesystem (a CSV only as far as MAX_ROWS); a Parquet or NetCDF file over
    ``max_bytes`` is refused (it would be held in memory whole)."""
    start = root(dataset_id)
    if not key.startswith(start + "/") or ".." in PurePosixPath(key).parts:
        raise DatasetError(f"{key} is not a file of dataset {dataset_id}")
    kind = datafiles.SUFFIXES.get(PurePosixPath(key).suffix.lower())
    if kind is None:
        raise DatasetError(f"{key} is not a CSV, Parquet or NetCDF file")
    fs = _quick(dataset_id)
    if kind != "csv" and fs.size(key) > max_bytes:
        raise DatasetError(
            f"{key} is larger than {max_bytes // 2**20} MiB: open it in a notebook "
            "(datasets.filesystem) and read the part you need"
        )
    import pandas as pd

    with fs.open(key, "rb") as f:
        if kind == "csv":
            return pd.read_csv(f, nrows=datafiles.MAX_ROWS)
        if kind == "parquet":
            return pd.read_parquet(f).head(datafiles.MAX_ROWS)
        import xarray as xr

        return xr.open_dataset(f, engine="h5netcdf").load()  # before the file closes
