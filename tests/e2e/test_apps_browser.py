"""The bundled apps in a real browser (Debian's Chromium through Playwright), on a
real hub with the local backend: the JupyterLab launcher offers them with their
icons, the Data Explorer draws a plot of a CSV in the home, and a notebook runs
as a Voilà dashboard. Screenshots go to tests/artifacts/ (apps-*.png)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from browser import VIEWPORT, shoot, sign_in
from harness import HubAPI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CSV = "day,temperature,rain\n" + "".join(
    f"{d},{10 + (d * 7) % 13 * 0.8:.1f},{(d * 5) % 9 * 1.5:.1f}\n" for d in range(1, 31)
)
NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Rainfall dashboard"]},
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": [
                "import pandas as pd\n",
                "df = pd.read_csv('weather.csv')\n",
                "print(f'{len(df)} days, mean temperature {df.temperature.mean():.1f}')",
            ],
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def netcdf_base64() -> str:
    """A small temperature field (time, lat, lon) as NetCDF-4, base64."""
    import base64
    import tempfile

    import numpy as np
    import xarray as xr

    lat, lon = np.linspace(40, 60, 21), np.linspace(-10, 20, 31)
    field = np.array(
        [np.add.outer(np.cos(np.radians(lat)) * 20, np.sin(lon / 5 + t)) for t in range(3)]
    )
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), field)},
        coords={"time": [0, 6, 12], "lat": lat, "lon": lon},
    )
    with tempfile.NamedTemporaryFile(suffix=".nc") as f:
        ds.to_netcdf(f.name, engine="h5netcdf")
        return base64.b64encode(Path(f.name).read_bytes()).decode()


@pytest.fixture
def hub(hub_factory, hub_settings):
    return hub_factory(hub_settings).start()


def test_launcher_data_explorer_and_dashboard(hub, service_token, chromium):
    from playwright.sync_api import expect

    api = HubAPI(hub.url, service_token)
    try:
        api.start_server("admin")
        headers = {"Authorization": f"token {service_token}"}
        base = hub.url.rstrip("/") + "/user/admin/"
        for path, body in [
            ("weather.csv", {"type": "file", "format": "text", "content": CSV}),
            ("era5.nc", {"type": "file", "format": "base64", "content": netcdf_base64()}),
            ("rainfall.ipynb", {"type": "notebook", "content": NOTEBOOK}),
        ]:
            r = httpx.put(base + f"api/contents/{path}", json=body, headers=headers, timeout=30)
            assert r.status_code in (200, 201), r.text

        context = chromium.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(hub.url + "hub/login")
        sign_in(page, "admin", hub.admin_password)
        page.wait_for_url(re.compile(r"/hub/"))

        # JupyterLab's launcher offers the bundled apps
        page.goto(base + "lab")
        launcher = page.locator(".jp-Launcher")
        launcher.wait_for(timeout=120_000)
        expect(launcher.get_by_text("Data Explorer")).to_be_visible()
        expect(launcher.get_by_text("Dashboards")).to_be_visible()
        launcher.get_by_text("Data Explorer").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        shoot(page, "apps-launcher")

        # the Data Explorer draws the CSV from the home folder
        page.goto(base + "data-explorer/?file=~/weather.csv")
        expect(page.get_by_text("Data Explorer").first).to_be_visible()
        page.locator("canvas").first.wait_for(state="visible", timeout=60_000)
        expect(page.get_by_text("30 rows × 3 columns")).to_be_visible()
        page.wait_for_timeout(1500)  # let Bokeh finish drawing
        shoot(page, "apps-data-explorer")

        # a NetCDF variable as a map, with a slider for time
        page.goto(base + "data-explorer/?file=~/era5.nc")
        page.locator("canvas").first.wait_for(state="visible", timeout=60_000)
        expect(page.get_by_text("time", exact=False).first).to_be_visible()
        page.wait_for_timeout(1500)
        shoot(page, "apps-data-explorer-netcdf")

        # a notebook as a Voilà dashboard, without its code
        page.goto(base + "dashboards/voila/render/rainfall.ipynb")
        expect(page.get_by_text("30 days, mean temperature")).to_be_visible()
        expect(page.get_by_role("heading", name="Rainfall dashboard")).to_be_visible()
        shoot(page, "apps-dashboard")
        context.close()
    finally:
        api.stop_all()
        api.close()
