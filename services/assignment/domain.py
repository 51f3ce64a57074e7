"""Assignment rules (交办): routing a filed proposal to its units, the forms of assignment, disputes
(异议), key proposals (重点提案) and the deadlines an assignment carries. Pure: no I/O, no clock."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.assignment.learning import Ranking
from shared.errors import NotYours, RuleViolation, StateConflict
from shared.events import (
    Actor,
    AssignmentAccepted,
    AssignmentDeadlinesChanged,
    AssignmentDisputed,
    AssignmentDisputeUpheld,
    AssignmentForm,
    AssignmentReassigned,
    AssignmentSuggested,
    Event,
    ProposalAssigned,
    UnitRef,
)
from shared.policy import Policy, WorkingCalendar, deadline_for, local_date

UnitKind = Literal["bureau", "town", "street", "other"]
"""市直单位 (bureau), 镇 (town), 街道 (street), other (党委部门, 园区管委会…)."""


class AssignmentStatus(StrEnum):
    """Where an assignment stands."""

    SUGGESTED = "suggested"  # 交办建议, awaiting the dispatcher (confirm mode)
    ASSIGNED = "assigned"  # 已交办, within the dispute window
    DISPUTED = "disputed"  # 有异议, awaiting the dispatcher
    ACCEPTED = "accepted"  # 已签收: every unit accepted, was upheld, or the window closed
    SUPERSEDED = "superseded"  # 已改办: replaced by a reassignment


class UnitResponse(StrEnum):
    """What one unit of an assignment said."""

    ACCEPTED = "accepted"  # 签收 (or deemed, when the window closed)
    DISPUTED = "disputed"  # 异议
    UPHELD = "upheld"  # 异议未获支持: the dispatcher kept the assignment


class Unit(BaseModel):
    """承办单位: contacts are notify's directory, not kept here."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,99}$")
    name: str = Field(min_length=2, max_length=200)
    short_name: str = Field(default="", max_length=100)
    kind: UnitKind = "bureau"
    active: bool = True


class Leader(BaseModel):
    """市领导: a supervising (督办) or leading (领办) leader of key proposals, named by title."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^leader-[a-z0-9-]{1,90}$")
    title: str = Field(min_length=2, max_length=200, description="e.g. 市政协主席, 副市长(分管教育)")
    active: bool = True


class RoutingRule(BaseModel):
    """交办规则: keywords in the title or body → a lead unit and co-handling units."""

    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = Field(min_length=1)
    lead: str
    co: list[str] = Field(default_factory=list)


class RoutingRules(BaseModel):
    """交办规则 as admins edit them: keyword rules, each category's default unit, the fallback."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RoutingRule] = Field(default_factory=list)
    category_defaults: dict[str, str] = Field(default_factory=dict)
    fallback: str


class RoutingTable(RoutingRules):
    """The seed file: the units catalog, the leaders and the routing rules."""

    units: list[Unit]
    leaders: list[Leader] = Field(default_factory=list)

    def rules_only(self) -> RoutingRules:
        return RoutingRules(rules=self.rules, category_defaults=self.category_defaults, fallback=self.fallback)


def rules_must_name_known_units(rules: RoutingRules, active_units: Sequence[str], categories: Sequence[str]) -> None:
    """Routing rules may only route to active units of the catalog, and only for the policy's categories."""
    problems = []
    for index, rule in enumerate(rules.rules):
        unknown = [unit for unit in (rule.lead, *rule.co) if unit not in active_units]
        if unknown:
            problems.append(f"rules[{index}] names unknown or inactive unit(s) {', '.join(unknown)}")
        if rule.lead in rule.co:
            problems.append(f"rules[{index}]: the lead unit {rule.lead} cannot also be a co-handling unit")
    for category, unit in rules.category_defaults.items():
        if category not in categories:
            problems.append(f"category_defaults: {category!r} is not a policy category ({', '.join(categories)})")
        if unit not in active_units:
            problems.append(f"category_defaults[{category}] names unknown or inactive unit {unit}")
    if rules.fallback not in active_units:
        problems.append(f"fallback names unknown or inactive unit {rules.fallback}")
    if problems:
        raise RuleViolation("routing_rules_valid", "; ".join(problems))


@dataclass(frozen=True)
class Route:
    """A routing: the lead unit, co-handling (会办) or split (分办) units, and the reasons a dispatcher sees."""

    lead: str
    co: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)
    split: tuple[str, ...] = ()

    @property
    def form(self) -> AssignmentForm:
        if self.split:
            return AssignmentForm.SPLIT
        return AssignmentForm.LEAD_CO if self.co else AssignmentForm.SINGLE

    @property
    def units(self) -> tuple[str, ...]:
        """Every unit of the assignment, the lead first: each may accept or dispute."""
        return (self.lead, *self.co, *self.split)


def route_of_form(
    form: AssignmentForm | None, lead: str, co: Sequence[str], split: Sequence[str], reasons: Sequence[str] = ()
) -> Route:
    """交办形式 must match its units: 单办 one unit; 主办+会办 a lead and at least one co-handling
    unit; 分办 at least two units that each reply. Without a form, it follows from the units given."""
    units = [lead, *co, *split]
    repeated = sorted({unit for unit in units if units.count(unit) > 1})
    if repeated:
        raise RuleViolation(
            "units_distinct", f"a unit takes one part in an assignment; repeated: {', '.join(repeated)}"
        )
    route = Route(lead, tuple(co), tuple(reasons), tuple(split))
    if form is None:
        if co and split:
            raise RuleViolation("form_matches_units", "give co_units (主办+会办) or split_units (分办), not both")
        return route
    expected = {
        AssignmentForm.SINGLE: "单办 takes the lead unit only: leave co_units and split_units empty",
        AssignmentForm.LEAD_CO: "主办+会办 needs at least one co_unit and no split_units",
        AssignmentForm.SPLIT: "分办 needs at least one split_unit beside the lead unit and no co_units",
    }
    if route.form != form or (co and split):
        raise RuleViolation("form_matches_units", expected[form])
    return route


def _keyword_hits(rule: RoutingRule, text: str) -> list[str]:
    return [keyword for keyword in rule.keywords if keyword in text]


def suggest_route(title: str, body: str, category: str, table: RoutingRules) -> Route:
    """Rules only: the first rule with a keyword in the title or body; else the category's default unit."""
    text = f"{title}\n{body}"
    for rule in table.rules:
        hits = _keyword_hits(rule, text)
        if hits:
            return Route(rule.lead, tuple(rule.co), (f"关键词: {', '.join(hits)}",))
    if category in table.category_defaults:
        return Route(table.category_defaults[category], (), (f"类别默认: {category}",))
    return Route(table.fallback, (), ("无匹配规则, 默认承办单位",))


def rules_ranking(title: str, body: str, category: str, table: RoutingRules) -> list[str]:
    """Rules only, as a ranking of lead units: every matching rule in order, the category default, the fallback."""
    text = f"{title}\n{body}"
    ranked = [rule.lead for rule in table.rules if _keyword_hits(rule, text)]
    if category in table.category_defaults:
        ranked.append(table.category_defaults[category])
    ranked.append(table.fallback)
    return list(dict.fromkeys(ranked))


MIN_LEARNED_SIMILARITY = 0.12
"""Below this cosine similarity to every unit's past proposals, the learned ranking has nothing to say."""
CONFIDENT_SIMILARITY = 0.25
CONFIDENT_MARGIN = 0.05
"""The learned ranking overrules a keyword in the title when its top unit is this similar and this far
ahead of the next: similar past proposals were led by one unit, whatever the keyword suggests."""


def combined_route(
    title: str, body: str, category: str, table: RoutingRules, ranking: Ranking, names: Mapping[str, str]
) -> tuple[Route, list[str]]:
    """交办建议: rules and the ranking learned from past assignments, combined; with the full ranking.

    In order: the learned ranking when it is confident (past proposals this similar were led by one
    unit, e.g. a town's own matter that mentions 学位 or 交通); a keyword in the title; the learned
    ranking when it has anything to say, since a keyword only in the body is often incidental; a
    keyword in the body; the category default. The reasons show both the rule and the learned ranking.
    """
    learned = [(unit, score) for unit, score in ranking if unit in names]
    top = ", ".join(f"{names[unit]} {score:.2f}" for unit, score in learned[:3])
    learned_reason = f"相似历史提案: {top}" if learned else "相似历史提案: 无"
    title_rule = next((rule for rule in table.rules if _keyword_hits(rule, title)), None)
    body_rule = next((rule for rule in table.rules if _keyword_hits(rule, f"{title}\n{body}")), None)
    confident = bool(learned) and learned[0][1] >= CONFIDENT_SIMILARITY
    if confident and len(learned) > 1:
        confident = learned[0][1] - learned[1][1] >= CONFIDENT_MARGIN
    keyword_rule = title_rule or body_rule
    if confident:
        lead = learned[0][0]
        co = tuple(keyword_rule.co) if keyword_rule is not None and keyword_rule.lead == lead else ()
        route = Route(lead, co, (f"相似历史提案多由{names[lead]}主办",))
    elif title_rule is not None:
        route = Route(
            title_rule.lead, tuple(title_rule.co), (f"标题关键词: {', '.join(_keyword_hits(title_rule, title))}",)
        )
    elif learned and learned[0][1] >= MIN_LEARNED_SIMILARITY:
        lead = learned[0][0]
        co = tuple(keyword_rule.co) if keyword_rule is not None and keyword_rule.lead == lead else ()
        route = Route(lead, co, (f"相似历史提案多由{names[lead]}主办",))
    elif body_rule is not None:
        route = Route(body_rule.lead, tuple(body_rule.co), (f"关键词: {', '.join(_keyword_hits(body_rule, body))}",))
    else:
        route = suggest_route(title, body, category, table)
    ranked = [route.lead, *(unit for unit, _ in learned)]
    ranked += rules_ranking(title, body, category, table)
    return Route(route.lead, route.co, (*route.reasons, learned_reason)), list(dict.fromkeys(ranked))


@dataclass(frozen=True)
class Deadlines:
    """The deadlines an assignment carries: 办复期限, 会办意见期限, 异议期."""

    reply_due: date
    co_opinion_due: date | None
    dispute_until: date
    provisional: bool = False
    """暂定日历: a day counted lies in a year whose official holiday calendar is not known yet."""

    def dates(self) -> tuple[date, date | None, date]:
        return (self.reply_due, self.co_opinion_due, self.dispute_until)


def deadlines(assigned_at: datetime, route_has_co_units: bool, policy: Policy, calendar: WorkingCalendar) -> Deadlines:
    """办复期限, 会办意见期限 (only with co-handling units) and 异议期, all by the policy's one deadline
    function from the moment of 交办; a reassignment starts them again."""
    reply_due = deadline_for(policy, "reply_deadline", assigned_at, calendar)
    co_opinion_due = deadline_for(policy, "co_opinion_deadline", assigned_at, calendar) if route_has_co_units else None
    dispute_until = deadline_for(policy, "dispute_window", assigned_at, calendar)
    last = max(d for d in (reply_due, co_opinion_due, dispute_until) if d is not None)
    return Deadlines(
        reply_due=reply_due,
        co_opinion_due=co_opinion_due,
        dispute_until=dispute_until,
        provisional=calendar.is_provisional(local_date(assigned_at, policy.timezone), last),
    )


@dataclass(frozen=True)
class DeadlineChange:
    """期限调整 of one proposal, as `proposalflow deadlines recompute` reports it."""

    proposal_id: str
    deadline: str
    previous: date | None
    due: date | None
    provisional: bool


def units_must_be_active(unit_ids: Sequence[str], catalog: Mapping[str, Mapping[str, object]]) -> None:
    """Only active units of the catalog are assigned."""
    unknown = [unit_id for unit_id in unit_ids if unit_id not in catalog]
    if unknown:
        raise RuleViolation("unit_in_catalog", f"unknown unit(s): {', '.join(unknown)}; see GET /units")
    inactive = [unit_id for unit_id in unit_ids if not catalog[unit_id]["active"]]
    if inactive:
        raise RuleViolation("unit_active", f"unit(s) {', '.join(inactive)} are deactivated; choose active units")


def dispute_window_open(dispute_until: date, today: date) -> bool:
    """异议期: a unit may dispute up to and including the last day of the window."""
    return today <= dispute_until


def confirm_only_suggested(status: AssignmentStatus) -> None:
    if status != AssignmentStatus.SUGGESTED:
        raise StateConflict("confirm_only_suggested", f"the assignment is already {status.value}; use reassign")


def unit_may_respond(
    unit: str | None,
    route: Route,
    status: AssignmentStatus,
    responses: Mapping[str, UnitResponse],
    dispute_until: date | None,
    today: date,
) -> str:
    """A unit accepts or disputes its own assignment, once, within the dispute window (异议期)."""
    if unit is None or unit not in route.units:
        raise NotYours("unit_acts_on_own_assignment", "only a unit of this assignment may accept or dispute it")
    if status not in (AssignmentStatus.ASSIGNED, AssignmentStatus.DISPUTED):
        raise StateConflict("assignment_awaits_response", f"the assignment is {status.value}; nothing to answer")
    if unit in responses:
        raise StateConflict("unit_responds_once", f"unit {unit} already answered: {responses[unit].value}")
    # An assignment awaiting answers was assigned (交办), so it has its dispute window.
    if dispute_until is not None and not dispute_window_open(dispute_until, today):
        raise StateConflict(
            "dispute_window_open",
            f"the dispute window closed on {dispute_until.isoformat()}; the assignment counts as accepted",
        )
    return unit


def reassign_before_acceptance(status: AssignmentStatus) -> None:
    """改办: the dispatcher reassigns an assignment that is not yet accepted (or settled by upholding)."""
    if status not in (AssignmentStatus.ASSIGNED, AssignmentStatus.DISPUTED):
        raise StateConflict(
            "reassign_before_acceptance", f"the assignment is {status.value}; only an assigned or disputed one"
        )


def uphold_only_disputed(status: AssignmentStatus) -> None:
    if status != AssignmentStatus.DISPUTED:
        raise StateConflict("uphold_only_disputed", f"the assignment is {status.value}; there is no dispute to settle")


def settled_status(route: Route, responses: Mapping[str, UnitResponse], window_open: bool) -> AssignmentStatus:
    """A dispute waits for the dispatcher; else accepted once every unit answered or the window closed."""
    if any(response == UnitResponse.DISPUTED for response in responses.values()):
        return AssignmentStatus.DISPUTED
    if all(unit in responses for unit in route.units) or not window_open:
        return AssignmentStatus.ACCEPTED
    return AssignmentStatus.ASSIGNED


def silent_units(route: Route, responses: Mapping[str, UnitResponse]) -> list[str]:
    """Units that said nothing: when the window closes they are deemed to accept (视为接受)."""
    return [unit for unit in route.units if unit not in responses]


def key_designation_target(proposal_ids: Sequence[str], series_id: str | None) -> None:
    """重点提案 are designated one by one or as a series (系列提案), not both at once."""
    if bool(proposal_ids) == bool(series_id):
        raise RuleViolation("key_target_one_of", "give proposal_ids or series_id, exactly one of them")


def leaders_must_be_active(leader_ids: Sequence[str], catalog: Mapping[str, Mapping[str, object]]) -> None:
    unknown = [leader for leader in leader_ids if leader not in catalog or not catalog[leader]["active"]]
    if unknown:
        raise RuleViolation(
            "leader_in_catalog", f"unknown or inactive leader(s): {', '.join(unknown)}; see GET /leaders"
        )


# The aggregate -----------------------------------------------------------------------------------------

Catalog = Mapping[str, Mapping[str, Any]]
"""The units catalog (承办单位): id → its row (name, short_name, kind, active)."""

_TICK = timedelta(microseconds=1)


def unit_ref(catalog: Catalog, unit_id: str) -> UnitRef:
    unit = catalog.get(unit_id)
    return UnitRef(id=unit_id, name=str(unit["name"]) if unit else unit_id)


@dataclass(frozen=True)
class AssignmentState:
    """交办 of one proposal as it stands: its status, route (form, lead, co-handling or split units, the
    reasons a dispatcher saw) and deadlines; the assignment it replaced, after 改办."""

    id: str
    proposal_id: str
    status: AssignmentStatus
    form: AssignmentForm
    lead_unit: str
    co_units: tuple[str, ...]
    reasons: tuple[str, ...]
    suggested_at: datetime
    reply_due: date | None = None
    co_opinion_due: date | None = None
    dispute_until: date | None = None
    assigned_at: datetime | None = None
    split_units: tuple[str, ...] = ()
    previous_assignment_id: str | None = None


@dataclass(frozen=True)
class UnitAnswer:
    """签收 or 异议 of one unit on one assignment (维持交办 turns a 异议 into upheld); `deemed`: the unit
    stayed silent until the 异议期 closed and is deemed to accept."""

    assignment_id: str
    unit: str
    response: UnitResponse
    reason: str
    deemed: bool
    actor_id: str
    at: datetime


def route_of(state: AssignmentState) -> Route:
    return Route(state.lead_unit, state.co_units, state.reasons, state.split_units)


def deemed_accept_id(assignment_id: str, unit: str) -> str:
    """A deterministic id, so two replicas sweeping the same closed window make one event."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"deemed-accept/{assignment_id}/{unit}"))


def _handling(route: Route, catalog: Catalog, due: Deadlines, now: datetime) -> dict[str, Any]:
    """Who handles the proposal and by when, as 交办 and 改办 announce it."""
    return {
        "form": route.form,
        "lead_unit": unit_ref(catalog, route.lead),
        "co_units": [unit_ref(catalog, unit) for unit in route.co],
        "split_units": [unit_ref(catalog, unit) for unit in route.split],
        "reply_due": due.reply_due,
        "co_opinion_due": due.co_opinion_due,
        "dispute_until": due.dispute_until,
        "assigned_at": now,
        "provisional_calendar": due.provisional,
    }


@dataclass
class Assignment:
    """交办 of one proposal: its route, deadlines and the units' answers (签收, 异议, 维持), the aggregate
    every step of the dispatcher and the units goes through. A step checks its rules, changes the
    assignment and records the event it causes (`events`, published with the state in one transaction)."""

    state: AssignmentState
    responses: dict[str, UnitAnswer] = field(default_factory=dict)
    """Each unit's answer, by unit."""
    events: list[tuple[Event, str | None]] = field(default_factory=list, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def proposal_id(self) -> str:
        return self.state.proposal_id

    @property
    def status(self) -> AssignmentStatus:
        return self.state.status

    @property
    def route(self) -> Route:
        return route_of(self.state)

    def answers(self) -> dict[str, UnitResponse]:
        return {unit: answer.response for unit, answer in self.responses.items()}

    def _change(self, **changes: Any) -> None:
        """The state with `changes` (its fields by name): the state is immutable, a change replaces it."""
        self.state = replace(self.state, **changes)

    @property
    def dispute_until(self) -> date:
        """The 异议期's last day, set by 交办: an assignment only suggested has none yet."""
        until = self.state.dispute_until
        if until is None:
            raise StateConflict(
                "assignment_awaits_response", f"the assignment is {self.status.value}; nothing to answer"
            )
        return until

    def window_closed(self, today: date) -> bool:
        """异议期满 with answers still awaited: silent units are then deemed to accept."""
        awaiting = self.status in (AssignmentStatus.ASSIGNED, AssignmentStatus.DISPUTED)
        until = self.state.dispute_until
        return awaiting and until is not None and not dispute_window_open(until, today)

    @classmethod
    def suggest(
        cls,
        assignment_id: str,
        proposal_id: str,
        route: Route,
        catalog: Catalog,
        correlation_id: str | None,
        now: datetime,
        actor: Actor,
    ) -> Assignment:
        """交办建议: the routing the dispatcher confirms (or that `auto` mode assigns at once)."""
        suggested = cls(
            AssignmentState(
                id=assignment_id,
                proposal_id=proposal_id,
                status=AssignmentStatus.SUGGESTED,
                form=route.form,
                lead_unit=route.lead,
                co_units=route.co,
                reasons=route.reasons,
                suggested_at=now,
            )
        )
        suggested._record(
            AssignmentSuggested(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                form=route.form,
                lead_unit=unit_ref(catalog, route.lead),
                co_units=[unit_ref(catalog, u) for u in route.co],
                reasons=list(route.reasons),
            )
        )
        return suggested

    def _record(self, event: Event, event_id: str | None = None) -> None:
        self.events.append((event, event_id))

    def _settle(self, today: date) -> None:
        window_open = dispute_window_open(self.dispute_until, today)
        self._change(status=settled_status(self.route, self.answers(), window_open))

    def confirm(
        self,
        override: Route | None,
        catalog: Catalog,
        actor: Actor,
        correlation_id: str | None,
        policy: Policy,
        calendar: WorkingCalendar,
        now: datetime,
    ) -> None:
        """交办: confirm the suggestion (or the dispatcher's edit of it) and compute the deadlines."""
        confirm_only_suggested(self.status)
        route = override or self.route
        units_must_be_active(route.units, catalog)
        due = deadlines(now, bool(route.co), policy, calendar)
        self._change(
            status=AssignmentStatus.ASSIGNED,
            form=route.form,
            lead_unit=route.lead,
            co_units=route.co,
            split_units=route.split,
            reasons=route.reasons,
            reply_due=due.reply_due,
            co_opinion_due=due.co_opinion_due,
            dispute_until=due.dispute_until,
            assigned_at=now,
        )
        self._record(
            ProposalAssigned(
                proposal_id=self.proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=self.id,
                **_handling(route, catalog, due, now),
            )
        )

    def respond(
        self,
        actor: Actor,
        dispute_reason: str | None,
        catalog: Catalog,
        correlation_id: str | None,
        today: date,
        now: datetime,
    ) -> None:
        """签收 (no reason) or 异议 (with a reason), by the acting unit, once, within the dispute window."""
        unit = unit_may_respond(actor.unit, self.route, self.status, self.answers(), self.state.dispute_until, today)
        response = UnitResponse.ACCEPTED if dispute_reason is None else UnitResponse.DISPUTED
        self._answer(unit, response, dispute_reason or "", deemed=False, actor_id=actor.id, at=now)
        self._settle(today)
        ref = unit_ref(catalog, unit)
        event: Event
        if dispute_reason is None:
            event = AssignmentAccepted(
                proposal_id=self.proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=self.id,
                unit=ref,
            )
        else:
            event = AssignmentDisputed(
                proposal_id=self.proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=self.id,
                unit=ref,
                reason=dispute_reason,
            )
        self._record(event)

    def _answer(
        self, unit: str, response: UnitResponse, reason: str, *, deemed: bool, actor_id: str, at: datetime
    ) -> None:
        self.responses[unit] = UnitAnswer(self.id, unit, response, reason, deemed, actor_id, at)

    def reassign(
        self,
        new_id: str,
        route: Route,
        reason: str,
        catalog: Catalog,
        actor: Actor,
        correlation_id: str | None,
        policy: Policy,
        calendar: WorkingCalendar,
        now: datetime,
    ) -> Assignment:
        """改办: a new assignment replaces this one (superseded); its deadlines run afresh from now."""
        reassign_before_acceptance(self.status)
        units_must_be_active(route.units, catalog)
        due = deadlines(now, bool(route.co), policy, calendar)
        self._change(status=AssignmentStatus.SUPERSEDED)
        successor = Assignment(
            AssignmentState(
                id=new_id,
                proposal_id=self.proposal_id,
                status=AssignmentStatus.ASSIGNED,
                form=route.form,
                lead_unit=route.lead,
                co_units=route.co,
                reasons=(f"改办: {reason}" if reason else "改办",),
                reply_due=due.reply_due,
                co_opinion_due=due.co_opinion_due,
                dispute_until=due.dispute_until,
                # Strictly later than the superseded row, so it is the current one even within a clock tick.
                suggested_at=max(now, self.state.suggested_at) + _TICK,
                assigned_at=now,
                split_units=route.split,
                previous_assignment_id=self.id,
            )
        )
        successor._record(
            AssignmentReassigned(
                proposal_id=self.proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=new_id,
                previous_assignment_id=self.id,
                **_handling(route, catalog, due, now),
                reason=reason,
            )
        )
        return successor

    def uphold(self, note: str, catalog: Catalog, actor: Actor, correlation_id: str | None, today: date) -> None:
        """维持交办: the disputing units keep the assignment; they count as having accepted it."""
        uphold_only_disputed(self.status)
        disputing = [unit for unit, answer in self.responses.items() if answer.response == UnitResponse.DISPUTED]
        for unit in disputing:
            self.responses[unit] = replace(self.responses[unit], response=UnitResponse.UPHELD)
        self._settle(today)
        self._record(
            AssignmentDisputeUpheld(
                proposal_id=self.proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=self.id,
                units=[unit_ref(catalog, unit) for unit in disputing],
                note=note,
            )
        )

    def recompute_deadlines(
        self, policy: Policy, calendar: WorkingCalendar, actor: Actor, reason: str
    ) -> list[DeadlineChange]:
        """期限调整: the deadlines again from the moment of 交办, on ``calendar`` (a newly announced year);
        if any moved, the row takes them and an `AssignmentDeadlinesChanged` is recorded. Only an
        assignment in force (assigned, disputed or accepted) has deadlines to move, and once accepted its
        dispute window (异议期) is settled and stays."""
        if self.status in (AssignmentStatus.SUGGESTED, AssignmentStatus.SUPERSEDED) or not self.state.assigned_at:
            return []
        due = deadlines(self.state.assigned_at, bool(self.route.co), policy, calendar)
        if self.status == AssignmentStatus.ACCEPTED:
            # The dispute window is settled (every unit answered, or it closed): it does not reopen or move.
            due = replace(due, dispute_until=self.dispute_until)
        names = ("reply_due", "co_opinion_due", "dispute_until")
        state = self.state
        before = (state.reply_due, state.co_opinion_due, state.dispute_until)
        if before == due.dates():
            return []
        self._change(**dict(zip(names, due.dates(), strict=True)))
        self._record(
            AssignmentDeadlinesChanged(
                proposal_id=self.proposal_id,
                actor=actor,
                assignment_id=self.id,
                reply_due=due.reply_due,
                co_opinion_due=due.co_opinion_due,
                dispute_until=due.dispute_until,
                previous_reply_due=before[0],
                previous_co_opinion_due=before[1],
                previous_dispute_until=before[2],
                reason=reason,
                provisional_calendar=due.provisional,
            )
        )
        return [
            DeadlineChange(self.proposal_id, name, old, new, due.provisional)
            for name, old, new in zip(names, before, due.dates(), strict=True)
            if old != new
        ]

    def deem_silent_accepted(self, catalog: Catalog, actor: Actor, today: date, now: datetime) -> int:
        """异议期满: units that said nothing are deemed to accept (视为接受); returns how many."""
        silent = silent_units(self.route, self.answers())
        for unit in silent:
            self._answer(unit, UnitResponse.ACCEPTED, "", deemed=True, actor_id=actor.id, at=now)
            accepted = AssignmentAccepted(
                proposal_id=self.proposal_id,
                actor=actor,
                assignment_id=self.id,
                unit=unit_ref(catalog, unit),
                deemed=True,
            )
            self._record(accepted, deemed_accept_id(self.id, unit))
        self._settle(today)
        return len(silent)
