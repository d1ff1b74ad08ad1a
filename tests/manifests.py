"""What the Kubernetes tests share (tests/test_kube.py, the chart's tests):
golden files, regenerated with ``LABSPACE_REGEN_GOLDEN=1`` after a deliberate
change (review the diff), and kubernetes-validate's strict schemas (no unknown
fields) for the oldest Kubernetes Labspace supports and the newest the package
ships."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("LABSPACE_REGEN_GOLDEN", "") == "1"
OLDEST_KUBERNETES = "1.30"
KUBE_VERSIONS = [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()]


def check_golden_file(path: Path, text: str) -> None:
    """``text`` is the golden file at ``path`` (written when regenerating)."""
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"no golden file {path} (LABSPACE_REGEN_GOLDEN=1 writes it)")
    assert text == path.read_text(), f"differs from {path} (LABSPACE_REGEN_GOLDEN=1 to update)"


def assert_valid(manifest: dict[str, Any], where: str = "") -> None:
    """``manifest`` passes the strict schemas of every Kubernetes in KUBE_VERSIONS."""
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            name = f"{manifest['kind']}/{manifest.get('metadata', {}).get('name', '')}"
            pytest.fail(f"{where}{name} invalid for Kubernetes {version}: {e.message}")
