"""Every service's Prometheus endpoint, ``<prefix>metrics``.

A service keeps one ``ServiceMetrics``: its own registry (never the process's
default one, so two services in one test process do not collide), counters it
adds itself (``counter``, ``gauge``, ``histogram``: names are prefixed
``labspace_<service>_``) and an optional ``refresh`` coroutine run before each
scrape to set the gauges it reads from its database.

``routes(prefix)`` adds ``MetricsHandler``, which any token with the custom
scope ``custom:labspace-metrics:read`` may read (the ``prometheus`` service's
token; see ``labspace.metrics``), plus whoever the service's
``scope_implies`` lets in (accounting: ``read-all``). It answers such a token
without ``access:services`` to the service: the scope is all it needs. Label
values must be bounded (profile slugs, app ids, states), never user names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .web import ServiceHandler

SCOPE = "custom:labspace-metrics:read"
CUSTOM_SCOPES = {
    SCOPE: {"description": "Read the Prometheus metrics of Labspace's services (/metrics)"},
}


class ServiceMetrics:
    """The metrics of service ``service`` (``labspace_<service>_...``)."""

    def __init__(self, service: str, refresh: Callable[[], Awaitable[None]] | None = None):
        self.service = service
        self.namespace = "labspace_" + service.replace("-", "_")
        self.registry = CollectorRegistry()
        self.refresh = refresh
        self.up = self.gauge("up", "1 while the service answers (always 1 in a scrape)")
        self.up.set(1)

    def _name(self, name: str) -> str:
        return f"{self.namespace}_{name}"

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(self._name(name), doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(self._name(name), doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (), **kw) -> Histogram:
        return Histogram(self._name(name), doc, list(labels), registry=self.registry, **kw)

    async def render(self) -> bytes:
        if self.refresh is not None:
            await self.refresh()
        return generate_latest(self.registry)


def counts(session, column) -> dict:
    """``{value: rows}`` of ``column``'s table, grouped by it (one query)."""
    from sqlalchemy import func, select

    return dict(session.execute(select(column, func.count()).group_by(column)).all())


class MetricsHandler(ServiceHandler):
    """``GET <prefix>metrics``: the service's metrics in Prometheus' text format."""

    @property
    def hub_scopes(self):
        # the service's access scope, or the metrics scope alone (the scraper's token)
        access = self.hub_auth.access_scopes
        return {*access, SCOPE} if access else None

    @property
    def metrics(self) -> ServiceMetrics:
        """The application setting ``metrics`` (a service may say otherwise)."""
        return self.settings["metrics"]

    async def get(self):
        self.need(SCOPE)
        body = await self.metrics.render()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


def routes(prefix: str, handler: type[MetricsHandler] = MetricsHandler) -> list[tuple[str, type]]:
    return [(prefix + "metrics", handler)]
