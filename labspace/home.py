"""The hub's home page: my workspaces, my apps, my datasets, my budget.

JupyterHub's own ``HomeHandler`` serves ``/hub/home``; Labspace's
``templates/home.html`` replaces its body. The template variable
``labspace_home`` (a ``HomeData``, set by ``hubpages.hub_values``) is called
with the signed-in user and gives a ``HomeView``; the template awaits
``view.gather()`` (JupyterHub renders pages with Jinja's async mode).

Why on the hub's side: the hub already knows who is signed in and holds each
service's token, so it asks the services' internal APIs for that person's apps,
datasets and budget (``ServiceDirectory.ask_many``, at once, 2 s at most) and
renders them with Jinja's escaping. The browser never holds a service token and
needs no OAuth round trip per service; a service that is off has no section, one
that does not answer has a section that says so, and the rest of the page works.

Starting, stopping and the start's progress go from the browser straight to
JupyterHub's REST API with the person's own login (``templates/home.html``),
as JupyterHub's own home page does.

The pure parts (``workspace_rows``, ``hours_phrase``, ``budget_view``) have
unit tests in ``tests/test_home.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from . import profiles as profiles_mod

log = logging.getLogger("JupyterHub.labspace")

STATES = ("running", "starting", "stopping", "stopped")


@dataclass
class Section:
    """One part of the page: ``enabled`` (the service is on), ``available``
    (it answered), ``items`` (what it said)."""

    enabled: bool
    available: bool = False
    items: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


def server_state(orm_spawner, wrapper) -> str:
    """``running``, ``starting``, ``stopping`` or ``stopped``."""
    if wrapper is not None:
        if wrapper.pending == "spawn":
            return "starting"
        if wrapper.pending == "stop":
            return "stopping"
        if wrapper.ready:
            return "running"
        return "stopped"
    return "running" if getattr(orm_spawner, "server", None) is not None else "stopped"


def workspace_rows(
    entries: list[dict[str, Any]], names: dict[str, str], default_slug: str
) -> list[dict[str, Any]]:
    """The workspace table: the default server first (even before it ever ran),
    then named servers by name; each with its profile's display name (its
    last start's ``profile`` option, else the default profile).

    ``entries``: ``{"name", "display_name", "state", "options", "last_activity"}``."""
    by_name = {e["name"]: e for e in entries}
    by_name.setdefault("", {"name": "", "state": "stopped", "options": {}})
    rows = []
    for name in sorted(by_name, key=lambda n: (n != "", n.lower())):
        e = by_name[name]
        options = e.get("options") or {}
        slug = options.get("profile") if isinstance(options.get("profile"), str) else ""
        slug = slug or default_slug
        rows.append(
            {
                "name": name,
                "label": e.get("display_name") or name or "Default workspace",
                "state": e.get("state") if e.get("state") in STATES else "stopped",
                "profile": slug,
                "profile_name": names.get(slug, slug),
                "options": {k: v for k, v in options.items() if k in ("profile", "project")},
                "last_activity": e.get("last_activity"),
            }
        )
    return rows


def hours_phrase(hours: float | None) -> str:
    """How long a budget lasts, in words: ``about 14 hours``."""
    if hours is None:
        return "no limit known"
    if hours <= 0:
        return "no time"
    if hours < 1:
        minutes = max(1, round(hours * 60))
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    if hours < 48:
        whole = round(hours)
        return f"about {whole} hour{'s' if whole != 1 else ''}"
    days = round(hours / 24)
    return f"about {days} days"


def _amount(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text))
    except (InvalidOperation, ValueError):
        return None


def hours_left(balance: Decimal | None, per_hour: Decimal | None) -> float | None:
    if balance is None or not per_hour or per_hour <= 0:
        return None
    return float(max(balance, Decimal(0)) / per_hour)


def budget_view(
    info: dict[str, Any], profiles: list[dict[str, Any]], running: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the budget section says, from accounting's ``spawn-info``:
    ``{"currency", "accounts": [{"name", "balance", "default", "lasts":
    [{"profile", "price", "phrase"}]}], "burn": {...} | None, "empty": bool}``.

    ``lasts`` is, per profile the person may use with a price, how long the
    account's balance pays for it ("about 14 hours left on Medium"). ``burn``
    is the running workspaces' price per hour and how long the default account
    lasts at that rate."""
    currency = info.get("currency") or "credits"
    prices = {k: _amount(v) for k, v in (info.get("prices") or {}).items()}
    accounts = [
        {"name": p.get("name", ""), "balance": p.get("balance"), "default": bool(p.get("default"))}
        for p in info.get("projects") or []
    ]
    if info.get("personal") is not None:
        accounts.append(
            {"name": "", "balance": info["personal"].get("balance"), "default": not accounts}
        )
    for account in accounts:
        balance = _amount(account["balance"])
        account["lasts"] = [
            {
                "profile": p.get("display_name") or p["slug"],
                "price": str(prices[p["slug"]]),
                "phrase": hours_phrase(hours_left(balance, prices[p["slug"]])),
            }
            for p in profiles
            if prices.get(p.get("slug"))
        ]
        account["empty"] = balance is None or balance <= 0
    rate = sum((prices.get(r["profile"]) or Decimal(0) for r in running), Decimal(0))
    burn = None
    default = next((a for a in accounts if a["default"]), accounts[0] if accounts else None)
    if running and rate > 0 and default is not None:
        lasts = hours_left(_amount(default["balance"]), rate)
        burn = {"per_hour": str(rate), "count": len(running), "phrase": hours_phrase(lasts)}
    return {
        "currency": currency,
        "accounts": accounts,
        "burn": burn,
        "empty": not accounts or all(a["empty"] for a in accounts),
        "refused": bool(info.get("refuse_without_project")),
    }


def listing(enabled: bool, answer: Any, key: str) -> Section:
    """A section of ``answer[key]`` (a list of objects with an ``id``), or
    unavailable when the service did not answer or answered something else."""
    section = Section(enabled)
    items = answer.get(key) if isinstance(answer, dict) else None
    if isinstance(items, list) and all(isinstance(i, dict) and "id" in i for i in items):
        section.available, section.items = True, items
    return section


def _spawner_entries(user) -> list[dict[str, Any]]:
    entries = []
    for name, orm_spawner in user.orm_user.orm_spawners.items():
        if name and not user.allow_named_servers:
            continue
        wrapper = user.spawners.get(name)  # (a plain get: [] would make one)
        last = orm_spawner.last_activity
        entries.append(
            {
                "name": name,
                "display_name": getattr(orm_spawner, "display_name", None),
                "state": server_state(orm_spawner, wrapper),
                "options": dict(orm_spawner.user_options or {}),
                "last_activity": last.isoformat() + "Z" if last else None,
            }
        )
    return entries


class HomeView:
    """One person's home page data; ``await view.gather()`` in the template."""

    def __init__(self, home: HomeData, user):
        self.home = home
        self.user = user

    async def gather(self) -> dict[str, Any]:
        user, directory = self.user, self.home.directory
        groups = sorted(g.name for g in user.groups)
        mine = profiles_mod.visible_profiles(self.home.profiles, self.home.backend, set(groups))
        names = {p["slug"]: p.get("display_name") or p["slug"] for p in mine}
        everyone = profiles_mod.all_profiles(self.home.profiles, self.home.backend)
        names_all = {p["slug"]: p.get("display_name") or p["slug"] for p in everyone}
        default_slug = profiles_mod.default_profile(mine or everyone)["slug"]
        rows = workspace_rows(_spawner_entries(user), names_all, default_slug)
        query = urlencode({"user": user.name, "groups": ",".join(groups)})
        answers = await directory.ask_many(
            {
                "budget": ("accounting", f"spawn-info?{query}"),
                "apps": ("catalog", f"mine?{query}"),
                "datasets": ("data", f"mine?{query}"),
            }
        )
        apps = listing(directory.enabled("catalog"), answers["apps"], "apps")
        data = listing(directory.enabled("data"), answers["datasets"], "datasets")
        budget = Section(directory.enabled("accounting"))
        if isinstance(answers["budget"], dict):
            running = [r for r in rows if r["state"] in ("running", "starting")]
            try:
                budget.detail = budget_view(answers["budget"], mine, running)
                prices = dict(answers["budget"].get("prices") or {})
            except (TypeError, ValueError, KeyError, AttributeError):
                log.exception("Unexpected spawn-info answer for %s's home page", user.name)
            else:
                budget.available = True
                for row in rows:
                    row["price"] = prices.get(row["profile"])
        return {
            "workspaces": rows,
            "profiles": [{"slug": p["slug"], "name": names[p["slug"]]} for p in mine],
            "apps": apps,
            "datasets": data,
            "budget": budget,
        }


class HomeData:
    """The ``labspace_home`` template variable: ``HomeData(user) -> HomeView``.
    Called for every page JupyterHub renders, so it only builds the view;
    nothing is asked until ``home.html`` awaits ``gather()``."""

    def __init__(self, directory, settings_profiles: list[dict[str, Any]], backend: dict):
        self.directory = directory
        self.profiles = list(settings_profiles or [])
        self.backend = dict(backend or {})

    def __call__(self, user) -> HomeView | None:
        return HomeView(self, user) if user is not None else None

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other):
        return isinstance(other, HomeData) and (
            self.directory,
            self.profiles,
            self.backend,
        ) == (other.directory, other.profiles, other.backend)
