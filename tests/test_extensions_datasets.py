"""The workspace side of the data service: ``LABSPACE_DATASETS`` read by
``labspace.extensions.datasets``, folder datasets through a rooted fsspec
filesystem, s3 datasets through s3fs against a real S3 API (moto's server, IAM
enforced: tests/s3server.py), and the Data Explorer listing both (in-process,
and once served by ``panel serve`` in Chromium)."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import panel as pn
import pytest
import xarray as xr
from harness import free_port, wait_for
from s3server import S3Server

from labspace.extensions import datasets

CSV = b"day,temp\n1,3.5\n2,4.0\n3,4.5\n"


@pytest.fixture(autouse=True)
def no_aws_env(monkeypatch):
    """Only the credentials file speaks for the workspace (not ~/.aws, not AWS_*)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("moto"), bucket="labspace-test", prefix="climate/") as s:
        s.put("climate/runs/t.csv", CSV)
        s.put("climate/runs/t.parquet", pd.read_csv(io.BytesIO(CSV)).to_parquet())
        grid = xr.Dataset({"temp": (("lat", "lon"), np.arange(6.0).reshape(2, 3))})
        path = tmp_path_factory.mktemp("nc") / "grid.nc"
        grid.to_netcdf(path, engine="h5netcdf")
        s.put("climate/runs/grid.nc", path.read_bytes())
        s.put("climate/notes.txt", b"not data\n")
        s.put("elsewhere/secret.csv", CSV)
        yield s


def announce(monkeypatch, *entries):
    monkeypatch.setenv(datasets.ENV, json.dumps(list(entries)))


def s3_entry(s3, tmp_path, pair, level="read", dataset_id="climate"):
    """What the hub announces for an s3 dataset, and the 0600 INI file it writes."""
    ini = tmp_path / f"credentials-{dataset_id}.ini"
    ini.write_text(
        f"[labspace-{dataset_id}]\n"
        f"aws_access_key_id = {pair['access_key_id']}\n"
        f"aws_secret_access_key = {pair['secret_access_key']}\n"
    )
    ini.chmod(0o600)
    return {
        "id": dataset_id,
        "title": "Climate runs",
        "kind": "s3",
        "level": level,
        "path": "",
        "url": f"s3://{s3.bucket}/{s3.prefix}",
        "endpoint_url": s3.endpoint,
        "profile": f"labspace-{dataset_id}",
        "credentials_file": str(ini),
    }


# -- LABSPACE_DATASETS ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, warning",
    [
        ("{not json", "is not JSON"),
        ('{"id": "x"}', "is not a JSON list"),
        ("", None),
    ],
    ids=["bad-json", "not-a-list", "empty"],
)
def test_no_datasets_from_a_bad_variable(monkeypatch, caplog, text, warning):
    monkeypatch.setenv(datasets.ENV, text)
    with caplog.at_level(logging.WARNING, "labspace.datasets"):
        assert datasets.datasets() == []
    assert (warning in caplog.text) if warning else not caplog.text


def test_missing_variable_is_no_datasets():
    assert datasets.datasets() == []


def test_entries_are_normalised_and_bad_ones_left_out(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    announce(
        monkeypatch,
        {"id": "genomes", "kind": "host", "level": "read", "path": "~/data/genomes"},
        {"id": "Bad id", "kind": "host", "path": "/x"},
        {"id": "odd", "kind": "ftp", "path": "/x"},
        {"id": "nos3url", "kind": "s3", "url": "http://x"},
        "not an object",
    )
    with caplog.at_level(logging.WARNING, "labspace.datasets"):
        (only,) = datasets.datasets()
    assert only["path"] == str(tmp_path / "data" / "genomes")
    assert (only["title"], only["level"], only["url"]) == ("genomes", "read", "")
    for problem in ("[1] is left out: no valid id", "unknown kind 'ftp'", "needs a url s3://"):
        assert problem in caplog.text
    assert "[4] is left out: not an object" in caplog.text


def test_a_dataset_not_given_is_named_with_the_ones_given(monkeypatch, tmp_path):
    announce(monkeypatch, {"id": "genomes", "kind": "host", "path": str(tmp_path)})
    with pytest.raises(datasets.DatasetError, match="no dataset 'scratch' .*it has: genomes"):
        datasets.filesystem("scratch")


# -- folders -------------------------------------------------------------------


def test_a_folder_dataset_is_a_filesystem_rooted_at_its_path(monkeypatch, tmp_path):
    (tmp_path / "genomes" / "chr1").mkdir(parents=True)
    (tmp_path / "genomes" / "chr1" / "a.fa").write_text(">a\nACGT\n")
    (tmp_path / "outside.txt").write_text("no")
    announce(monkeypatch, {"id": "genomes", "kind": "volume", "path": str(tmp_path / "genomes")})
    fs = datasets.filesystem("genomes")
    assert fs.ls("", detail=False) == ["chr1"]
    assert fs.cat("chr1/a.fa") == b">a\nACGT\n"
    assert datasets.root("genomes") == ""


def test_a_folder_that_is_not_mounted(monkeypatch, tmp_path):
    announce(monkeypatch, {"id": "gone", "kind": "nfs", "path": str(tmp_path / "nope")})
    with pytest.raises(datasets.DatasetError, match="is not there"):
        datasets.filesystem("gone")


# -- s3 against a real S3 API with IAM enforced -----------------------------------


def test_the_test_server_enforces_iam(s3):
    """The fixture itself: the read key may not write, an unknown key gets nothing."""
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.client(s3.read).put_object(Bucket=s3.bucket, Key="climate/x", Body=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError):
        s3.client({"access_key_id": "AKIANOBODY", "secret_access_key": "x"}).list_objects_v2(
            Bucket=s3.bucket
        )


def test_a_read_credential_lists_and_reads_and_cannot_write(monkeypatch, tmp_path, s3):
    announce(monkeypatch, s3_entry(s3, tmp_path, s3.read))
    fs = datasets.filesystem("climate")
    start = datasets.root("climate")
    assert start == "labspace-test/climate"
    assert sorted(fs.find(start)) == [
        f"{start}/{name}" for name in ("notes.txt", "runs/grid.nc", "runs/t.csv", "runs/t.parquet")
    ]
    assert fs.cat(f"{start}/runs/t.csv") == CSV
    with pytest.raises(PermissionError):
        fs.pipe(f"{start}/new.csv", b"a\n1\n")
    with pytest.raises(PermissionError):
        fs.rm_file(f"{start}/runs/t.csv")
    with pytest.raises(PermissionError):  # the key is scoped to the prefix
        fs.cat("labspace-test/elsewhere/secret.csv")


def test_a_write_credential_writes(monkeypatch, tmp_path, s3):
    announce(monkeypatch, s3_entry(s3, tmp_path, s3.write, level="write"))
    fs = datasets.filesystem("climate")
    key = f"{datasets.root('climate')}/written-{os.getpid()}.csv"
    fs.pipe(key, b"a\n1\n")
    assert fs.cat(key) == b"a\n1\n"
    fs.rm_file(key)  # DeleteObject on the key (moto checks a bulk delete on the bucket)
    fs.invalidate_cache()
    assert not fs.exists(key)


def test_secrets_stay_out_of_errors_and_logs(monkeypatch, tmp_path, s3, caplog):
    wrong = {**s3.read, "secret_access_key": "wrong-secret-" + "x" * 20}
    entry = s3_entry(s3, tmp_path, wrong)
    announce(monkeypatch, entry)
    with caplog.at_level(logging.DEBUG):
        fs = datasets.filesystem("climate")
        with pytest.raises(Exception) as e:  # noqa: PT011  (botocore's or s3fs's own)
            fs.ls(datasets.root("climate"))
    shown = f"{e.value!r} {e.value} {fs!r} {caplog.text}"
    assert wrong["secret_access_key"] not in shown
    # a credentials file that is gone, or lacks the profile: the file is named, no value
    (tmp_path / "credentials-climate.ini").write_text(
        f"[labspace-other]\naws_access_key_id = {s3.read['access_key_id']}\n"
        f"aws_secret_access_key = {s3.read['secret_access_key']}\n"
    )
    with pytest.raises(datasets.DatasetError, match=r"no profile \[labspace-climate\]") as e:
        datasets.filesystem("climate")
    assert s3.read["secret_access_key"] not in str(e.value)
    (tmp_path / "credentials-climate.ini").unlink()
    with pytest.raises(datasets.DatasetError, match="No such file"):
        datasets.filesystem("climate")


def test_an_s3_dataset_without_a_key_pair_is_listed_but_not_opened(monkeypatch, tmp_path, s3):
    entry = {**s3_entry(s3, tmp_path, s3.read), "profile": "", "credentials_file": ""}
    announce(monkeypatch, entry)
    assert [d["id"] for d in datasets.datasets()] == ["climate"]
    with pytest.raises(datasets.DatasetError, match="no key pair came with it"):
        datasets.filesystem("climate")


def test_data_files_of_an_s3_dataset(monkeypatch, tmp_path, s3):
    announce(monkeypatch, s3_entry(s3, tmp_path, s3.read))
    bucket = "labspace-test/climate"
    assert datasets.s3_data_files("climate") == [
        (f"s3://{bucket}/runs/grid.nc", f"{bucket}/runs/grid.nc"),
        (f"s3://{bucket}/runs/t.csv", f"{bucket}/runs/t.csv"),
        (f"s3://{bucket}/runs/t.parquet", f"{bucket}/runs/t.parquet"),
    ]
    frame = datasets.load("climate", f"{bucket}/runs/t.csv")
    assert list(frame.columns) == ["day", "temp"] and len(frame) == 3
    frame = datasets.load("climate", f"{bucket}/runs/t.parquet")
    assert frame["temp"].tolist() == [3.5, 4.0, 4.5]
    grid = datasets.load("climate", f"{bucket}/runs/grid.nc")
    assert grid["temp"].shape == (2, 3)
    with pytest.raises(datasets.DatasetError, match="larger than 0 MiB: open it in a notebook"):
        datasets.load("climate", f"{bucket}/runs/t.parquet", max_bytes=100)
    for outside in ("labspace-test/elsewhere/secret.csv", "labspace-test/climate/../x.csv"):
        with pytest.raises(datasets.DatasetError, match="not a file of dataset climate"):
            datasets.load("climate", outside)


# -- the Data Explorer ---------------------------------------------------------------


@pytest.fixture
def explorer(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()

    def load():
        sys.modules.pop("labspace.extensions.data_explorer", None)
        return importlib.import_module("labspace.extensions.data_explorer")

    return load


def test_the_explorer_lists_folder_and_s3_datasets(monkeypatch, tmp_path, s3, explorer):
    folder = tmp_path / "mnt" / "genomes"  # a mount_path outside /data and the home
    folder.mkdir(parents=True)
    pd.DataFrame({"x": [1, 2], "y": [3, 4]}).to_csv(folder / "counts.csv", index=False)
    announce(
        monkeypatch,
        {"id": "genomes", "title": "Genomes", "kind": "host", "level": "read", "path": str(folder)},
        s3_entry(s3, tmp_path, s3.read),
    )
    app = explorer().build()
    note = app.objects[1].object
    assert "**Genomes** (read)" in note and "s3://labspace-test/climate/" in note
    picker = next(o for o in app.objects if isinstance(o, pn.widgets.Select))
    assert picker.options["s3://labspace-test/climate/runs/t.csv"] == (
        "s3:climate:labspace-test/climate/runs/t.csv"
    )
    assert str(folder / "counts.csv") in picker.options.values()
    view = explorer().view_s3(picker.options["s3://labspace-test/climate/runs/t.csv"], "t")
    assert "3 rows × 2 columns" in view.objects[2].object


def test_the_explorer_says_when_an_s3_dataset_cannot_be_listed(monkeypatch, tmp_path, s3, explorer):
    wrong = {**s3.read, "secret_access_key": "not-the-secret-" + "y" * 20}
    announce(monkeypatch, s3_entry(s3, tmp_path, wrong))
    app = explorer().build()
    note = app.objects[1].object
    assert "climate: cannot be listed" in note
    assert wrong["secret_access_key"] not in note


@pytest.mark.slow  # ~20 s of timeouts: make test, not make check
def test_the_explorer_does_not_wait_long_for_an_s3_api_that_does_not_answer(
    monkeypatch, tmp_path, s3, explorer
):
    """An endpoint that takes the connection and never answers (a hung S3 API):
    the explorer reports it after ~20 s, not after boto's and s3fs's retries."""
    entry = s3_entry(s3, tmp_path, s3.read)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nobody reads or answers
        entry["endpoint_url"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        module = explorer()  # its import builds a page too: without datasets yet
        announce(monkeypatch, entry)
        began = time.monotonic()
        app = module.build()
        took = time.monotonic() - began
    assert took < 35, took  # 2 tries of 10 s (boto and s3fs alone would retry for minutes)
    assert "climate: cannot be listed" in app.objects[1].object


@pytest.mark.e2e
@pytest.mark.slow  # Chromium, ~10 s: make test, not make check
def test_the_explorer_in_a_browser_plots_an_s3_file(tmp_path, s3, chromium):
    """``panel serve`` of the Data Explorer in a workspace-like environment (a
    folder dataset and an s3 one with a read key): the picker offers both, the
    s3 file opens as a plot and a table. Screenshot: data-explorer-s3.png."""
    from browser import shoot

    folder = tmp_path / "genomes"
    folder.mkdir()
    (folder / "coverage.csv").write_text("pos,depth\n1,2.5\n2,3.0\n")
    entries = [
        {"id": "genomes", "title": "Reference genomes", "kind": "host", "path": str(folder)},
        s3_entry(s3, tmp_path, s3.read),
    ]
    (tmp_path / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home"), datasets.ENV: json.dumps(entries)}
    port = free_port()
    app = Path(datasets.__file__).with_name("data_explorer.py")
    cmd = [sys.executable, "-m", "panel", "serve", str(app), "--address", "127.0.0.1"]
    cmd += ["--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}/data_explorer"
    with open(tmp_path / "panel.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(url), 120, 0.5, what="panel serve")
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        picker = page.locator("select").first
        picker.wait_for(timeout=60_000)
        assert picker.locator("option").all_inner_texts() == [
            "(choose a file)",
            f"{folder}/coverage.csv",
            "s3://labspace-test/climate/runs/grid.nc",
            "s3://labspace-test/climate/runs/t.csv",
            "s3://labspace-test/climate/runs/t.parquet",
        ]
        assert page.get_by_text("Climate runs").is_visible()
        picker.select_option(label="s3://labspace-test/climate/runs/t.csv")
        page.get_by_text("3 rows × 2 columns").wait_for(timeout=60_000)
        assert page.locator("canvas").count() > 0  # the Bokeh plot
        shoot(page, "data-explorer-s3")
        page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
