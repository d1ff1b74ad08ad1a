"""Metrics: the hub's own Labspace metrics, the scraper's token, the scrape config.

- ``HubMetrics``: what the hub process adds to JupyterHub's ``/hub/metrics``
  (which serves prometheus_client's default ``REGISTRY``): starts by profile and
  outcome, start durations by profile, refusals by reason (the spawners'
  ``start_outcome`` hook), starts pending and running servers by profile (read
  at scrape time from the hub application). Label values are bounded: profile
  slugs from the settings (anything else is ``(other)``), outcomes and reasons
  from fixed sets; never a user name.
- the warm pool (``backend.warm_pool``): started workspaces by profile and
  ``start`` (warm: a pool member served it; cold), members told to the
  ``pool_event`` hook by key and event (``ready``, ``claimed``, ``gone``), and,
  read from the pool's ``status()`` at scrape time, members ready and being
  made, the pool's size and its oldest member's age per key, and the pool's
  counts, in total and per key (claimed, empty: cold starts because no member
  was ready, made, failed, expired, died). Pool keys are the backend's (an interpreter, an image):
  at most ``MAX_POOL_KEYS``, the rest ``(other)``.
- ``hub_parts``: the ``prometheus`` JupyterHub service (no process, only a kept
  token, ``secrets/prometheus-api-token``) whose role holds ``read:metrics`` and
  ``custom:labspace-metrics:read`` and nothing else; the hook above.
- ``scrape_config``: the Prometheus scrape config for the hub and every enabled
  service, through the public URL (``labspace config prometheus``).
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import profiles as profiles_mod
from . import rules
from .warm import pool_on

NAME = "prometheus"
SCOPE = "custom:labspace-metrics:read"  # services.kit.metrics.SCOPE
ROLE = "labspace-metrics"
SCOPES = ["read:metrics", SCOPE]
SERVICES = ("accounting", "catalog", "data")  # the services with a /metrics
OUTCOMES = ("started", "refused", "failed")
REASONS = {  # the status of a refusal -> its reason label
    400: "options",
    402: "budget",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    429: "too-many",
}
OTHER, NONE = "(other)", "(none)"
MAX_POOL_KEYS = 20
POOL_EVENTS = ("ready", "claimed", "gone")
POOL_TOTALS = ("claimed", "empty", "made", "failed", "expired", "died")
BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))


def refusal_reason(status: int | None) -> str:
    return REASONS.get(status or 0, "other")


def token_file(state) -> str:
    """Where the scraper's token is kept (0600, made by the hub's first start)."""
    return str(state.secrets_dir / f"{NAME}-api-token")


class HubMetrics:
    """The hub's Labspace metrics in the default registry (one per process)."""

    def __init__(self):
        from prometheus_client import REGISTRY, Counter, Histogram

        self.slugs: tuple[str, ...] = ()
        self.default = ""
        self.spawns = Counter(
            "labspace_hub_spawns",
            "Starts asked for, by profile and outcome",
            ["profile", "outcome"],
        )
        self.durations = Histogram(
            "labspace_hub_start_duration_seconds",
            "How long starts took, by profile (started ones)",
            ["profile"],
            buckets=BUCKETS,
        )
        self.refusals = Counter("labspace_hub_refusals", "Starts refused, by reason", ["reason"])
        for reason in {*REASONS.values(), "other"}:
            self.refusals.labels(reason)
        self.warm_starts = Counter(
            "labspace_hub_warm_or_cold_starts",
            "Started workspaces, by profile and start (warm: from the warm pool; cold)",
            ["profile", "start"],
        )
        self.pool_events = Counter(
            "labspace_hub_warm_pool_member_events",
            "Warm pool members made ready, claimed by a start or gone, by pool key",
            ["key", "event"],
        )
        self.pool_keys: list[str] = []  # label values given so far (bounded)
        self.pool_tally: dict[str, dict[str, int]] = {}  # key -> event -> count (ops page)
        REGISTRY.register(_Live(self))

    def set_profiles(self, slugs: list[str], default: str) -> None:
        """The settings' profiles: every series exists from the start (rates read 0)."""
        self.slugs, self.default = tuple(slugs), default
        for slug in slugs:
            self.durations.labels(slug)
            for outcome in OUTCOMES:
                self.spawns.labels(slug, outcome)
            for start in ("warm", "cold"):
                self.warm_starts.labels(slug, start)

    def label(self, profile: str | None) -> str:
        if not profile:
            return NONE
        return profile if profile in self.slugs else OTHER

    def start_outcome(self, spawner, outcome) -> None:
        """The spawners' ``start_outcome`` hook."""
        profile = self.label(outcome.profile)
        kind = outcome.kind if outcome.kind in OUTCOMES else "failed"
        self.spawns.labels(profile, kind).inc()
        if kind == "started":
            self.durations.labels(profile).observe(outcome.seconds)
            warm = getattr(spawner, "started_warm", False) is True
            self.warm_starts.labels(profile, "warm" if warm else "cold").inc()
        elif kind == "refused":
            self.refusals.labels(refusal_reason(outcome.status)).inc()

    def pool_key(self, key: Any) -> str:
        """A pool key as a label value: the first ``MAX_POOL_KEYS`` seen, then ``(other)``."""
        key = str(key or NONE)[:200]
        if key in self.pool_keys:
            return key
        if len(self.pool_keys) < MAX_POOL_KEYS:
            self.pool_keys.append(key)
            return key
        return OTHER

    def pool_event(self, event: dict[str, Any]) -> None:
        """The warm pool's hook (``LabspaceSpawnerMixin.pool_events``)."""
        kind = event.get("event")
        if kind not in POOL_EVENTS:
            return
        key = self.pool_key(event.get("key"))
        self.pool_events.labels(key, kind).inc()
        tally = self.pool_tally.setdefault(key, dict.fromkeys(POOL_EVENTS, 0))
        tally[kind] += 1
        if kind == "gone" and event.get("reason") == "claim failed":
            tally["claim_failed"] = tally.get("claim_failed", 0) + 1

    def running_profile(self, spawner) -> str:
        spec = getattr(spawner, "_profile_spec", None)
        if spec is not None:
            return self.label(spec.profile)
        return self.label((spawner.user_options or {}).get("profile") or self.default)


class _Live:
    """Gauges read from the hub application at scrape time."""

    def __init__(self, metrics: HubMetrics):
        self.metrics = metrics

    @staticmethod
    def _families():
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        pending = GaugeMetricFamily(
            "labspace_hub_pending_spawns", "Starts asked for and not over (queued or starting)"
        )
        running = GaugeMetricFamily(
            "labspace_hub_running_servers", "Running servers, by profile", labels=["profile"]
        )
        members = GaugeMetricFamily(
            "labspace_hub_warm_pool_members",
            "Warm pool members ready to be claimed or being made, by pool key",
            labels=["key", "state"],
        )
        size = GaugeMetricFamily(
            "labspace_hub_warm_pool_size", "Ready members the pool keeps, by key", labels=["key"]
        )
        oldest = GaugeMetricFamily(
            "labspace_hub_warm_pool_oldest_seconds",
            "Age of the oldest ready member, by pool key (0: none ready)",
            labels=["key"],
        )
        totals = CounterMetricFamily(
            "labspace_hub_warm_pool",
            "Warm pool totals since the hub started: claimed, empty (a start found no "
            "ready member and started cold), made, failed (a member did not come up), expired",
            labels=["what"],
        )
        per_key = CounterMetricFamily(
            "labspace_hub_warm_pool_key",
            "Warm pool counts by pool key since the hub started (what: as labspace_hub_warm_pool)",
            labels=["key", "what"],
        )
        return pending, running, members, size, oldest, totals, per_key

    def describe(self):
        """The names, for the registry (which then never calls ``collect`` while
        it holds its lock: importing JupyterHub there would wait on that lock)."""
        return list(self._families())

    def collect(self):
        pending, running, *pool_families = self._families()
        app = _hub_app()
        yield from pool_metrics(self.metrics, _hub_pool(app), *pool_families)
        counts = dict.fromkeys(self.metrics.slugs, 0)
        if app is not None:
            from labspace.spawners.mixin import START_QUEUE

            queue = app.tornado_settings.get(START_QUEUE)
            pending.add_metric([], queue.pending if queue else 0)
            for user in list(app.users.values()):
                for spawner in list(user.spawners.values()):
                    if spawner.ready:
                        profile = self.metrics.running_profile(spawner)
                        counts[profile] = counts.get(profile, 0) + 1
        else:
            pending.add_metric([], 0)
        for profile, n in counts.items():
            running.add_metric([profile], n)
        yield pending
        yield running


def pool_metrics(metrics: HubMetrics, pool, members, size, oldest, totals, per_key, now=None):
    """Fill the pool's families from ``pool.status()`` (nothing without a pool)."""
    if pool is None:
        return
    status = pool.status()
    now = time.time() if now is None else now
    sums: dict[str, dict[str, float]] = {}
    for key, row in sorted((status.get("keys") or {}).items()):
        label = metrics.pool_key(key)
        mine = sums.setdefault(label, {"ready": 0, "making": 0, "size": 0, "oldest": 0.0})
        for what in POOL_TOTALS:
            mine[what] = mine.get(what, 0) + (row.get(what) or 0)
        mine["ready"] += row.get("ready") or 0
        mine["making"] += row.get("making") or 0
        mine["size"] += row.get("size") or 0
        if row.get("oldest"):
            mine["oldest"] = max(mine["oldest"], now - row["oldest"])
    for label, mine in sums.items():
        members.add_metric([label, "ready"], mine["ready"])
        members.add_metric([label, "making"], mine["making"])
        size.add_metric([label], mine["size"])
        oldest.add_metric([label], round(mine["oldest"], 3))
        for what in POOL_TOTALS:
            per_key.add_metric([label, what], mine[what])
    for what in POOL_TOTALS:
        totals.add_metric([what], status.get(what) or 0)
    yield from (members, size, oldest, totals, per_key)


def _hub_pool(app):
    """The hub's warm pool (``labspace.warm.pool``), or None."""
    if app is None:
        return None
    from labspace.warm.pool import POOL_SETTING, WarmPool

    pool = app.tornado_settings.get(POOL_SETTING)
    return pool if isinstance(pool, WarmPool) and not pool.closing else None


def _hub_app():
    """The running JupyterHub application, or None (not in a hub process)."""
    module = sys.modules.get("jupyterhub.app")
    if module is None or not module.JupyterHub.initialized():
        return None
    app = module.JupyterHub.instance()
    return app if app.tornado_settings else None  # not before the hub is set up


_hub_metrics: HubMetrics | None = None


def hub_metrics() -> HubMetrics:
    global _hub_metrics
    if _hub_metrics is None:
        _hub_metrics = HubMetrics()
    return _hub_metrics


def start_outcome(spawner, outcome) -> None:
    """The ``start_outcome`` hook (``LabspaceSpawnerMixin.start_outcome``)."""
    hub_metrics().start_outcome(spawner, outcome)


def pool_event(event: dict[str, Any]) -> None:
    """The warm pool's hook (``LabspaceSpawnerMixin.pool_events``)."""
    hub_metrics().pool_event(event)


def hub_parts(settings, state) -> dict[str, Any]:
    """The scraper's service, role and scope, and the hooks (always on; the
    warm pool's with ``backend.warm_pool.enabled``)."""
    every = profiles_mod.all_profiles(settings.get("profiles"), settings.get("backend"))
    hub_metrics().set_profiles(
        [p["slug"] for p in every], profiles_mod.default_profile(every)["slug"]
    )
    spawner: dict[str, list[str]] = {"start_outcome": ["labspace.metrics.start_outcome"]}
    if pool_on(settings.get("backend")):  # `auto`: on for the local backend
        spawner["pool_events"] = ["labspace.metrics.pool_event"]
    return {
        "services": [{"name": NAME, "api_token": state.service_token(NAME), "display": False}],
        "roles": [
            {
                "name": ROLE,
                "description": "Reads the hub's and the services' metrics, nothing else",
                "scopes": list(SCOPES),
                "services": [NAME],
            }
        ],
        "custom_scopes": {
            SCOPE: {"description": "Read the Prometheus metrics of Labspace's services"}
        },
        "admin_scopes": [SCOPE],
        "spawner": spawner,
    }


def targets(settings) -> list[tuple[str, str]]:
    """``(job, path)`` of every metrics endpoint, under ``hub.base_url``."""
    base = settings.get("hub.base_url")
    found = [("labspace-hub", f"{base}hub/metrics")]
    for name in SERVICES:
        if name in rules.SERVICE_SECTIONS and (settings.get(name) or {}).get("enabled"):
            found.append((f"labspace-{name}", f"{base}services/{name}/metrics"))
    return found


def scrape_config(settings, credentials_file: str, interval: str = "30s") -> str:
    """A Prometheus config (YAML) scraping every target through the public URL,
    with the token read from ``credentials_file`` (never the token itself)."""
    url = urlsplit(settings.public_url())
    jobs = [
        {
            "job_name": job,
            "scheme": url.scheme,
            "metrics_path": path,
            "authorization": {"type": "Bearer", "credentials_file": credentials_file},
            "static_configs": [{"targets": [url.netloc]}],
        }
        for job, path in targets(settings)
    ]
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": _timeout(interval)},
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _timeout(interval: str) -> str:
    """Prometheus refuses a scrape timeout above the interval: 10s, or the interval."""
    seconds = _seconds(interval)
    return interval if seconds < 10 else "10s"


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    raise ValueError(f"{text!r} is not a Prometheus duration such as 15s, 1m or 500ms")
