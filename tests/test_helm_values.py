"""``labspace config helm-values``: a labspace.yaml becomes values of the Helm
chart, and the chart renders from them the same settings (what the chart or a
cluster decides left out, one line each on stderr, secrets never printed).
Real ``labspace`` CLI subprocesses and the real ``helm``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import helm
from labspace.helm_values import helm_values
from labspace.settings import load

SERVER = """\
data_dir: /var/lib/labspace
hub:
  ip: 127.0.0.1
  port: 80
  admin_users: [ada]
  db_url: postgresql+psycopg://hub:pw-not-for-git@db.example.org/hub
  tls: {type: acme, domain: hub.example.org, http_port: 8080}
auth:
  type: github
  client_id: abc
  client_secret: client-secret-not-for-git
  allowed_organizations: [lab]
backend:
  type: local
profiles:
  - {slug: small, default: true, cpu: {limit: 1}}
  - {slug: big, cpu: {limit: 4}, memory: {limit: 8G}}
accounting:
  enabled: true
"""


def helm_values_cli(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labspace.cli", "config", "helm-values", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def server_file(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text(SERVER)
    return path


def test_a_servers_settings_render_the_same_on_the_chart(server_file, tmp_path, need):
    problem = helm.helm_problem()
    need("helm", problem is None, problem or "")
    done = helm_values_cli(server_file)
    assert done.returncode == 0, done.stderr
    for secret in ("pw-not-for-git", "client-secret-not-for-git"):
        assert secret not in done.stdout + done.stderr
    left_out = {line.split(":", 1)[0] for line in done.stderr.splitlines()}
    assert left_out == {
        "data_dir",
        "hub.tls",
        "hub.ip",
        "hub.port",
        "backend.type",
        "hub.db_url",
        "auth.client_secret",
        "ingress",
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(done.stdout)

    objects = helm.render(values_file, **{"labspace.auth.client_secret": "given-apart"})
    rendered = helm.settings(objects)
    written = yaml.safe_load(SERVER)
    assert rendered["profiles"] == written["profiles"]
    assert rendered["auth"]["allowed_organizations"] == ["lab"]
    assert rendered["accounting"] == {"enabled": True}
    assert rendered["backend"]["type"] == "kubernetes"  # the chart's default
    assert "port" not in rendered["hub"]  # the proxy pod's own, 8000
    # the host of hub.tls became the ingress, and so the public URL
    assert rendered["hub"]["public_url"] == "https://hub.example.org/"
    ingress = helm.find(objects, "Ingress", helm.FULLNAME)
    assert ingress["spec"]["tls"] == [{"hosts": ["hub.example.org"], "secretName": "labspace-tls"}]
    # the chart's settings, with the hub container's environment (the secret
    # from the chart's Secret), are valid Labspace settings
    settings_file = tmp_path / "rendered.yaml"
    settings_file.write_text(helm.settings_text(objects))
    environ = helm.container_env(objects, "labspace-hub")
    loaded = load(settings_file, environ=environ)
    assert loaded.get("auth.client_secret") == "given-apart"
    assert loaded.get("hub.connect_host") == "labspace-hub"


def test_settings_with_nothing_to_leave_out_are_kept_whole():
    written = {
        "backend": {"type": "docker", "image": "labspace/workspace:latest"},
        "hub": {"admin_users": ["ada"]},
    }
    values, notes = helm_values(written)
    assert values == {"labspace": written} and notes == []


def test_an_invalid_file_gets_its_report_not_a_traceback(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text("hub:\n  prot: 8000\n")
    done = helm_values_cli(path)
    assert done.returncode == 1
    assert "hub.prot" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
