"""One wording for a schema problem, wherever an app definition is written: the
same typo in ``catalog.apps`` of labspace.yaml (``labspace config validate``) and
in a definition an admin sends to the catalog API through a real hub reads the
same, ``<key>: unknown key (did you mean '...'?)``, only the key's path differs
(``catalog.apps[0]`` in the file, ``app`` in the API)."""

from __future__ import annotations

import secrets
import subprocess
import sys

import httpx
import pytest
import yaml
from harness import HubAPI, HubProcess, free_port, hub_settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = {
    "id": "typo",
    "title": "Typo",
    "kind": "proxied",
    "launch": {"command": ["typo-app", "{unix_socket}"], "unix_socket": True},
}
TYPOS = [
    ("launhc", {}, "unknown key (did you mean 'launch'?)"),
    ("titel", "Typo", "unknown key (did you mean 'title'?)"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, proxy_command):
    tmp = tmp_path_factory.mktemp("wording")
    token = secrets.token_hex(16)
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["catalog"] = {"enabled": True, "port": free_port(), "apps": []}
    hub = HubProcess(tmp, settings)
    try:
        hub.start()
        api = HubAPI(hub.url, token)
        r = api.request("POST", "users/admin/tokens", json={"note": "wording test"})
        assert r.status_code == 201, r.text
        yield hub, r.json()["token"]
        api.close()
    finally:
        hub.stop()


def validate_file(tmp_path, defn: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "labspace.yaml"
    path.write_text(yaml.safe_dump({"catalog": {"apps": [defn]}}))
    return subprocess.run(
        [sys.executable, "-m", "labspace.cli", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("key, value, said", TYPOS, ids=[t[0] for t in TYPOS])
def test_same_typo_same_line_in_the_file_and_the_api(hub, tmp_path, key, value, said):
    process, admin = hub
    defn = {**APP, key: value}
    done = validate_file(tmp_path, defn)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"  catalog.apps[0].{key}: {said}\n" in done.stdout + done.stderr
    r = httpx.post(
        process.url + "services/catalog/api/apps",
        json=defn,
        headers={"Authorization": f"token {admin}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert r.json() == {"status": 400, "message": f"app.{key}: {said}"}
