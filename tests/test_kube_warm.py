"""The kubernetes backend with the warm pool: a workspace pod against the
placeholder the chart keeps for its profile.

What the chart renders (the real ``helm template``) is what the hub pod loads
(``offline.chart_hub_config``, with the hub container's environment); the
spawner then builds its pod manifest as KubeSpawner would, with no API server:
the ``offline_kube`` fixture points the client at an address nothing serves
(no Kubernetes API can run here). Preemption itself is the scheduler's; these
tests check what it is given: the workspace's PriorityClass, higher than the
placeholders', and a placeholder that requests what the workspace requests on
the same nodes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml
from offline import build_spawner, chart_hub_config
from test_kube import SERVICES_OFF, SETTINGS, hub_config, manifests, need_helm, offline_kube
from traitlets.config import Config

from labspace.spawners.kube import (
    PRIORITY_CLASS_ENV,
    LabspaceKubeSpawner,
    workspace_priority_class,
)
from labspace.warm.pool import Member

__all__ = ["offline_kube"]  # a fixture of test_kube's, used here


def chart(folder, warm: dict[str, Any]):
    import helm

    values = yaml.safe_load(SETTINGS)
    values["backend"]["warm_pool"] = warm
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump({"labspace": {**values, **SERVICES_OFF}}))
    objects = helm.render(path)
    settings, built = chart_hub_config(objects, folder)
    env = helm.container_env(objects, "labspace-hub")
    return objects, settings, built, env


@pytest.fixture(scope="module")
def warm_chart(need, tmp_path_factory):
    need_helm(need)
    return chart(tmp_path_factory.mktemp("warm"), {"enabled": True, "size": 4})


@pytest.fixture(scope="module")
def cold_chart(need, tmp_path_factory):
    need_helm(need)
    return chart(tmp_path_factory.mktemp("cold"), {"enabled": "auto", "size": 4})


def spawner(rendered, monkeypatch) -> LabspaceKubeSpawner:
    _, settings, built, env = rendered
    for key, value in env.items():  # the hub container's environment
        if key == PRIORITY_CLASS_ENV:
            monkeypatch.setenv(key, value)
    config: Config = hub_config(built)
    return build_spawner(LabspaceKubeSpawner, "alice", "", settings.values, config)


BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def amount(value) -> Decimal:
    """A Kubernetes quantity as a number (``1.5Gi``, ``500m``, ``2``, 0.5)."""
    text = str(value)
    if text[-2:] in BINARY:
        return Decimal(text[:-2]) * BINARY[text[-2:]]
    if text.endswith("m"):
        return Decimal(text[:-1]) / 1000
    return Decimal(text)


def placeholder(objects, slug: str) -> dict[str, Any]:
    for o in objects:
        if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"labspace-placeholder-{slug}":
            return o["spec"]["template"]["spec"]
    raise AssertionError(f"no placeholder for {slug}")


@pytest.mark.parametrize("slug", ["default", "gpu"])
async def test_a_workspace_outranks_and_fits_its_placeholder(
    warm_chart, offline_kube, monkeypatch, slug
):
    objects = warm_chart[0]
    pod = (await manifests(spawner(warm_chart, monkeypatch), {"profile": slug}))["pod"]["spec"]
    classes = {o["metadata"]["name"]: o["value"] for o in objects if o["kind"] == "PriorityClass"}
    assert pod["priorityClassName"] == "labspace-workspace"
    held = placeholder(objects, slug)
    assert classes[pod["priorityClassName"]] > classes[held["priorityClassName"]]
    (workspace,) = [c for c in pod["containers"] if c["name"] == "notebook"]
    # the placeholder requests what the workspace requests, on the same nodes
    requests = held["containers"][0]["resources"]["requests"]
    assert {k: amount(v) for k, v in requests.items()} == {
        k: amount(v) for k, v in workspace["resources"]["requests"].items()
    }
    assert held.get("nodeSelector", {}) == pod.get("nodeSelector", {})
    assert held.get("tolerations", []) == [
        t for t in pod.get("tolerations", []) if t.get("key") == "nvidia.com/gpu"
    ]


async def test_without_the_pool_no_priority_class(cold_chart, offline_kube, monkeypatch):
    objects = cold_chart[0]
    assert not [o for o in objects if o["kind"] in ("StatefulSet", "PriorityClass")]
    monkeypatch.setenv(PRIORITY_CLASS_ENV, "stale-from-elsewhere")
    pod = (await manifests(spawner(cold_chart, monkeypatch), {"profile": "default"}))["pod"]
    assert "priorityClassName" not in pod["spec"]  # `auto` is off on kubernetes


async def test_no_hub_side_pool_and_no_warm_key(offline_kube):
    """The warm start on kubernetes is capacity and image: never a member."""
    assert LabspaceKubeSpawner.warm_provider(hub_app=None) is None
    s = build_spawner(LabspaceKubeSpawner, "bob", "", yaml.safe_load(SETTINGS), Config())
    assert s.warm_key(None) is None
    with pytest.raises(NotImplementedError):
        await s.start_warm(Member("x"))


@pytest.mark.parametrize(
    ("warm", "environ", "expected"),
    [
        ({"enabled": True}, {PRIORITY_CLASS_ENV: "labspace-workspace"}, "labspace-workspace"),
        ({"enabled": True}, {}, ""),  # not the chart's hub: none unless hub.config sets one
        ({"enabled": "auto"}, {PRIORITY_CLASS_ENV: "x"}, ""),
        ({"enabled": False}, {PRIORITY_CLASS_ENV: "x"}, ""),
        ({}, {PRIORITY_CLASS_ENV: "x"}, ""),
    ],
)
def test_workspace_priority_class(warm, environ, expected):
    assert workspace_priority_class(warm, environ) == expected
