"""The chart's warm pool (kubernetes backend): placeholder pods, the image
pre-puller and the PriorityClasses, rendered by the real ``helm template``.

No Kubernetes cluster runs here: the objects are checked against a golden
render (tests/golden/helm-warm/, ``LABSPACE_REGEN_GOLDEN=1`` rewrites it) and
kubernetes-validate's strict schemas; how the scheduler preempts placeholders
is Kubernetes' own behaviour, not tested here.
"""

from __future__ import annotations

from pathlib import Path

import manifests
import pytest
import yaml

import helm

FIXTURE = Path(__file__).parent / "fixtures" / "helm-warm" / "warm-pool.yaml"
GOLDEN = manifests.GOLDEN / "helm-warm"
WARM_KINDS = ("StatefulSet", "DaemonSet", "PriorityClass")

pytestmark = pytest.mark.usefixtures("helm_binary")


def warm_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in WARM_KINDS]


def by_name(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_golden_and_valid():
    objects = warm_objects(helm.render(FIXTURE))
    text = yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False)
    manifests.check_golden_file(GOLDEN / "warm-pool.yaml", text)
    for o in objects:
        manifests.assert_valid(o, where="warm-pool: ")


def test_placeholders_per_pooled_profile_with_its_requests():
    found = by_name(helm.render(FIXTURE))
    assert sorted(n for n in found if n.split("/")[0] in WARM_KINDS) == [
        "DaemonSet/labspace-image-puller-gpu",
        "DaemonSet/labspace-image-puller-small",
        "PriorityClass/labspace-image-puller",
        "PriorityClass/labspace-placeholder",
        "PriorityClass/labspace-workspace",
        "StatefulSet/labspace-placeholder-gpu",
        "StatefulSet/labspace-placeholder-small",
    ]  # "big" is not pooled: neither placeholder nor puller
    small = found["StatefulSet/labspace-placeholder-small"]["spec"]
    assert small["replicas"] == 3  # backend.warm_pool.size
    pod = small["template"]["spec"]
    assert pod["priorityClassName"] == "labspace-placeholder"
    assert pod["automountServiceAccountToken"] is False
    (pause,) = pod["containers"]
    # the guarantee where given (cpu), else the limit (memory), in binary units
    assert pause["resources"] == {"requests": {"cpu": "0.5", "memory": "4Gi"}}
    assert pause["securityContext"]["runAsNonRoot"] is True
    gpu = found["StatefulSet/labspace-placeholder-gpu"]["spec"]["template"]["spec"]
    assert gpu["nodeSelector"] == {"accel": "nvidia"}
    assert gpu["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["containers"][0]["resources"] == {
        "requests": {"memory": "1.5Gi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }


def test_priorities_put_workspaces_above_the_puller_above_placeholders():
    found = by_name(helm.render(FIXTURE))
    value = {n.split("/")[1]: o["value"] for n, o in found.items() if o["kind"] == "PriorityClass"}
    assert value["labspace-workspace"] > value["labspace-image-puller"]
    assert value["labspace-image-puller"] > value["labspace-placeholder"] >= -10  # autoscaler
    assert found["PriorityClass/labspace-placeholder"]["preemptionPolicy"] == "Never"
    assert not any(o.get("globalDefault") for o in found.values() if o["kind"] == "PriorityClass")
    env = helm.container_env(list(found.values()), "labspace-hub")
    assert env["LABSPACE_WORKSPACE_PRIORITY_CLASS"] == "labspace-workspace"


def test_the_puller_pulls_each_pooled_profiles_image_where_it_runs():
    objects = helm.render(
        FIXTURE, **{"labspace.hub.config.KubeSpawner.image_pull_secrets": "{regcred}"}
    )
    found = by_name(objects)
    small = found["DaemonSet/labspace-image-puller-small"]["spec"]["template"]["spec"]
    assert [c["image"] for c in small["initContainers"]] == ["registry.example.org/ws:1.0"]
    assert small["containers"][0]["image"].startswith("registry.k8s.io/pause:")
    assert small["imagePullSecrets"] == [{"name": "regcred"}]
    gpu = found["DaemonSet/labspace-image-puller-gpu"]["spec"]["template"]["spec"]
    assert gpu["initContainers"][0]["image"] == "registry.example.org/gpu:2.1"
    assert gpu["nodeSelector"] == {"accel": "nvidia"}
    assert gpu["priorityClassName"] == "labspace-image-puller"
    off = by_name(helm.render(FIXTURE, **{"prePuller.continuous.enabled": False}))
    assert not [n for n in off if n.startswith("DaemonSet/")]
    assert "StatefulSet/labspace-placeholder-small" in off


def test_every_profile_when_none_is_named_and_the_implicit_one_without_profiles(tmp_path):
    values = yaml.safe_load(FIXTURE.read_text())
    values["labspace"]["backend"]["warm_pool"]["profiles"] = []
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(values))
    names = [n for n in by_name(helm.render(path)) if n.startswith("StatefulSet/")]
    assert sorted(names) == [
        f"StatefulSet/labspace-placeholder-{s}" for s in ("big", "gpu", "small")
    ]
    del values["labspace"]["profiles"]
    path = tmp_path / "implicit.yaml"  # (renders are cached by file name)
    path.write_text(yaml.safe_dump(values))
    found = by_name(helm.render(path))
    default = found["StatefulSet/labspace-placeholder-default"]["spec"]["template"]["spec"]
    assert "resources" not in default["containers"][0]  # no limits, no requests
    puller = found["DaemonSet/labspace-image-puller-default"]["spec"]["template"]["spec"]
    assert puller["initContainers"][0]["image"] == "registry.example.org/ws:1.0"  # backend.image


def test_long_release_names_keep_each_profile_apart():
    release = "a-very-long-release-name-for-labspace-testing-names"
    out = helm.run_helm("template", release, str(helm.CHART), "--values", str(FIXTURE))
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o and o["kind"] in WARM_KINDS[:2]]
    names = [o["metadata"]["name"] for o in objects]
    assert len(set(names)) == len(names) == 4, names
    assert all(len(n) <= 52 for n in names), names
    assert sorted(n.rsplit("-", 2)[-2:][-1] for n in names) == ["gpu", "gpu", "small", "small"]


@pytest.mark.parametrize("name", helm.VALUES)
def test_off_by_default_nothing_is_made(name):
    objects = helm.render(name)
    assert warm_objects(objects) == []
    assert "LABSPACE_WORKSPACE_PRIORITY_CLASS" not in helm.container_env(objects, "labspace-hub")


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param({"labspace.backend.warm_pool.enabled": False}, id="pool-off"),
        pytest.param({"labspace.backend.warm_pool.size": 0}, id="size-0"),
        pytest.param({"labspace.backend.type": "docker"}, id="docker-backend"),
    ],
)
def test_no_placeholders_without_a_kubernetes_pool(sets):
    objects = helm.render(FIXTURE, **sets)
    assert [o for o in objects if o["kind"] == "StatefulSet"] == []


def test_a_misspelt_chart_key_is_refused_by_name():
    out = helm.template(FIXTURE, **{"scheduling.userPlaceholder.replicas": 4})
    assert out.returncode != 0 and "replicas" in out.stderr
