"""The chart's values.schema.json: generated from the settings schema, and what
helm makes of it.

``helm/labspace/values.schema.json`` is written by ``python -m
labspace.helm_schema`` (``make helm-schema``): ``labspace:`` is the settings
schema, the rest the chart's own keys. These tests check that the committed
file is the generator's output, that the chart's values.yaml and the schema
name the same keys, and, with the real helm binary, that a misspelt key or a
bad value stops ``helm template`` with a message naming the key.

helm checks the values against the schema before it renders any template, so
the schema tests run helm on a copy of the chart without its templates (the
chart's own tests render them): they say what the schema does, whatever state
the templates are in. Under CI=true a missing helm fails them.

That the settings schema's secret keys are the ones the chart moves to its
Secret is checked with the chart: tests/test_helm_chart.py,
``test_secret_settings_move_to_the_secret``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import helm
from labspace import helm_schema, settings

CHART = helm.CHART


@pytest.fixture(scope="module")
def schema_chart(tmp_path_factory, need) -> Path:
    """A chart of Chart.yaml, values.yaml and values.schema.json only."""
    problem = helm.helm_problem()
    need("helm", problem is None, problem or "")
    chart = tmp_path_factory.mktemp("chart") / "labspace"
    (chart / "templates").mkdir(parents=True)
    for name in ("Chart.yaml", "values.yaml", "values.schema.json"):
        shutil.copy(CHART / name, chart / name)
    return chart


def helm_template(chart: Path, tmp_path: Path, values: dict[str, Any]) -> tuple[int, str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm.run_helm("template", "labspace", str(chart), "-f", str(values_file))
    return result.returncode, result.stderr


def closed_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of the objects that list their properties."""
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= closed_keys(sub, f"{prefix}{name}.")
    return keys


def value_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of ``values``, down to where the schema stops listing them."""
    keys = set()
    for name, value in values.items():
        keys.add(prefix + name)
        sub = schema.get("properties", {}).get(name, {})
        if isinstance(value, dict) and "properties" in sub:
            keys |= value_keys(value, sub, f"{prefix}{name}.")
    return keys


# -- the generated file ---------------------------------------------------------


def test_committed_schema_is_the_generated_one():
    committed = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert committed == helm_schema.render(), (
        "helm/labspace/values.schema.json is not what the settings schema makes: "
        "run `make helm-schema` and commit it"
    )


def test_check_option_says_when_the_file_drifted(tmp_path, capsys):
    target = tmp_path / "values.schema.json"
    assert helm_schema.main(["--check", "--output", str(target)]) == 1
    assert "run `python -m labspace.helm_schema`" in capsys.readouterr().err
    assert helm_schema.main(["--output", str(target)]) == 0
    assert helm_schema.main(["--check", "--output", str(target)]) == 0


def test_labspace_key_is_the_settings_schema():
    """One source: ``labspace:`` is the settings schema whole, but the patterns
    Go cannot read, put in RE2 (hub.tls.domain's length lookahead)."""
    part = copy.deepcopy(helm_schema.build()["properties"]["labspace"])
    source = copy.deepcopy(settings.schema())
    for schema in (part, source):
        for key in ("$schema", "$id", "title", "description"):
            schema.pop(key, None)
    tls = ("properties", "hub", "properties", "tls", "properties")
    domain, original = part, source
    for step in (*tls, "domain"):
        domain, original = domain[step], original[step]
    assert "(?=" in original["pattern"] and "(?=" not in domain["pattern"]
    assert domain["maxLength"] == 253
    domain.update(pattern=original["pattern"])
    del domain["maxLength"]
    assert part == source


def test_every_listed_object_refuses_unknown_keys():
    def open_objects(node: Any, path: str) -> list[str]:
        found = []
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                found.append(path or "(root)")
            for key, sub in node.items():
                found += open_objects(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                found += open_objects(sub, f"{path}/{i}")
        return found

    assert open_objects(helm_schema.build(), "") == []


def test_every_key_is_documented():
    """The schema is the reference of the values: every key says what it is."""

    def undocumented(node: dict[str, Any], path: str) -> list[str]:
        found = []
        for name, sub in node.get("properties", {}).items():
            if not sub.get("description"):
                found.append(path + name)
            found += undocumented(sub, f"{path}{name}.")
            if isinstance(sub.get("items"), dict):
                found += undocumented(sub["items"], f"{path}{name}[].")
        return found

    assert undocumented(helm_schema.build(), "") == []


def test_values_yaml_and_schema_name_the_same_chart_keys():
    """Every key of values.yaml is in the schema, and every chart key of the
    schema is in values.yaml (documented there, and read by a template)."""
    schema = helm_schema.build()
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    in_values = value_keys(values, schema)
    chart_part = {**schema, "properties": helm_schema.chart_keys()}
    in_schema = closed_keys(chart_part) | {"labspace"}
    assert sorted(in_values - in_schema) == [], "in values.yaml, not in the schema"
    assert sorted(in_schema - in_values) == [], "in the schema, not in values.yaml"


def test_a_pattern_go_cannot_read_stops_the_generator():
    node = {"properties": {"hub": {"properties": {"name": {"pattern": "^(?!admin$).*"}}}}}
    with pytest.raises(helm_schema.PatternError, match=r"^hub\.name: pattern .* GO_PATTERNS"):
        helm_schema._go_patterns(node)


def test_every_pattern_translation_is_still_used():
    used = json.dumps(settings.schema())
    for pattern in helm_schema.GO_PATTERNS:
        assert json.dumps(pattern) in used, f"GO_PATTERNS has a pattern no setting uses: {pattern}"


# -- helm with the schema ---------------------------------------------------------


def test_helm_accepts_every_setting_at_its_default(schema_chart, tmp_path):
    """The complete settings (every default filled in) under ``labspace:``, and a
    TLS domain through the RE2 form of its pattern."""
    full = settings.with_defaults({"hub": {"tls": {"domain": "hub.example.org"}}})
    status, err = helm_template(schema_chart, tmp_path, {"labspace": full})
    assert status == 0, err


BAD_VALUES = [
    pytest.param(
        {"labspace": {"hub": {"hub_prot": 8081}}},
        "at '/labspace/hub': additional properties 'hub_prot' not allowed",
        id="misspelt-setting",
    ),
    pytest.param(
        {"labspace": {"acounting": {}}},
        "at '/labspace': additional properties 'acounting' not allowed",
        id="misspelt-section",
    ),
    pytest.param(
        {"hub": {"imag": {"name": "labspace/hub"}}},
        "at '/hub': additional properties 'imag' not allowed",
        id="misspelt-chart-key",
    ),
    pytest.param(
        {"labspace": {"backend": {"type": "kubernete"}}},
        "at '/labspace/backend/type': value must be one of 'local', 'docker', 'kubernetes'",
        id="setting-enum",
    ),
    pytest.param(
        {"proxy": {"service": {"type": "Loadbalancer"}}},
        "at '/proxy/service/type': value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'",
        id="chart-enum",
    ),
    pytest.param(
        {"labspace": {"hub": {"port": "8000"}}},
        "at '/labspace/hub/port': got string, want integer",
        id="setting-type",
    ),
    pytest.param(
        {"labspace": {"hub": {"tls": {"domain": "a" * 60 + (".b" + "c" * 60) * 4}}}},
        "at '/labspace/hub/tls/domain': maxLength: got 308, want 253",
        id="domain-too-long",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_helm_rejects_bad_values_naming_the_key(schema_chart, tmp_path, values, message):
    status, err = helm_template(schema_chart, tmp_path, values)
    assert status != 0
    assert message in err, err
    assert "Traceback" not in err
