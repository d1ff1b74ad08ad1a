"""The accounting section of the settings, as the service uses it (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .pricing import Point, dec, settings_schedule


@dataclass
class Policy:
    """Projects, allowances and enforcement rules from ``accounting:`` settings."""

    section: dict[str, Any]
    profiles: list[dict[str, Any]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.section.get(key, default)

    @property
    def currency(self) -> str:
        return self.section.get("currency") or "credits"

    @property
    def projects(self) -> dict[str, Any]:
        return self.section.get("projects") or {}

    def is_project(self, group: str) -> bool:
        prefix = self.projects.get("prefix") or ""
        return group in (self.projects.get("groups") or []) or bool(
            prefix and group.startswith(prefix)
        )

    def projects_of(self, groups: list[str] | set[str]) -> list[str]:
        return sorted(g for g in set(groups) if self.is_project(g))

    def default_project(self, user: str, projects: list[str]) -> str | None:
        chosen = (self.projects.get("default") or {}).get(user)
        if chosen in projects:
            return chosen
        return projects[0] if projects else None

    def parent_of(self, project: str) -> str | None:
        return (self.projects.get("parents") or {}).get(project)

    def leads_of(self, project: str) -> list[str]:
        return list((self.projects.get("leads") or {}).get(project) or [])

    def led_by(self, user: str) -> list[str]:
        return sorted(p for p, users in (self.projects.get("leads") or {}).items() if user in users)

    @property
    def refuse_without_project(self) -> bool:
        return self.section.get("no_project") == "refuse"

    @property
    def personal_allowance(self) -> Decimal:
        return dec(self.section.get("personal_allowance") or 0)

    @property
    def monthly_allowance(self) -> dict[str, Decimal]:
        return {p: dec(a) for p, a in (self.section.get("monthly_allowance") or {}).items()}

    @property
    def min_period_hours(self) -> float:
        return float(self.section.get("min_period_hours") or 1)

    @property
    def charge_interval(self) -> int:
        return int(self.section.get("charge_interval") or 60)

    @property
    def grace_period(self) -> int:
        return int(self.section.get("grace_period", 600))

    @property
    def warn_at(self) -> list[float]:
        return sorted((float(w) for w in self.section.get("warn_at", [0.2, 0.1])), reverse=True)

    def schedule(self) -> dict[str, list[Point]]:
        """Each profile's price points as the settings declare them."""
        return settings_schedule(self.section.get("prices") or {}, self.profiles)

    def display_names(self) -> dict[str, str]:
        return {p["slug"]: p.get("display_name") or p["slug"] for p in self.profiles}
