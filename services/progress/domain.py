"""The lifecycle of a proposal as progress sees it (DESIGN.md §1), its timeline, and the rules of
办理、答复、评价、落实 (handling, reply, evaluation, implementation). Pure: no I/O, no clock."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import (
    Actor,
    AssignmentAccepted,
    AssignmentDeadlinesChanged,
    AssignmentDisputed,
    AssignmentForm,
    AssignmentReassigned,
    AssignmentSuggested,
    CoOpinionSubmitted,
    DeadlineApproaching,
    DeadlineOverdue,
    EvaluationSubmitted,
    Event,
    HandlingDeadlineChanged,
    ImplementationEvaluated,
    ImplementationEvaluationClosed,
    ImplementationEvaluationOpened,
    KeyProposalDesignated,
    Measure,
    MeasureAdded,
    MeasureReopened,
    MeasureRequested,
    MeasureUpdated,
    ProgressContent,
    ProgressReported,
    ProposalAssigned,
    ProposalClosed,
    ProposalCosigned,
    ProposalCosignRequested,
    ProposalFiled,
    ProposalImplemented,
    ProposalMerged,
    ProposalNotFiled,
    ProposalResubmitted,
    ProposalReturned,
    ProposalReviewStarted,
    ProposalSubmitted,
    ProposalWithdrawn,
    RehandlingStarted,
    ReplyApproved,
    ReplyContent,
    ReplyDrafted,
    ReplyReturned,
    Role,
    SupervisionRecorded,
)
from shared.policy import DeadlineName, Policy, WorkingCalendar, deadline_for, local_date, warning_date


class Stage(StrEnum):
    """办理阶段."""

    SUBMITTED = "submitted"  # 已提交
    FILED = "filed"  # 已立案
    NOT_FILED = "not_filed"  # 不予立案
    MERGED = "merged"  # 并案
    WITHDRAWN = "withdrawn"  # 撤案
    ASSIGNED = "assigned"  # 已交办
    HANDLING = "handling"  # 办理中
    REPLY_REVIEW = "reply_review"  # 办复审查
    ANSWERED = "answered"  # 已答复
    CLOSED = "closed"  # 办结


_STAGE_AFTER: dict[type[Event], Stage] = {
    ProposalSubmitted: Stage.SUBMITTED,
    ProposalFiled: Stage.FILED,
    ProposalNotFiled: Stage.NOT_FILED,
    ProposalMerged: Stage.MERGED,
    ProposalWithdrawn: Stage.WITHDRAWN,
    ProposalAssigned: Stage.ASSIGNED,
    AssignmentReassigned: Stage.ASSIGNED,
    AssignmentAccepted: Stage.HANDLING,
    ReplyDrafted: Stage.REPLY_REVIEW,
    ReplyApproved: Stage.ANSWERED,
    ReplyReturned: Stage.HANDLING,
    RehandlingStarted: Stage.HANDLING,
    ProposalClosed: Stage.CLOSED,
}

# A later stage never goes back to an earlier one because an older event arrives late.
_ORDER = [
    Stage.SUBMITTED,
    Stage.FILED,
    Stage.ASSIGNED,
    Stage.HANDLING,
    Stage.REPLY_REVIEW,
    Stage.ANSWERED,
    Stage.CLOSED,
]
# Only a returned reply (退回) or a new round (重新办理) sends a proposal back to handling; a unit's
# acceptance (签收) that arrives after the reply was approved must not.
_SENDS_BACK: set[type[Event]] = {ReplyReturned, RehandlingStarted}
_FINAL = {Stage.NOT_FILED, Stage.MERGED, Stage.WITHDRAWN}


def next_stage(current: Stage | None, event: Event) -> Stage | None:
    """The stage after `event`, or `current` when the event does not move it. On a dossier, a reply's
    events move it by the whole round (分办: every unit's reply), and the first progress report takes it
    from assigned to handling: `Dossier.apply`, the one place a dossier's stage changes."""
    target = _STAGE_AFTER.get(type(event))
    if target is None or current is None:
        return target or current
    if current in _FINAL:
        return current
    if target in _FINAL:
        return target
    if type(event) in _SENDS_BACK and current in (Stage.REPLY_REVIEW, Stage.ANSWERED):
        return target
    if current in _ORDER and target in _ORDER and _ORDER.index(target) < _ORDER.index(current):
        return current
    return target


REVIEW_TRIGGERS = {
    "all_cosigned": "附议人均已确认",
    "cosign_window_closed": "联名确认期满",
    "resubmitted": "修改后重新提交",
}
"""Why a proposal went into review (进入审查), in words."""


def summary(event: Event) -> str:
    """One line of the timeline, in the office's language."""
    match event:
        case ProposalSubmitted():
            return f"提案已提交: {event.title}"
        case ProposalFiled():
            return f"已立案, 案号 {event.filing_number}"
        case ProposalNotFiled():
            return f"不予立案: {event.reason}"
        case ProposalMerged():
            return f"并案至 {event.into_proposal_id}"
        case ProposalWithdrawn():
            return "提案已撤回"
        case ProposalCosignRequested():
            return f"请附议人确认联名, 联名确认期至 {event.due.isoformat()}"
        case ProposalCosigned():
            return f"{event.cosigner.name} 已确认联名"
        case ProposalReviewStarted():
            return f"进入审查 ({REVIEW_TRIGGERS[event.trigger]})"
        case ProposalReturned():
            return f"退回修改: {event.reason}"
        case ProposalResubmitted():
            return f"修改后重新提交: {event.title}"
        case AssignmentSuggested():
            return f"交办建议: 主办 {event.lead_unit.name}"
        case ProposalAssigned():
            co = "、".join(unit.name for unit in event.co_units)
            return (
                f"已交办: 主办 {event.lead_unit.name}"
                + (f", 会办 {co}" if co else "")
                + f", 办复期限 {event.reply_due.isoformat()}"
            )
        case AssignmentReassigned():
            return f"改办: 主办 {event.lead_unit.name}, 办复期限 {event.reply_due.isoformat()}" + (
                f" ({event.reason})" if event.reason else ""
            )
        case AssignmentAccepted():
            return f"{event.unit.name} 已签收"
        case AssignmentDisputed():
            return f"{event.unit.name} 提出异议: {event.reason}"
        case KeyProposalDesignated():
            return f"列为重点提案, 督办领导 {event.supervising_leader}"
        case ProgressReported():
            return (
                f"{event.unit} 办理进展 ({PROGRESS_KIND_LABELS.get(event.kind, event.kind)}, {event.on}): {event.text}"
            )
        case CoOpinionSubmitted():
            return f"{event.unit} 提交会办意见"
        case ReplyDrafted():
            return f"{event.unit} 提交答复 ({event.classification} 类), 待办复审查"
        case ReplyApproved():
            return "答复经办复审查通过, 已送提案者" + (
                f", 评价期至 {event.evaluation_due}" if event.evaluation_due else ""
            )
        case ReplyReturned():
            return f"答复被退回: {event.reason}"
        case EvaluationSubmitted():
            return f"提案者评价: 办理态度 {event.handling_grade}, 办理结果 {event.result_grade}"
        case RehandlingStarted():
            return f"重新办理 (第 {event.round} 轮), 办复期限 {event.reply_due}"
        case ProposalClosed():
            return "办结"
        case MeasureUpdated():
            return f"举措 {event.measure_id}: {event.status}" + (f" ({event.note})" if event.note else "")
        case ProposalImplemented():
            return "全部举措已落实"
        case SupervisionRecorded():
            return f"督办 ({event.kind}, {event.on}): {event.text}"
        case AssignmentDeadlinesChanged():
            return f"期限调整: 办复期限 {event.previous_reply_due} → {event.reply_due}" + (
                f" ({event.reason})" if event.reason else ""
            )
        case HandlingDeadlineChanged():
            what = "评价期" if event.kind == "evaluation" else "办复期限"
            return f"期限调整: {what} {event.previous_due} → {event.due}" + (
                f" ({event.reason})" if event.reason else ""
            )
        case DeadlineApproaching():
            return f"到期预警: {event.kind} {event.unit or event.signer_id} 于 {event.due} 到期"
        case DeadlineOverdue():
            return f"逾期: {event.kind} {event.unit or event.signer_id} 应于 {event.due} 完成"
        case ImplementationEvaluationOpened():
            return f"请提案者评价落实情况 (第 {event.round} 轮), 落实评价期至 {event.evaluation_due}"
        case ImplementationEvaluated():
            return (
                f"提案者落实评价: {event.grade}"
                + (f", 重新落实举措 {'、'.join(event.reopened_measures)}" if event.reopened_measures else "")
                + (", 要求新举措" if event.new_measure_requested else "")
            )
        case ImplementationEvaluationClosed():
            return f"落实评价结束 (第 {event.round} 轮): {event.satisfied}/{event.evaluations} 满意"
        case MeasureReopened():
            return f"举措 {event.measure_id} 重新落实, 期限 {event.due}" + (
                f" ({event.reason})" if event.reason else ""
            )
        case MeasureRequested():
            return f"要求 {event.unit} 提出新举措, 期限 {event.due}"
        case MeasureAdded():
            return f"{event.unit} 承诺新举措 {event.measure.id}, 期限 {event.measure.due}"
        case _:
            return event.TYPE


def timeline_data(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude={"actor", "correlation_id", "proposal_id"})


TIMELINE_FACTS = frozenset(
    {
        "title",
        "filing_number",
        "ground",
        "reason",
        "into_proposal_id",
        "form",
        "lead_unit",
        "co_units",
        "split_units",
        "reply_due",
        "unit",
        "supervising_leader",
        "kind",
        "on",
        "text",
        "classification",
        "evaluation_due",
        "handling_grade",
        "result_grade",
        "round",
        "measure_id",
        "status",
        "note",
        "due",
        "signer_id",
        "previous_due",
        "previous_reply_due",
        "co_opinion_due",
        "dispute_until",
        "provisional_calendar",
        "grade",
        "satisfied",
        "reopened_measures",
        "new_measure_requested",
        "evaluations",
        "trigger",
    }
)
"""What a timeline entry tells a reader besides its summary: the codes and references the summary was
written from (kinds, statuses, grades, unit and leader ids), so a reader can put them in its own words.
Nothing personal beyond what the summary already says (no proposal body, no signers' details)."""


def timeline_facts(data: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in data.items() if name in TIMELINE_FACTS}


PROGRESS_KIND_LABELS = {
    "face_to_face": "面商",
    "phone": "电话沟通",
    "written": "书面沟通",
    "meeting": "座谈会",
    "research": "调研",
    "other": "其他",
}

MAX_ROUNDS = 2
"""A proposal is handled at most twice: the first reply and one 重新办理."""

HANDLING_STAGES = (Stage.ASSIGNED, Stage.HANDLING, Stage.REPLY_REVIEW)
OPEN_STAGES = (*HANDLING_STAGES, Stage.ANSWERED, Stage.CLOSED)
"""Stages with open steps (with measures, a closed proposal stays open until implemented, 落实)."""


class ReplyStatus(StrEnum):
    DRAFTED = "drafted"  # 待办复审查
    APPROVED = "approved"  # 审查通过
    RETURNED = "returned"  # 退回


class MeasureStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    DROPPED = "dropped"


SETTLED_MEASURES = (MeasureStatus.DONE, MeasureStatus.DROPPED)


class ImplementationEvaluation(StrEnum):
    """落实评价 of the current 落实: where the proposers' evaluation of what was implemented stands."""

    DUE = "due"  # 已落实, 待发起落实评价
    OPEN = "open"  # 落实评价中
    CLOSED = "closed"  # 落实评价结束
    REOPENED = "reopened"  # 不满意, 举措重新落实


# The dossier's records (办理档案): typed, immutable; the dossier replaces one to change it ----------


@dataclass(frozen=True)
class Proposal:
    """提案 as progress knows it: where it stands (办理阶段), who signed it, who handles it (承办) and by
    when, and where its 落实 and 落实评价 stand."""

    id: str
    title: str
    category: str
    stage: Stage
    signers: tuple[str, ...]
    """The first proposer (领衔提案者), then the cosigners."""
    submitted_at: datetime
    updated_at: datetime
    filing_number: str | None = None
    lead_unit: str | None = None
    co_units: tuple[str, ...] = ()
    """会办单位, or under 分办 the other replying units."""
    form: str | None = None
    """交办 form (`AssignmentForm`): single, lead_co or split."""
    reply_due: date | None = None
    co_opinion_due: date | None = None
    suggestion_count: int | None = None
    is_key: bool = False
    leaders: tuple[str, ...] = ()
    """督办领导 of a key proposal (重点提案), the supervising one first."""
    round: int = 1
    evaluation_due: date | None = None
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    implemented_at: datetime | None = None
    implementation_round: int = 0
    implementation_evaluation: ImplementationEvaluation | None = None
    implementation_evaluation_due: date | None = None
    measure_request_due: date | None = None

    @property
    def handling_units(self) -> tuple[str | None, ...]:
        """承办单位: the lead unit and the co-handling (or, under 分办, the other replying) units."""
        return (self.lead_unit, *self.co_units)


@dataclass(frozen=True)
class Reply:
    """答复: one unit's reply in one round, and its 办复审查."""

    id: str
    proposal_id: str
    unit: str
    round: int
    classification: str
    text: str
    adoptions: tuple[dict[str, Any], ...]
    """Whether each suggestion was adopted, as the unit said it (`SuggestionAdoption`, as JSON)."""
    status: ReplyStatus
    reply_due: date | None
    drafted_at: datetime
    reviewed_at: datetime | None = None
    review_reason: str | None = None
    public: bool = False


@dataclass(frozen=True)
class CoOpinion:
    """会办意见: a co-handling unit's opinion to the lead unit."""

    proposal_id: str
    unit: str
    text: str
    submitted_at: datetime


@dataclass(frozen=True)
class Evaluation:
    """评价: one signer's grades of one round's handling (办理态度) and result (办理结果)."""

    proposal_id: str
    round: int
    signer_id: str
    handling_grade: str
    result_grade: str
    comment: str
    submitted_at: datetime


@dataclass(frozen=True)
class TrackedMeasure:
    """举措: what a reply (or a 落实评价's request) commits a unit to, and how far it is (落实)."""

    id: str
    proposal_id: str
    reply_id: str
    text: str
    owner_unit: str
    due: date
    status: MeasureStatus
    note: str
    updated_at: datetime
    done_at: datetime | None = None
    reopened: int = 0
    """How many times a 落实评价 reopened it (重新落实)."""
    promised_at: datetime | None = None
    """When its reply was approved (or it was added at a 落实评价's request): the promise was made."""


@dataclass(frozen=True)
class ImplementationVerdict:
    """落实评价: one signer's grade of what was implemented in one round, and what it asked again."""

    proposal_id: str
    round: int
    signer_id: str
    grade: str
    comment: str
    reopened_measures: tuple[str, ...]
    new_measure_requested: bool
    submitted_at: datetime


# Handling steps (办理环节): what a door asks of a dossier, and on which occasion ---------------------


@dataclass(frozen=True)
class Occasion:
    """Who takes a handling step, for which request, when, and under which rules: the same for every step
    a request or a record carries out. The door (an HTTP route, a Kafka handler, the scheduler) builds it
    once; the events the step records carry its actor and correlation id."""

    actor: Actor
    correlation_id: str | None
    now: datetime
    policy: Policy
    calendar: WorkingCalendar

    @property
    def today(self) -> date:
        """The local date of `now` in the policy's time zone (windows and due dates are local dates)."""
        return local_date(self.now, self.policy.timezone)

    def deadline(self, period: DeadlineName) -> date:
        """The due date of a period the policy names, counted from now on the working-day calendar."""
        return deadline_for(self.policy, period, self.now, self.calendar)

    def provisional(self, due: date) -> bool:
        """Whether `due` was counted over a year the calendar has not declared yet."""
        return self.calendar.is_provisional(self.today, due)


@dataclass(frozen=True)
class HandlingStep:
    """A step a door asks of one dossier (`Dossier.take`): its command, built from the request or the
    record. Each kind of step is a subclass with the step's own data."""

    proposal_id: str


@dataclass(frozen=True)
class ReportProgress(HandlingStep):
    """办理进展: a handling unit records contact with the proposer, a meeting, research…"""

    unit: str | None
    content: ProgressContent


@dataclass(frozen=True)
class SubmitCoOpinion(HandlingStep):
    """会办意见: a co-handling unit's opinion to the lead unit."""

    unit: str | None
    text: str


@dataclass(frozen=True)
class DraftReply(HandlingStep):
    """答复: the lead unit (each unit, for 分办) drafts its reply for 办复审查."""

    unit: str | None
    content: ReplyContent
    reply_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """The new reply's id (its measures are `{reply_id}-m1`, …)."""


@dataclass(frozen=True)
class ReviewReply(HandlingStep):
    """办复审查: the committee approves a reply (it goes to the proposers) or returns it with a reason."""

    reply_id: str
    approve: bool
    reason: str | None = None
    public: bool | None = None
    """答复公开; None: as the policy says."""


@dataclass(frozen=True)
class Evaluate(HandlingStep):
    """评价 by a signer (the occasion's actor): on the handling (办理态度) and on the result (办理结果)."""

    handling_grade: str
    result_grade: str
    comment: str = ""


@dataclass(frozen=True)
class UpdateMeasure(HandlingStep):
    """举措落实: its owner unit (or the lead unit) moves a measure on."""

    measure_id: str
    unit: str | None
    status: MeasureStatus
    note: str = ""
    opens_evaluation: bool = True
    """When this settles the last measure (落实), open the 落实评价 at once, as both doors do; False leaves
    it to the scheduler's next pass (how a dossier implemented before 落实评价 existed catches up)."""


@dataclass(frozen=True)
class EvaluateImplementation(HandlingStep):
    """落实评价 by a signer (the occasion's actor); an unsatisfied first proposer reopens measures or asks
    for a new one."""

    grade: str
    comment: str = ""
    reopen: Sequence[str] = ()
    new_measure: bool = False


@dataclass(frozen=True)
class AddMeasure(HandlingStep):
    """新举措: the lead unit answers a 落实评价's request for a new measure."""

    unit: str | None
    text: str
    due: date
    measure_id: str = field(default_factory=lambda: f"{uuid.uuid4()}-new")


@dataclass(frozen=True)
class RecordSupervision(HandlingStep):
    """督办: a leader (the occasion's actor) records a meeting, visit or instruction on a key proposal."""

    kind: str
    on: date
    text: str


@dataclass
class Dossier:
    """办理档案: one proposal with everything progress knows of its handling, the aggregate every handling
    step goes through. A step checks its rules, then records the event it causes (`events`, published by
    the unit of work with the state, in one transaction); `apply` is the one place an event, consumed
    or our own, changes the dossier and its stage. Its state and records are immutable: a change
    replaces the one it changes (`_change`, `_change_reply`, `_change_measure`)."""

    proposal: Proposal
    replies: list[Reply] = field(default_factory=list)
    co_opinions: list[CoOpinion] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    measures: list[TrackedMeasure] = field(default_factory=list)
    implementation_evaluations: list[ImplementationVerdict] = field(default_factory=list)
    """落实评价, every signer's in every round."""
    events: list[tuple[Event, str | None]] = field(default_factory=list, compare=False, repr=False)
    """Our events to publish, in order, each with its fixed id (scheduled events) or None."""

    @property
    def id(self) -> str:
        return self.proposal.id

    @property
    def stage(self) -> Stage:
        return self.proposal.stage

    @property
    def round(self) -> int:
        return self.proposal.round

    def replies_of_round(self, round_: int | None = None) -> list[Reply]:
        wanted = self.round if round_ is None else round_
        return [reply for reply in self.replies if reply.round == wanted]

    def evaluations_of_round(self) -> list[Evaluation]:
        return [ev for ev in self.evaluations if ev.round == self.round]

    def _change(self, **changes: Any) -> None:
        """The proposal's state with `changes` (its fields by name)."""
        self.proposal = replace(self.proposal, **changes)

    # Consumed and own events ----------------------------------------------------------------------

    @classmethod
    def submitted(cls, event: ProposalSubmitted, at: datetime) -> Dossier:
        """The dossier a proposal's first event opens."""
        return cls(
            Proposal(
                id=event.proposal_id,
                title=event.title,
                category=event.category,
                stage=Stage.SUBMITTED,
                signers=(event.first_proposer.id, *(c.id for c in event.cosigners)),
                submitted_at=event.submitted_at,
                updated_at=at,
                suggestion_count=len(event.suggestions),
            )
        )

    def apply(self, event: Event, at: datetime) -> None:
        """Fold one event into the dossier: what it changes, then the stage it leads to."""
        filing_number = getattr(event, "filing_number", None)
        if filing_number:
            self._change(filing_number=filing_number)
        match event:
            case ProposalFiled():
                self._change(suggestion_count=event.suggestion_count)
            case ProposalAssigned() | AssignmentReassigned():
                self._change(**handling_units(event))
            case KeyProposalDesignated():
                leaders = (event.supervising_leader, *([event.leading_leader] if event.leading_leader else []))
                self._change(is_key=True, leaders=leaders)
            case CoOpinionSubmitted():
                self.co_opinions.append(CoOpinion(self.id, event.unit, event.text, at))
            case ReplyDrafted():
                self._add_reply(event, at)
            case ReplyApproved():
                self._change_reply(event.reply_id, status=ReplyStatus.APPROVED, reviewed_at=at, public=event.public)
                if event.evaluation_due is not None:
                    self._change(evaluation_due=event.evaluation_due, answered_at=self.proposal.answered_at or at)
            case ReplyReturned():
                returned = {"status": ReplyStatus.RETURNED, "review_reason": event.reason, "public": False}
                self._change_reply(event.reply_id, reviewed_at=at, **returned)
                # A returned reply's measures go with it; the redraft commits to its own.
                self.measures = [m for m in self.measures if m.reply_id != event.reply_id]
            case EvaluationSubmitted():
                self.evaluations.append(
                    Evaluation(
                        proposal_id=self.id,
                        round=event.round,
                        signer_id=event.signer_id,
                        handling_grade=event.handling_grade,
                        result_grade=event.result_grade,
                        comment=event.comment,
                        submitted_at=at,
                    )
                )
            case RehandlingStarted():
                self._change(round=event.round, reply_due=event.reply_due, evaluation_due=None)
            case AssignmentDeadlinesChanged():
                # Assignment's deadlines hold for the first round only; a later round's reply deadline
                # is progress's own (重新办理), and a proposal past handling keeps the dates it was held to.
                if self.round == 1 and self.stage in HANDLING_STAGES:
                    self._change(reply_due=event.reply_due, co_opinion_due=event.co_opinion_due)
            case HandlingDeadlineChanged():
                self._change(**{"reply_due" if event.kind == "reply" else "evaluation_due": event.due})
            case ProposalClosed():
                self._change(closed_at=event.closed_at)
            case ProposalImplemented():
                self._change(implemented_at=event.implemented_at)
            case MeasureUpdated():
                status = MeasureStatus(event.status)
                self._change_measure(event.measure_id, status=status, note=event.note, updated_at=at)
        self._apply_implementation(event, at)
        self._change(updated_at=at, stage=self._stage_after(event))

    def _stage_after(self, event: Event) -> Stage:
        if isinstance(event, ReplyDrafted | ReplyApproved | ReplyReturned):
            return round_stage(reply_units(self.proposal), self.replies_of_round())
        if isinstance(event, ProgressReported):
            # The first progress report is the unit taking the proposal up: assigned → handling.
            return Stage.HANDLING if self.stage == Stage.ASSIGNED else self.stage
        return next_stage(self.stage, event) or self.stage

    def _add_reply(self, event: ReplyDrafted, at: datetime) -> None:
        self.replies.append(
            Reply(
                id=event.reply_id,
                proposal_id=self.id,
                unit=event.unit,
                round=event.round,
                classification=event.classification,
                text=event.text,
                adoptions=tuple(adoption.model_dump(mode="json") for adoption in event.adoptions),
                status=ReplyStatus.DRAFTED,
                reply_due=event.reply_due,
                drafted_at=at,
            )
        )
        self.measures += [
            TrackedMeasure(
                id=measure.id,
                proposal_id=self.id,
                reply_id=event.reply_id,
                text=measure.text,
                owner_unit=measure.owner_unit,
                due=measure.due,
                status=MeasureStatus.PLANNED,
                note="",
                updated_at=at,
            )
            for measure in event.measures
        ]

    def _reply(self, reply_id: str) -> Reply:
        for reply in self.replies:
            if reply.id == reply_id:
                return reply
        raise NotFound(reply_id)

    def _measure(self, measure_id: str) -> TrackedMeasure:
        for measure in self.measures:
            if measure.id == measure_id:
                return measure
        raise NotFound(measure_id)

    def _change_reply(self, reply_id: str, **changes: Any) -> None:
        """Reply `reply_id` with `changes` (NotFound if the dossier has no such reply)."""
        reply = self._reply(reply_id)
        self.replies = [replace(r, **changes) if r is reply else r for r in self.replies]

    def _change_measure(self, measure_id: str, **changes: Any) -> None:
        """Measure `measure_id` with `changes` (NotFound if the dossier has no such measure)."""
        measure = self._measure(measure_id)
        self.measures = [replace(m, **changes) if m is measure else m for m in self.measures]

    def _publish(self, event: Event, at: datetime, event_id: str | None = None) -> None:
        self.apply(event, at)
        self.events.append((event, event_id))

    # Handling steps (办理) -------------------------------------------------------------------------

    def take(self, step: HandlingStep, occasion: Occasion) -> None:
        """Carry out one handling step: the method its command names (`STEPS`) checks the rules and
        records the events."""
        STEPS[type(step)](self, step, occasion)

    def report_progress(self, step: ReportProgress, occasion: Occasion) -> None:
        """办理进展: a handling unit records contact with the proposer, a meeting, research…"""
        unit = unit_must_handle(self.proposal, step.unit)
        progress_while_handling(self.stage)
        event = ProgressReported(
            proposal_id=self.id,
            unit=unit,
            kind=step.content.kind.value,
            on=step.content.on,
            text=step.content.text,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def submit_co_opinion(self, step: SubmitCoOpinion, occasion: Occasion) -> None:
        """会办意见: a co-handling unit's opinion to the lead unit (late ones are kept, and stay overdue-marked)."""
        unit = unit_must_handle(self.proposal, step.unit)
        co_opinion_allowed(self, unit)
        event = CoOpinionSubmitted(
            proposal_id=self.id,
            unit=unit,
            text=step.text,
            co_opinion_due=self.proposal.co_opinion_due,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def draft_reply(self, step: DraftReply, occasion: Occasion) -> None:
        """答复: the lead unit (each unit, for 分办) drafts its reply for 办复审查."""
        unit = unit_must_handle(self.proposal, step.unit)
        content = step.content
        reply_allowed(self, unit)
        reply_content_valid(
            content.classification,
            [adoption.number for adoption in content.adoptions],
            self.proposal.suggestion_count,
            occasion.policy,
        )
        measures_due_in_future([plan.due for plan in content.measures], occasion.today)
        measures = [
            Measure(id=f"{step.reply_id}-m{n}", text=plan.text, owner_unit=plan.owner_unit, due=plan.due)
            for n, plan in enumerate(content.measures, start=1)
        ]
        event = ReplyDrafted(
            proposal_id=self.id,
            reply_id=step.reply_id,
            unit=unit,
            classification=content.classification,
            text=content.text,
            adoptions=content.adoptions,
            measures=measures,
            round=self.round,
            reply_due=self.proposal.reply_due,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def review_reply(self, step: ReviewReply, occasion: Occasion) -> None:
        """办复审查: the committee approves a reply (it goes to the proposers) or returns it with a reason."""
        reply = self._reply(step.reply_id)
        review_pending(reply)
        if not step.approve and not (step.reason and step.reason.strip()):
            raise RuleViolation("return_needs_reason", "a returned reply needs the reason, so the unit can redraft it")
        event: Event
        if step.approve:
            others = [other for other in self.replies_of_round() if other.id != step.reply_id]
            answered = round_stage(reply_units(self.proposal), [*others, replace(reply, status=ReplyStatus.APPROVED)])
            evaluation_due = occasion.deadline("evaluation_window") if answered == Stage.ANSWERED else None
            event = ReplyApproved(
                proposal_id=self.id,
                reply_id=step.reply_id,
                unit=reply.unit,
                approved_at=occasion.now,
                evaluation_due=evaluation_due,
                provisional_calendar=evaluation_due is not None and occasion.provisional(evaluation_due),
                public=occasion.policy.publish_approved_replies if step.public is None else step.public,
                actor=occasion.actor,
                correlation_id=occasion.correlation_id,
            )
        else:
            event = ReplyReturned(
                proposal_id=self.id,
                reply_id=step.reply_id,
                unit=reply.unit,
                reason=step.reason or "",
                actor=occasion.actor,
                correlation_id=occasion.correlation_id,
            )
        self._publish(event, occasion.now)
        self._change_reply(step.reply_id, review_reason=step.reason)

    def evaluate(self, step: Evaluate, occasion: Occasion) -> None:
        """评价; then 重新办理 (unsatisfied first proposer) or 办结 (every signer has evaluated)."""
        signer, policy = occasion.actor.id, occasion.policy
        grades = [step.handling_grade, step.result_grade]
        evaluation_allowed(self, signer, occasion.today, grades, policy)
        rehandling = rehandling_triggered(self, signer, grades, policy)
        event = EvaluationSubmitted(
            proposal_id=self.id,
            signer_id=signer,
            handling_grade=step.handling_grade,
            result_grade=step.result_grade,
            comment=step.comment,
            round=self.round,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)
        if rehandling:
            reply_due = occasion.deadline("rehandling_deadline")
            restart = RehandlingStarted(
                proposal_id=self.id,
                reply_due=reply_due,
                provisional_calendar=occasion.provisional(reply_due),
                round=self.round + 1,
                reason=step.comment,
                actor=occasion.actor,
                correlation_id=occasion.correlation_id,
            )
            self._publish(restart, occasion.now)
        elif all_evaluated(self, extra_signer=signer):
            self.close("all_evaluated", occasion)
            # Measures all settled before 办结: 办结 is 落实 too, and its 落实评价 opens at once.
            self.open_implementation_evaluation(occasion)

    def close(self, reason: str, occasion: Occasion) -> None:
        """办结 (its id is deterministic per round, so two replicas closing it make one event)."""
        event = ProposalClosed(
            proposal_id=self.id,
            closed_at=occasion.now,
            reason=reason,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now, closing_id(self))
        self._maybe_implemented(occasion)

    def _maybe_implemented(self, occasion: Occasion) -> None:
        if not implemented(self):
            return
        statuses = [measure.status for measure in self.measures]
        event = ProposalImplemented(
            proposal_id=self.id,
            implemented_at=occasion.now,
            measures_done=statuses.count(MeasureStatus.DONE),
            measures_dropped=statuses.count(MeasureStatus.DROPPED),
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def update_measure(self, step: UpdateMeasure, occasion: Occasion) -> None:
        """举措落实: its owner unit (or the lead unit) moves a measure on; all settled after 办结 = 落实,
        which opens the 落实评价 (unless the step leaves that to the scheduler's next pass)."""
        measure_id = step.measure_id
        measure = self._measure(measure_id)
        if step.unit not in (measure.owner_unit, self.proposal.lead_unit):
            raise RuleViolation(
                "measure_by_owner",
                f"measure {measure_id} is owned by {measure.owner_unit}; only it or the lead unit update it",
            )
        approved = any(r.id == measure.reply_id and r.status == ReplyStatus.APPROVED for r in self.replies)
        if not approved:
            raise StateConflict("measure_after_approval", "a measure is tracked once its reply is approved")
        measure_transition(measure.status, step.status, step.note)
        event = MeasureUpdated(
            proposal_id=self.id,
            measure_id=measure_id,
            status=step.status.value,
            note=step.note,
            owner_unit=measure.owner_unit,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)
        self._maybe_implemented(occasion)
        if step.opens_evaluation:
            self.open_implementation_evaluation(occasion)

    def record_supervision(self, step: RecordSupervision, occasion: Occasion) -> None:
        """督办: a leader's meeting, visit or instruction on a key proposal it supervises."""
        supervisor_must_lead(self.proposal, occasion.actor.id)
        event = SupervisionRecorded(
            proposal_id=self.id,
            leader_id=occasion.actor.id,
            kind=step.kind,
            on=step.on,
            text=step.text,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def deadline_starts(self) -> dict[Literal["reply", "evaluation"], datetime]:
        """When the deadlines progress owns started, for those still running: the 重新办理 reply
        deadline (from the first proposer's unsatisfied evaluation of the round before) while the new
        round is handled, the 评价期 (from the approval that answered the round) while it is answered.
        The first round's reply deadline is assignment's (交办), not here."""
        starts: dict[Literal["reply", "evaluation"], datetime] = {}
        if self.stage in HANDLING_STAGES and self.round > 1 and self.proposal.reply_due is not None:
            first = self.proposal.signers[0] if self.proposal.signers else None
            sent_back = [e.submitted_at for e in self.evaluations if e.round == self.round - 1 and e.signer_id == first]
            if sent_back:
                starts["reply"] = max(sent_back)
        if self.stage == Stage.ANSWERED and self.proposal.evaluation_due is not None:
            approvals = [
                r.reviewed_at
                for r in self.replies_of_round()
                if r.status == ReplyStatus.APPROVED and r.reviewed_at is not None
            ]
            if approvals:
                starts["evaluation"] = max(approvals)
        return starts

    def recompute_deadlines(self, reason: str, occasion: Occasion) -> list[HandlingDeadlineChanged]:
        """期限调整: the deadlines progress owns again from when they started, on the occasion's calendar (a
        newly announced year); each that moved is published as `HandlingDeadlineChanged` (and applied).
        Nothing for a proposal no longer handled or answered: a closed one keeps its dates."""
        policy, calendar = occasion.policy, occasion.calendar
        changed: list[HandlingDeadlineChanged] = []
        periods: dict[str, DeadlineName] = {"reply": "rehandling_deadline", "evaluation": "evaluation_window"}
        for kind, start in self.deadline_starts().items():
            previous = self.proposal.reply_due if kind == "reply" else self.proposal.evaluation_due
            due = deadline_for(policy, periods[kind], start, calendar)
            if due == previous:
                continue
            event = HandlingDeadlineChanged(
                proposal_id=self.id,
                actor=occasion.actor,
                correlation_id=occasion.correlation_id,
                kind=kind,
                round=self.round,
                due=due,
                previous_due=previous,
                reason=reason,
                provisional_calendar=calendar.is_provisional(local_date(start, policy.timezone), due),
            )
            self._publish(event, occasion.now)
            changed.append(event)
        return changed

    def send_notice(self, notice: DeadlineApproaching | DeadlineOverdue, notice_id: str, now: datetime) -> None:
        """到期预警 or 逾期, under its deterministic id."""
        self._publish(notice, now, notice_id)

    # 落实评价: the proposers judge what was implemented ------------------------------------------------

    def implementation_evaluations_of_round(self, round_: int | None = None) -> list[ImplementationVerdict]:
        wanted = implementation_round(self) if round_ is None else round_
        return [ev for ev in self.implementation_evaluations if ev.round == wanted]

    def open_implementation_evaluation(self, occasion: Occasion) -> None:
        """落实评价开始: once implemented (落实), the signers are asked to evaluate within the 落实评价期
        (its id is deterministic per round, so the scheduler and a request opening it make one event)."""
        if not implementation_evaluation_due_to_open(self):
            return
        round_ = implementation_round(self) + 1
        event = ImplementationEvaluationOpened(
            proposal_id=self.id,
            round=round_,
            evaluation_due=occasion.deadline("implementation_evaluation_window"),
            signers=list(self.proposal.signers),
            last_round=round_ >= occasion.policy.implementation_evaluation_rounds,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now, implementation_event_id(self.id, round_, "opened"))

    def evaluate_implementation(self, step: EvaluateImplementation, occasion: Occasion) -> None:
        """落实评价: a signer grades what was implemented. An unsatisfied first proposer reopens the measures
        it names, or asks the lead unit for a new measure (before the policy's last round); once every
        signer has evaluated, the round closes."""
        signer, policy = occasion.actor.id, occasion.policy
        implementation_evaluation_allowed(self, signer, occasion.today, step.grade, policy)
        satisfied = policy.evaluation_grade(step.grade).counts_as_satisfied
        reopening = reopening_valid(self, signer, satisfied, step.reopen, step.new_measure, policy)
        leader = supervising_leader(self)
        round_ = implementation_round(self)
        event = ImplementationEvaluated(
            proposal_id=self.id,
            signer_id=signer,
            grade=step.grade,
            comment=step.comment,
            round=round_,
            satisfied=satisfied,
            reopened_measures=list(dict.fromkeys(step.reopen)),
            new_measure_requested=step.new_measure,
            supervising_leader=leader if not satisfied else None,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)
        if reopening:
            self._reopen(step, round_, leader, occasion)
        elif all_implementation_evaluated(self):
            self.close_implementation_evaluation("all_evaluated", occasion)

    def _reopen(self, step: EvaluateImplementation, round_: int, leader: str | None, occasion: Occasion) -> None:
        """重新落实: the measures an unsatisfied first proposer named go back to their units, and the lead
        unit is asked for a new one if it asked; all due by the policy's `rehandling_deadline`."""
        asked: dict[str, Any] = {
            "proposal_id": self.id,
            "due": occasion.deadline("rehandling_deadline"),
            "round": round_,
            "reason": step.comment,
            "supervising_leader": leader,
            "actor": occasion.actor,
            "correlation_id": occasion.correlation_id,
        }
        for measure_id in dict.fromkeys(step.reopen):
            unit = self._measure(measure_id).owner_unit
            self._publish(MeasureReopened(measure_id=measure_id, unit=unit, **asked), occasion.now)
        if step.new_measure:
            self._publish(MeasureRequested(unit=self.proposal.lead_unit or "", **asked), occasion.now)

    def close_implementation_evaluation(
        self, reason: Literal["all_evaluated", "evaluation_window_closed"], occasion: Occasion
    ) -> None:
        """落实评价结束: every signer evaluated, or the 落实评价期 closed (id per proposal and round)."""
        round_ = implementation_round(self)
        satisfied_codes = {grade.code for grade in occasion.policy.evaluation_grades if grade.counts_as_satisfied}
        evaluations = self.implementation_evaluations_of_round(round_)
        event = ImplementationEvaluationClosed(
            proposal_id=self.id,
            round=round_,
            reason=reason,
            evaluations=len(evaluations),
            satisfied=sum(1 for ev in evaluations if ev.grade in satisfied_codes),
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now, implementation_event_id(self.id, round_, "closed"))

    def add_measure(self, step: AddMeasure, occasion: Occasion) -> None:
        """新举措: the lead unit answers a 落实评价's request for a new measure."""
        unit = step.unit
        if unit is None or unit != self.proposal.lead_unit:
            raise RuleViolation(
                "new_measure_by_lead_unit", f"only the lead unit of proposal {self.id} adds a requested measure"
            )
        if self.proposal.measure_request_due is None:
            raise StateConflict(
                "new_measure_requested", "no new measure was asked for; measures come with the reply or a 落实评价"
            )
        measures_due_in_future([step.due], occasion.today)
        event = MeasureAdded(
            proposal_id=self.id,
            measure=Measure(id=step.measure_id, text=step.text, owner_unit=unit, due=step.due),
            unit=unit,
            actor=occasion.actor,
            correlation_id=occasion.correlation_id,
        )
        self._publish(event, occasion.now)

    def _apply_implementation(self, event: Event, at: datetime) -> None:
        """What the 落实 and 落实评价 events change (folded after the handling events in `apply`)."""
        match event:
            case ReplyApproved():
                self.measures = [
                    replace(m, promised_at=at) if m.reply_id == event.reply_id and m.promised_at is None else m
                    for m in self.measures
                ]
            case MeasureUpdated():
                done = event.status == MeasureStatus.DONE.value
                self._change_measure(event.measure_id, done_at=at if done else None)
            case ProposalImplemented():
                self._change(implementation_evaluation=ImplementationEvaluation.DUE)
            case ImplementationEvaluationOpened():
                self._change(
                    implementation_round=event.round,
                    implementation_evaluation_due=event.evaluation_due,
                    implementation_evaluation=ImplementationEvaluation.OPEN,
                )
            case ImplementationEvaluated():
                self.implementation_evaluations.append(
                    ImplementationVerdict(
                        proposal_id=self.id,
                        round=event.round,
                        signer_id=event.signer_id,
                        grade=event.grade,
                        comment=event.comment,
                        reopened_measures=tuple(event.reopened_measures),
                        new_measure_requested=event.new_measure_requested,
                        submitted_at=at,
                    )
                )
                if event.reopened_measures or event.new_measure_requested:
                    self._change(implementation_evaluation=ImplementationEvaluation.REOPENED, implemented_at=None)
            case ImplementationEvaluationClosed():
                self._change(implementation_evaluation=ImplementationEvaluation.CLOSED)
            case MeasureReopened():
                self._change_measure(
                    event.measure_id,
                    status=MeasureStatus.IN_PROGRESS,
                    due=event.due,
                    note=event.reason,
                    done_at=None,
                    reopened=self._measure(event.measure_id).reopened + 1,
                    updated_at=at,
                )
            case MeasureRequested():
                self._change(measure_request_due=event.due)
            case MeasureAdded():
                approved = [r for r in self.replies if r.status == ReplyStatus.APPROVED and r.unit == event.unit]
                self.measures.append(
                    TrackedMeasure(
                        id=event.measure.id,
                        proposal_id=self.id,
                        reply_id=approved[-1].id if approved else "",
                        text=event.measure.text,
                        owner_unit=event.measure.owner_unit,
                        due=event.measure.due,
                        status=MeasureStatus.PLANNED,
                        note="",
                        updated_at=at,
                        promised_at=at,
                    )
                )
                self._change(measure_request_due=None)


STEPS: dict[type[HandlingStep], Callable[[Dossier, Any, Occasion], None]] = {
    ReportProgress: Dossier.report_progress,
    SubmitCoOpinion: Dossier.submit_co_opinion,
    DraftReply: Dossier.draft_reply,
    ReviewReply: Dossier.review_reply,
    Evaluate: Dossier.evaluate,
    UpdateMeasure: Dossier.update_measure,
    EvaluateImplementation: Dossier.evaluate_implementation,
    AddMeasure: Dossier.add_measure,
    RecordSupervision: Dossier.record_supervision,
}
"""The method of the dossier that carries out each handling step."""


def handling_units(event: ProposalAssigned | AssignmentReassigned) -> dict[str, Any]:
    """Who handles the proposal after 交办 or 改办, and by when. Under 分办 the read model keeps the
    other replying units (`split_units` in the event) in `co_units`, with form `split`."""
    others = event.split_units if event.form == AssignmentForm.SPLIT else event.co_units
    return {
        "lead_unit": event.lead_unit.id,
        "co_units": tuple(unit.id for unit in others),
        "reply_due": event.reply_due,
        "co_opinion_due": event.co_opinion_due,
        "form": event.form.value,
    }


def reply_units(proposal: Proposal) -> list[str]:
    """Who replies: the lead unit (单办, 主办+会办), or every unit (分办)."""
    if proposal.lead_unit is None:
        return []
    if proposal.form == "split":
        return [proposal.lead_unit, *proposal.co_units]
    return [proposal.lead_unit]


def unit_must_handle(proposal: Proposal, unit: str | None) -> str:
    """承办: only the proposal's lead or co-handling units act on it."""
    if unit is None or unit not in proposal.handling_units:
        raise RuleViolation(
            "unit_handles_proposal",
            f"unit {unit!r} is not a handling unit of proposal {proposal.id}; "
            "only its lead and co-handling units may act on it",
        )
    return unit


def awaits_assignment(dossier: Dossier | None) -> bool:
    """Progress has not caught up with the proposal's 交办: it does not know the proposal, or knows no
    handling unit of it yet and it is still in the running (not 不予立案, 并案 or 撤案). The
    `assignment.assigned` event comes on another topic, and may come later than a unit's first command
    about it; by its stage alone this cannot be told, since a unit's 签收 (`assignment.accepted`, handling)
    folded in a moment before the 交办 it answers would already show the proposal as being handled."""
    if dossier is None:
        return True
    return dossier.proposal.lead_unit is None and dossier.stage not in _FINAL


def progress_while_handling(stage: Stage) -> None:
    """办理进展 is reported while the proposal is being handled."""
    if stage not in HANDLING_STAGES:
        raise StateConflict(
            "progress_only_while_handling",
            f"the proposal is {stage.value}; progress is reported between 交办 and the approved reply",
        )


def co_opinion_allowed(dossier: Dossier, unit: str) -> None:
    """会办意见: a co-handling unit of a 主办+会办 proposal, once, before the reply is approved."""
    proposal = dossier.proposal
    if proposal.form == "split" or unit not in proposal.co_units:
        raise RuleViolation(
            "co_opinion_by_co_unit", f"unit {unit} is not a co-handling unit (会办单位) of proposal {dossier.id}"
        )
    if dossier.stage not in HANDLING_STAGES:
        raise StateConflict(
            "co_opinion_while_handling", f"the proposal is {dossier.stage.value}; 会办意见 go in before the reply"
        )
    if any(opinion.unit == unit for opinion in dossier.co_opinions):
        raise StateConflict("co_opinion_once", f"unit {unit} already sent its 会办意见 for this proposal")


def reply_allowed(dossier: Dossier, unit: str) -> None:
    """答复: each replying unit drafts one reply per round; a returned reply is redrafted."""
    if unit not in reply_units(dossier.proposal):
        raise RuleViolation(
            "reply_by_lead_unit",
            f"unit {unit} does not reply to proposal {dossier.id}: the lead unit (主办单位) replies, "
            "or every unit when the proposal is split (分办)",
        )
    if dossier.stage not in HANDLING_STAGES:
        raise StateConflict(
            "reply_while_handling", f"the proposal is {dossier.stage.value}; a reply is drafted while it is handled"
        )
    for reply in dossier.replies_of_round():
        if reply.unit == unit and reply.status in (ReplyStatus.DRAFTED, ReplyStatus.APPROVED):
            raise StateConflict(
                "one_reply_per_round",
                f"unit {unit} already has a reply {reply.status.value} in this round; "
                "a new draft is possible only after the committee returns it",
            )


def reply_content_valid(
    classification: str, adopted_numbers: Sequence[int], suggestion_count: int | None, policy: Policy
) -> None:
    """A reply uses the policy's 答复分类, and says for every suggestion whether it was adopted."""
    codes = [reply_class.code for reply_class in policy.reply_classes]
    if classification not in codes:
        raise RuleViolation(
            "reply_class_known", f"unknown reply class {classification!r}; use one of: {', '.join(codes)}"
        )
    if suggestion_count:
        expected = list(range(1, suggestion_count + 1))
        if sorted(adopted_numbers) != expected:
            raise RuleViolation(
                "adoption_for_every_suggestion",
                f"say for each suggestion 1..{suggestion_count} exactly once whether it was adopted; "
                f"got {sorted(adopted_numbers)}",
            )


def measures_due_in_future(dues: Sequence[date], today: date) -> None:
    """举措 commit to the future: a due date already past is a typo or a measure already done."""
    past = [due.isoformat() for due in dues if due < today]
    if past:
        raise RuleViolation("measure_due_in_future", f"measure due dates {past} are in the past")


def review_pending(reply: Reply) -> None:
    """办复审查: only a reply awaiting review is approved or returned."""
    if reply.status != ReplyStatus.DRAFTED:
        raise StateConflict("review_only_drafted", f"the reply is already {reply.status.value}; nothing to review")


def round_stage(units: Sequence[str], replies: Sequence[Reply]) -> Stage:
    """The stage a round of replies gives: answered once every replying unit's reply is approved."""
    status = {reply.unit: reply.status for reply in replies}
    if units and all(status.get(unit) == ReplyStatus.APPROVED for unit in units):
        return Stage.ANSWERED
    if any(value == ReplyStatus.DRAFTED for value in status.values()):
        return Stage.REPLY_REVIEW
    return Stage.HANDLING


def evaluation_allowed(dossier: Dossier, signer: str, today: date, grades: Sequence[str], policy: Policy) -> None:
    """评价: every signer, once per round, within the 评价期, with the policy's grades."""
    known = [grade.code for grade in policy.evaluation_grades]
    unknown = [grade for grade in grades if grade not in known]
    if unknown:
        raise RuleViolation("grade_known", f"unknown grade(s) {unknown}; use one of: {', '.join(known)}")
    if signer not in dossier.proposal.signers:
        raise RuleViolation("evaluator_is_signer", f"only the signers of proposal {dossier.id} evaluate its reply")
    if dossier.stage != Stage.ANSWERED:
        raise StateConflict(
            "evaluate_answered", f"the proposal is {dossier.stage.value}; evaluation follows an approved reply"
        )
    if any(ev.signer_id == signer for ev in dossier.evaluations_of_round()):
        raise StateConflict("evaluate_once", "you already evaluated this reply")
    due = dossier.proposal.evaluation_due
    if due is not None and today > due:
        raise StateConflict("evaluation_window_open", f"the evaluation window (评价期) closed on {due}")


def rehandling_triggered(dossier: Dossier, signer: str, grades: Sequence[str], policy: Policy) -> bool:
    """重新办理: the first proposer (领衔提案者) is unsatisfied, and the proposal was handled only once."""
    first_proposer = dossier.proposal.signers[0]
    unsatisfied = any(policy.evaluation_grade(grade).triggers_rehandling for grade in grades)
    return signer == first_proposer and unsatisfied and dossier.round < MAX_ROUNDS


def all_evaluated(dossier: Dossier, extra_signer: str | None = None) -> bool:
    done = {ev.signer_id for ev in dossier.evaluations_of_round()}
    if extra_signer:
        done.add(extra_signer)
    return set(dossier.proposal.signers) <= done


_MEASURE_MOVES = {
    MeasureStatus.PLANNED: {MeasureStatus.IN_PROGRESS, MeasureStatus.DONE, MeasureStatus.DROPPED},
    MeasureStatus.IN_PROGRESS: {MeasureStatus.DONE, MeasureStatus.DROPPED},
}


def measure_transition(current: MeasureStatus, target: MeasureStatus, note: str) -> None:
    """举措落实: planned → in progress → done; dropped only with a reason; done and dropped are final."""
    if target not in _MEASURE_MOVES.get(current, set()):
        raise StateConflict("measure_moves_forward", f"a measure that is {current.value} cannot become {target.value}")
    if target == MeasureStatus.DROPPED and not note.strip():
        raise RuleViolation("measure_dropped_with_reason", "a dropped measure needs the reason in `note`")


def implemented(dossier: Dossier) -> bool:
    """落实: closed, with measures, every one settled (done or dropped) and at least one done."""
    statuses = [measure.status for measure in dossier.measures]
    return (
        dossier.stage == Stage.CLOSED
        and dossier.proposal.implemented_at is None
        and dossier.proposal.measure_request_due is None
        and bool(statuses)
        and all(status in SETTLED_MEASURES for status in statuses)
        and MeasureStatus.DONE in statuses
    )


def supervisor_must_lead(proposal: Proposal, leader: str) -> None:
    """督办: a leader records supervision on a key proposal (重点提案) it supervises or leads."""
    if not proposal.is_key or leader not in proposal.leaders:
        raise RuleViolation(
            "supervision_by_its_leader", f"proposal {proposal.id} is not a key proposal supervised by {leader}"
        )


# Deadlines (到期预警, 逾期) ---------------------------------------------------------------------------


StepKind = Literal["reply", "co_opinion", "evaluation", "measure", "implementation_evaluation", "new_measure"]
"""待办事项: what an open step asks for (答复, 会办意见, 评价, 举措落实, 落实评价, 新举措); also the `kind` of
到期预警 and 逾期."""

SIGNER_STEPS = ("evaluation", "implementation_evaluation")
"""The steps a signer owes, not a unit (left out of a unit's inbox and of overdue by unit)."""


@dataclass(frozen=True)
class Obligation:
    """One open step with a due date: who owes it, and what."""

    proposal_id: str
    kind: StepKind
    due: date
    unit: str = ""
    signer_id: str | None = None
    measure_id: str | None = None

    @property
    def owner(self) -> str:
        return self.signer_id or self.unit


def obligations(dossier: Dossier) -> list[Obligation]:
    """The open steps of one proposal, each with its due date."""
    proposal, found = dossier.proposal, []
    stage = dossier.stage
    if stage in HANDLING_STAGES and proposal.reply_due is not None:
        replied = {
            reply.unit
            for reply in dossier.replies_of_round()
            if reply.status in (ReplyStatus.DRAFTED, ReplyStatus.APPROVED)
        }
        found += [
            Obligation(dossier.id, "reply", proposal.reply_due, unit=unit)
            for unit in reply_units(proposal)
            if unit not in replied
        ]
        if proposal.form != "split" and proposal.co_opinion_due is not None and dossier.round == 1:
            sent = {opinion.unit for opinion in dossier.co_opinions}
            found += [
                Obligation(dossier.id, "co_opinion", proposal.co_opinion_due, unit=unit)
                for unit in proposal.co_units
                if unit not in sent
            ]
    if stage == Stage.ANSWERED and proposal.evaluation_due is not None:
        done = {ev.signer_id for ev in dossier.evaluations_of_round()}
        found += [
            Obligation(dossier.id, "evaluation", proposal.evaluation_due, unit=proposal.lead_unit or "", signer_id=s)
            for s in proposal.signers
            if s not in done
        ]
    found += [
        Obligation(dossier.id, "measure", measure.due, unit=measure.owner_unit, measure_id=measure.id)
        for measure in dossier.measures
        if measure.status not in SETTLED_MEASURES
    ]
    found += implementation_obligations(dossier)
    return found


def supervising_leader(dossier: Dossier) -> str | None:
    """督办领导 of a key proposal (the first of its leaders), named on its deadline notices."""
    leaders = dossier.proposal.leaders
    return leaders[0] if dossier.proposal.is_key and leaders else None


def notice_id(obligation: Obligation, which: str) -> str:
    """A deterministic id, so that several replicas firing the same notice make one event."""
    key = f"{obligation.proposal_id}:{obligation.kind}:{obligation.owner}:{obligation.measure_id or ''}:"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}{obligation.due.isoformat()}:{which}"))


SCHEDULER = Actor(id="progress-scheduler", role=Role.SYSTEM)


def due_notices(
    dossiers: Sequence[Dossier], today: date, policy: Policy, calendar: WorkingCalendar
) -> list[tuple[DeadlineApproaching | DeadlineOverdue, str]]:
    """到期预警 from the warning date to the due date, 逾期 from the day after; each once (its id)."""
    notices: list[tuple[DeadlineApproaching | DeadlineOverdue, str]] = []
    for dossier in dossiers:
        for item in obligations(dossier):
            fields: dict[str, Any] = {
                "proposal_id": item.proposal_id,
                "actor": SCHEDULER,
                "unit": item.unit,
                "kind": item.kind,
                "due": item.due,
                "signer_id": item.signer_id,
                "measure_id": item.measure_id,
                "supervising_leader": supervising_leader(dossier),
            }
            if today > item.due:
                notices.append((DeadlineOverdue(**fields), notice_id(item, "overdue")))
            elif today >= warning_date(item.due, policy.warning_lead_time, calendar):
                notices.append((DeadlineApproaching(**fields), notice_id(item, "approaching")))
    return notices


def evaluation_window_closed(dossier: Dossier, today: date) -> bool:
    """评价期 over without every evaluation: the proposal is closed (办结) anyway."""
    due = dossier.proposal.evaluation_due
    return dossier.stage == Stage.ANSWERED and due is not None and today > due


def closing_id(dossier: Dossier) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dossier.id}:closed:{dossier.round}"))


def is_overdue(dossier: Dossier, today: date) -> bool:
    return any(today > item.due for item in obligations(dossier))


_PHONE = re.compile(r"(?<!\d)(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_personal_data(text: str) -> str:
    """答复公开: phone numbers and e-mail addresses in a reply text are masked before disclosure."""
    return _EMAIL.sub("[邮箱已隐去]", _PHONE.sub("[电话已隐去]", text))


# 落实评价 -----------------------------------------------------------------------------------------


def implementation_round(dossier: Dossier) -> int:
    """The current 落实评价 round (0 before the first one opens)."""
    return dossier.proposal.implementation_round


def implementation_evaluation_due_to_open(dossier: Dossier) -> bool:
    """落实 happened and its 落实评价 has not been opened yet."""
    proposal = dossier.proposal
    return proposal.implemented_at is not None and proposal.implementation_evaluation == ImplementationEvaluation.DUE


def implementation_event_id(proposal_id: str, round_: int, which: str) -> str:
    """A deterministic id for opening and closing a 落实评价 round (replicas and reruns make one event)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{proposal_id}:implementation-evaluation:{round_}:{which}"))


def implementation_evaluation_allowed(dossier: Dossier, signer: str, today: date, grade: str, policy: Policy) -> None:
    """落实评价: every signer, once per round, within the 落实评价期, with the policy's grades."""
    known = [g.code for g in policy.evaluation_grades]
    if grade not in known:
        raise RuleViolation("grade_known", f"unknown grade {grade!r}; use one of: {', '.join(known)}")
    if signer not in dossier.proposal.signers:
        raise RuleViolation(
            "implementation_evaluator_is_signer",
            f"only the signers of proposal {dossier.id} evaluate its implementation",
        )
    if dossier.proposal.implementation_evaluation != ImplementationEvaluation.OPEN:
        raise StateConflict(
            "implementation_evaluation_open",
            "the implementation (落实) is evaluated once every measure is settled and the 落实评价 is open; "
            "it is not open now",
        )
    if any(ev.signer_id == signer for ev in dossier.implementation_evaluations_of_round()):
        raise StateConflict("implementation_evaluated_once", "you already evaluated this implementation")
    due = dossier.proposal.implementation_evaluation_due
    if due is not None and today > due:
        raise StateConflict(
            "implementation_evaluation_window_open",
            f"the implementation evaluation window (落实评价期) closed on {due}",
        )


def reopening_valid(
    dossier: Dossier, signer: str, satisfied: bool, reopen: Sequence[str], new_measure: bool, policy: Policy
) -> bool:
    """重新落实: only an unsatisfied first proposer (领衔提案者) reopens measures or asks for a new one, and
    only before the policy's last 落实评价 round; an unsatisfied first proposer then must say which (the
    measures to reopen, or a new measure). Returns whether this evaluation reopens."""
    asks = bool(reopen) or new_measure
    first_proposer = dossier.proposal.signers[0]
    if asks and satisfied:
        raise RuleViolation(
            "reopen_when_unsatisfied", "measures are reopened (or a new one asked for) only with an unsatisfied grade"
        )
    if asks and signer != first_proposer:
        raise RuleViolation(
            "reopen_by_first_proposer", "only the first proposer (领衔提案者) reopens measures or asks for a new one"
        )
    last_round = implementation_round(dossier) >= policy.implementation_evaluation_rounds
    if asks and last_round:
        raise StateConflict(
            "implementation_rounds_limit",
            f"this is the last implementation evaluation round ({policy.implementation_evaluation_rounds} in the "
            "policy); the evaluation is recorded as it is, without reopening measures",
        )
    known = {measure.id for measure in dossier.measures}
    unknown = [measure_id for measure_id in reopen if measure_id not in known]
    if unknown:
        raise RuleViolation("reopen_known_measure", f"proposal {dossier.id} has no measure(s) {unknown}")
    if not satisfied and signer == first_proposer and not last_round and not asks:
        raise RuleViolation(
            "unsatisfied_names_measures",
            "an unsatisfied first proposer names the measures to reopen (`reopen`) or asks for a new measure "
            "(`new_measure`)",
        )
    return asks


def all_implementation_evaluated(dossier: Dossier) -> bool:
    done = {ev.signer_id for ev in dossier.implementation_evaluations_of_round()}
    return set(dossier.proposal.signers) <= done


def implementation_evaluation_window_closed(dossier: Dossier, today: date) -> bool:
    """落实评价期 over without every evaluation: the round closes with what came in."""
    due = dossier.proposal.implementation_evaluation_due
    open_ = dossier.proposal.implementation_evaluation == ImplementationEvaluation.OPEN
    return open_ and due is not None and today > due


def implementation_obligations(dossier: Dossier) -> list[Obligation]:
    """The 落实评价 each signer still owes, and the new measure the lead unit was asked for."""
    proposal, found = dossier.proposal, []
    due = proposal.implementation_evaluation_due
    if proposal.implementation_evaluation == ImplementationEvaluation.OPEN and due is not None:
        done = {ev.signer_id for ev in dossier.implementation_evaluations_of_round()}
        found += [
            Obligation(dossier.id, "implementation_evaluation", due, unit=proposal.lead_unit or "", signer_id=s)
            for s in proposal.signers
            if s not in done
        ]
    request_due = proposal.measure_request_due
    if request_due is not None and dossier.stage == Stage.CLOSED:
        found.append(Obligation(dossier.id, "new_measure", request_due, unit=proposal.lead_unit or ""))
    return found


# 跨年度落实 ---------------------------------------------------------------------------------------


def proposal_year(dossier: Dossier, timezone: str) -> int:
    """The year a proposal belongs to: its submission date in the policy's time zone."""
    return local_date(dossier.proposal.submitted_at, timezone).year


def carried_over(dossier: Dossier, measure: TrackedMeasure, timezone: str) -> bool:
    """跨年度落实: a measure due after the year of its proposal, carried over into the next year's work."""
    return measure.due.year > proposal_year(dossier, timezone)
