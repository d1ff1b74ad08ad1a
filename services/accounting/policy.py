"""The accounting section of the settings, as the service uses it (pure).

``Policy`` reads values and has no defaults of its own: the section is completed
from the schema (``settings.schema.json``, through ``labspace.rules.with_defaults``,
the same filling the settings loader does), so a key left out means what the
schema says it means, here and in ``labspace.yaml`` alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from labspace import rules

from .pricing import Point, dec, settings_schedule


@cache
def section_schema() -> dict[str, Any]:
    """The schema of the ``accounting:`` section (shipped with this package)."""
    text = resources.files(__package__).joinpath("settings.schema.json").read_text()
    return json.loads(text)


@dataclass
class Policy:
    """Projects, allowances and enforcement rules from ``accounting:`` settings."""

    section: dict[str, Any]
    profiles: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.section = rules.with_defaults(section_schema(), self.section)

    def get(self, key: str) -> Any:
        return self.section[key]

    @property
    def currency(self) -> str:
        return self.section["currency"]

    @property
    def projects(self) -> dict[str, Any]:
        return self.section["projects"]

    def is_project(self, group: str) -> bool:
        prefix = self.projects["prefix"]
        return group in self.projects["groups"] or bool(prefix and group.startswith(prefix))

    def projects_of(self, groups: list[str] | set[str]) -> list[str]:
        return sorted(g for g in set(groups) if self.is_project(g))

    def default_project(self, user: str, projects: list[str]) -> str | None:
        chosen = self.projects["default"].get(user)
        if chosen in projects:
            return chosen
        return projects[0] if projects else None

    def parent_of(self, project: str) -> str | None:
        return self.projects["parents"].get(project)

    def leads_of(self, project: str) -> list[str]:
        return list(self.projects["leads"].get(project) or [])

    def led_by(self, user: str) -> list[str]:
        return sorted(p for p, users in self.projects["leads"].items() if user in users)

    @property
    def refuse_without_project(self) -> bool:
        return self.section["no_project"] == "refuse"

    @property
    def personal_allowance(self) -> Decimal:
        return dec(self.section["personal_allowance"])

    @property
    def monthly_allowance(self) -> dict[str, Decimal]:
        return {p: dec(a) for p, a in self.section["monthly_allowance"].items()}

    @property
    def min_period_hours(self) -> float:
        return float(self.section["min_period_hours"])

    @property
    def charge_interval(self) -> int:
        return int(self.section["charge_interval"])

    @property
    def grace_period(self) -> int:
        return int(self.section["grace_period"])

    @property
    def warn_at(self) -> list[float]:
        return sorted((float(w) for w in self.section["warn_at"]), reverse=True)

    def schedule(self) -> dict[str, list[Point]]:
        """Each profile's price points as the settings declare them."""
        return settings_schedule(self.section["prices"], self.profiles)

    def display_names(self) -> dict[str, str]:
        return {p["slug"]: p.get("display_name") or p["slug"] for p in self.profiles}
