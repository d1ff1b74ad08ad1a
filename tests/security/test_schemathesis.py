"""schemathesis against every service's OpenAPI document, through a real hub.

One hub (every service on) serves the module. Each service's document, as the
hub's proxy serves it, drives schemathesis with a plain user's token (alice)
and then with an admin's: the admin's runs come last, so whatever they change
cannot break the plain user's. For every operation schemathesis generates
valid and invalid requests; every answer must be:

- no 5xx, and an answer within ``REQUEST_TIMEOUT`` (a hang fails the run);
- what the document says (status codes, content types, response schemas,
  invalid parameters and bodies refused, valid ones accepted);
- refused without a token and with a bad one, whenever the operation declares
  authentication and answered 2xx (schemathesis' ``ignored_auth``).

Bounded: ``MAX_EXAMPLES`` cases per operation, no shrinking, no example
database, and ``BUDGET`` seconds per service and caller, after which the
operations left are skipped (and said so in the summary). Failures are
collected, one per operation and check, and reported with a curl command that
reproduces each. The per-run counts are printed in pytest's terminal summary.

schemathesis' pytest plugin (``schemathesis.pytest.from_fixture``) does not run
under pytest 9 (it sets ``Function._nodeid``), so each operation is driven by
its public ``APIOperation.as_strategy`` under Hypothesis' ``@given``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_EXAMPLES = 15
BUDGET = 50  # seconds per service and caller
REQUEST_TIMEOUT = 10
DOCUMENTS = {
    "accounting": ("services/accounting/api/openapi.json", "services/accounting/api"),
    "catalog": ("services/catalog/api/openapi.json", "services/catalog"),
    "data": ("services/data/api/openapi.json", "services/data"),
}
# operations whose schema-valid requests may still get a 400 for a rule a JSON
# Schema cannot state; schemathesis' positive_data_acceptance is off for them
# (every other check stays on)
SEMANTIC_400 = {
    ("accounting", "GET /usage"): "'to' after 'from', at most 10 years, real calendar days",
    ("accounting", "GET /projects/{name}"): "'to' after 'from', at most 10 years, real days",
    ("accounting", "POST /ledger/topup"): "'project' must name an existing project",
    ("accounting", "POST /ledger/assign"): "'parent'/'child' must name existing projects",
    ("accounting", "POST /ledger/move"): "'from'/'to' must name existing projects",
    ("catalog", "POST /api/apps"): "an SVG icon must decode to well-formed UTF-8 XML",
    # (reached since the security world is shared: alice's launch 1 exists)
    ("catalog", "POST /api/launches/{launch_id}/shares"): "the user or group must exist",
    ("catalog", "PATCH /api/apps/{app_id}"): "an SVG icon must decode to well-formed UTF-8 XML",
    ("data", "POST /api/datasets"): "a host path must lie under data.roots (and exist there)",
    ("data", "PATCH /api/datasets/{dataset_id}"): "the changed dataset: the same path rules",
    ("data", "GET /api/audit"): "'until' after 'since'",
}
# plain user first, admin last (see the module docstring)
RUNS = [(s, who) for who in ("alice", "admin") for s in DOCUMENTS]


@dataclass
class Run:
    """One service tried as one caller: its time budget and what it saw."""

    service: str
    who: str
    deadline: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    operations: list = field(default_factory=list)
    failures: dict = field(default_factory=dict)  # operation -> {check title: report}
    skipped: list = field(default_factory=list)

    def record(self, case, response) -> None:
        self.statuses[response.status_code] += 1

    def fail(self, case, what: str, detail: str) -> None:
        self.failures.setdefault(case.operation.label, {}).setdefault(what, detail)

    def summary(self) -> str:
        requests_sent = sum(self.statuses.values())
        fives = sum(n for s, n in self.statuses.items() if s >= 500)
        failed = sum(map(len, self.failures.values()))
        text = (
            f"schemathesis {self.service} as {self.who}: {len(self.operations)} operations, "
            f"{requests_sent} requests, {fives} 5xx, {failed} failed checks, "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )
        if self.skipped:
            text += f"; out of time budget, not run: {self.skipped}"
        return text

    def report(self) -> str:
        """Each failing operation: its failed checks, then each distinct report."""
        parts = []
        for label, found in self.failures.items():
            parts.append(f"== {label}: {', '.join(found)}")
            parts += dict.fromkeys(found.values())
        return "\n".join(parts)


def exercise(operation, run: Run, headers: dict[str, str]) -> None:
    """``MAX_EXAMPLES`` valid and invalid requests to ``operation``, checked."""
    excluded = []
    if (run.service, operation.label) in SEMANTIC_400:
        excluded.append(schemathesis.checks.positive_data_acceptance)
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=timedelta(seconds=2 * REQUEST_TIMEOUT),
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def once(case):
        if time.monotonic() > run.deadline:
            return
        try:
            response = case.call(headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as e:  # a hang or a dropped connection
            run.fail(case, "no answer", f"{type(e).__name__}: {e}\n{case.as_curl_command()}")
            return
        run.record(case, response)
        try:
            case.validate_response(response, headers=headers, excluded_checks=excluded)
        except FailureGroup as group:
            for failure in group.exceptions:
                run.fail(case, failure.title, str(group)[:1500])

    once()


@pytest.fixture(scope="module")
def world(security_world_factory):
    return security_world_factory()


@pytest.mark.parametrize(("service", "who"), RUNS, ids=[f"{s}-{who}" for s, who in RUNS])
def test_service_answers_as_its_document_says(world, security_summary, service, who):
    document, base = DOCUMENTS[service]
    config = schemathesis.Config.from_dict(
        {
            "base-url": world.url + base,
            "request-timeout": REQUEST_TIMEOUT,
            # unknown query parameters and headers may be ignored, as HTTP allows;
            # NUL characters are refused (400) by rule, which no document can say
            # of every key; the token is ours to send (schemathesis would otherwise
            # "break" the Authorization header in a negative case we then mend)
            "generation": {
                "allow-extra-parameters": False,
                "allow-x00": False,
                "with-security-parameters": False,
            },
        }
    )
    schema = schemathesis.openapi.from_url(world.url + document, config=config, timeout=30)
    headers = {"Authorization": f"token {world.tokens[who]}"}
    run = Run(service, who, time.monotonic() + BUDGET)
    try:
        for result in schema.get_all_operations():
            operation = result.ok()  # a document schemathesis cannot read fails here
            if time.monotonic() > run.deadline:
                run.skipped.append(operation.label)
                continue
            run.operations.append(operation.label)
            exercise(operation, run, headers)
    finally:
        security_summary.append(run.summary())
    assert not run.failures, f"{run.summary()}\n\n{run.report()}"


METHODS = ("put", "patch", "delete", "post", "get")
# a value for each path parameter of the documents, so the path exists
PATH_VALUES = {
    "{app_id}": "demo",
    "{launch_id}": "1",
    "{name}": "lab-a",
    "{dataset_id}": "genomes",
    "{subject_type}": "group",
    "{subject}": "lab-a",
    "{level}": "read",
    "{user}": "alice",
}


@pytest.mark.parametrize("service", DOCUMENTS)
def test_undeclared_methods_are_405_with_allow(world, service):
    """Every path of the document refuses a method it does not declare with 405
    and an ``Allow`` header naming the ones it does."""
    document, base = DOCUMENTS[service]
    headers = {"Authorization": f"token {world.tokens['alice']}"}
    with httpx.Client(base_url=world.url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        paths = client.get(document).json()["paths"]
        wrong = []
        for path, item in paths.items():
            declared = {m.upper() for m in item if m in METHODS}
            method = next(m.upper() for m in METHODS if m.upper() not in declared)
            url = base + path
            for param, value in PATH_VALUES.items():
                url = url.replace(param, value)
            r = client.request(method, url)
            allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
            if r.status_code != 405 or not declared <= allow or method in allow:
                wrong.append(
                    f"{method} {path}: {r.status_code} Allow={sorted(allow)} {r.text[:200]}"
                )
    assert not wrong, "\n".join(wrong)
