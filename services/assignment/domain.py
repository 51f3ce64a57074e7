"""Assignment rules (交办): routing a filed proposal to its units, and its deadlines. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import AssignmentForm
from shared.policy import Policy, WorkingCalendar, deadline_for


class Unit(BaseModel):
    """承办单位."""

    id: str
    name: str
    short_name: str = ""
    kind: str = "bureau"


class RoutingRule(BaseModel):
    """交办规则: keywords in the title or body → a lead unit and co-handling units."""

    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = Field(min_length=1)
    lead: str
    co: list[str] = Field(default_factory=list)


class RoutingTable(BaseModel):
    """The units catalog seed and the routing rules."""

    model_config = ConfigDict(extra="forbid")

    units: list[Unit]
    rules: list[RoutingRule] = Field(default_factory=list)
    category_defaults: dict[str, str] = Field(default_factory=dict)
    fallback: str


@dataclass(frozen=True)
class Route:
    """A suggested routing, with the reasons a dispatcher sees."""

    lead: str
    co: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def form(self) -> AssignmentForm:
        return AssignmentForm.LEAD_CO if self.co else AssignmentForm.SINGLE


def suggest_route(title: str, body: str, category: str, table: RoutingTable) -> Route:
    """First rule with a keyword in the title or body; else the category's default unit."""
    text = f"{title}\n{body}"
    for rule in table.rules:
        hits = [keyword for keyword in rule.keywords if keyword in text]
        if hits:
            return Route(rule.lead, tuple(rule.co), (f"关键词: {', '.join(hits)}",))
    if category in table.category_defaults:
        return Route(table.category_defaults[category], (), (f"类别默认: {category}",))
    return Route(table.fallback, (), ("无匹配规则, 默认承办单位",))


@dataclass(frozen=True)
class Deadlines:
    """The deadlines an assignment carries: 办复期限, 会办意见期限, 异议期."""

    reply_due: date
    co_opinion_due: date | None
    dispute_until: date


def deadlines(assigned_at: datetime, route_has_co_units: bool, policy: Policy, calendar: WorkingCalendar) -> Deadlines:
    return Deadlines(
        reply_due=deadline_for(policy, "reply_deadline", assigned_at, calendar),
        co_opinion_due=deadline_for(policy, "co_opinion_deadline", assigned_at, calendar)
        if route_has_co_units
        else None,
        dispute_until=deadline_for(policy, "dispute_window", assigned_at, calendar),
    )


def units_must_exist(unit_ids: Sequence[str], catalog: Mapping[str, object]) -> None:
    unknown = [unit_id for unit_id in unit_ids if unit_id not in catalog]
    if unknown:
        raise ValueError(f"unknown unit(s): {', '.join(unknown)}")
