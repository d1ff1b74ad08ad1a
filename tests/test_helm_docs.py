"""Every YAML example of the Kubernetes docs works as printed: a values example
(its top-level keys are the chart's) renders with the real ``helm template`` and
passes ``helm lint --strict``; a Kubernetes object (``apiVersion`` and ``kind``)
passes kubernetes-validate ``--strict`` for the oldest and newest Kubernetes."""

from __future__ import annotations

import re
from pathlib import Path

import manifests
import pytest
import yaml

import helm

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "how-to" / "kubernetes.md", helm.CHART / "README.md"]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def chart_keys() -> set[str]:
    return set(yaml.safe_load((helm.CHART / "values.yaml").read_text()))


def examples():
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{doc.name}:{line}")


@pytest.fixture(scope="module")
def runs_helm(need):
    problem = helm.helm_problem()
    need("helm", problem is None, problem or "")


@pytest.mark.parametrize("text", list(examples()))
def test_yaml_example(text, tmp_path, runs_helm):
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs, "an empty example"
    for doc in docs:
        if "apiVersion" in doc and "kind" in doc:
            manifests.assert_valid(doc)
            continue
        unknown = set(doc) - chart_keys()
        if unknown:  # a labspace.yaml, checked by test_docs_commands
            assert "labspace" not in doc, f"not the chart's keys: {sorted(unknown)}"
            continue
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(doc))
        rendered = helm.template(values)
        assert rendered.returncode == 0, rendered.stderr
        lint = helm.run_helm("lint", "--strict", str(helm.CHART), "--values", str(values))
        assert lint.returncode == 0, lint.stdout + lint.stderr
