"""The event contract of ProposalFlow: the single source of truth for every event and command.

Each class is the `data` of one CloudEvents type, named `proposalflow.<thing>.<what-happened>.v<N>`.
A breaking change is a new class with a new `vN`, published beside the old one until consumers move;
an optional field may be added within a version, so consumers ignore fields they do not know.
Commands arriving from outside systems (the inbound topics) are strict instead: an unknown field is
an error the sender is told about.

JSON Schema for every type and the AsyncAPI documents are generated from these models
(`proposalflow schemas export`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Topics -------------------------------------------------------------------------------------------

SUBMISSIONS = "proposalflow.submissions"
UNIT_REPORTS = "proposalflow.unit-reports"
PROPOSALS = "proposalflow.proposals"
ASSIGNMENTS = "proposalflow.assignments"
HANDLING = "proposalflow.handling"
NOTIFICATIONS = "proposalflow.notifications"
LEADER_REPORTS = "proposalflow.leader-reports"

TOPIC_WRITERS = {
    SUBMISSIONS: "outside systems (allow-listed sources), each on its own `proposalflow.submissions.<system>` "
    "(only its Kafka user may write it; production) or on this shared topic (development)",
    UNIT_REPORTS: "outside systems (allow-listed unit systems), each on its own `proposalflow.unit-reports.<system>` "
    "(only its Kafka user may write it; production) or on this shared topic (development)",
    PROPOSALS: "intake",
    ASSIGNMENTS: "assignment",
    HANDLING: "progress",
    NOTIFICATIONS: "notify",
    LEADER_REPORTS: "outside systems (allow-listed leaders' office systems)",
}
"""Who writes each topic: one writer per topic."""

INBOUND_TOPICS = (SUBMISSIONS, UNIT_REPORTS, LEADER_REPORTS)
EVENT_TOPICS = (PROPOSALS, ASSIGNMENTS, HANDLING, NOTIFICATIONS)
ALL_TOPICS = INBOUND_TOPICS + EVENT_TOPICS


def dlq_topic(service: str) -> str:
    """The dead-letter topic of one service: `proposalflow.dlq.<service>`."""
    return f"proposalflow.dlq.{service}"


def source_of(service: str) -> str:
    """The CloudEvents `source` of a ProposalFlow service."""
    return f"/proposalflow/{service}"


# Field descriptions an integrator reads in the schemas ------------------------------------------

POLICY_CODES = "GET /policy/codes on the progress service (public) or docs/policy-codes.md lists them"
"""Where a field that takes a code sends the reader (shared/codes.py serves and documents the codes)."""

UNIT_ID = (
    '承办单位: the bare unit id (e.g. "dg-fgj"). Commands and the progress events carry only the id; the '
    'assignment events name a unit as {"id", "name"} (UnitRef), and this is its `id`.'
)
UNIT_REF = (
    '承办单位 as {"id", "name"} (UnitRef). Only the assignment events name units this way; commands and the '
    "progress events carry the bare unit id, which is the `id` here."
)
ACTOR_UNIT = "For a unit user: the bare id of the unit it acts for (a UnitRef's `id`)."
CATEGORY = f"提案分类: one of the policy's categories; {POLICY_CODES}."
REPLY_CLASS = f"答复分类: one of the policy's reply class codes (e.g. A); {POLICY_CODES}."
EVALUATION_GRADE = f"one of the policy's evaluation grade codes (e.g. satisfied); {POLICY_CODES}."
PROGRESS_KIND = f"办理进展方式: one of the progress kinds; {POLICY_CODES}."
SUPERVISION_KIND = f"督办方式: one of the supervision kinds; {POLICY_CODES}."
MEASURE_STATUS = f"举措状态: one of the measure statuses; {POLICY_CODES}."
NOT_FILED_GROUND = f"不予立案理由: one of the policy's not_filed_grounds; {POLICY_CODES}."
DEADLINE_KIND = f"待办事项: reply, co_opinion, evaluation or measure; {POLICY_CODES}."


SYSTEM_NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}"
"""An outside system's name, as its own inbound topics end (Kafka's topic characters)."""


def system_topic(inbound: str, system: str) -> str:
    """The inbound topic of one outside system, `proposalflow.unit-reports.<system>`: only that system's
    Kafka user may write it (an ACL), so what arrives on it comes from that system (docs/decisions.md)."""
    return f"{inbound}.{system}"


def system_of_topic(inbound: str, topic: str) -> str | None:
    """The outside system whose inbound topic `topic` is, or None for the shared topic `inbound` itself."""
    prefix = f"{inbound}."
    return topic[len(prefix) :] if topic.startswith(prefix) else None


def inbound_topic_pattern(literal: Sequence[str], inbound: Sequence[str]) -> str:
    """The regex a consumer subscribes with to read `literal` topics, and the `inbound` topics together
    with every outside system's own (`proposalflow.submissions.<system>`), including systems added later."""
    names = "|".join(re.escape(topic) for topic in literal)
    systems = "|".join(re.escape(topic) for topic in inbound)
    alternatives = [f"(?:{systems})(?:\\.{SYSTEM_NAME})?"] + ([names] if names else [])
    return "^(?:" + "|".join(alternatives) + ")$"


# Shared value types -------------------------------------------------------------------------------


class Role(StrEnum):
    """Who acts; see DESIGN.md §1."""

    MEMBER = "member"  # 委员 / 提案者
    COMMITTEE = "committee"  # 提案委员会
    DISPATCHER = "dispatcher"  # 交办机关
    UNIT = "unit"  # 承办单位
    LEADER = "leader"  # 督办领导
    PUBLIC = "public"  # 公众
    SYSTEM = "system"  # 外部系统
    ADMIN = "admin"  # 管理员


class Actor(BaseModel):
    """The principal that caused an event: its id, role and, for a unit, which unit."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=200)
    role: Role
    unit: str | None = Field(default=None, max_length=200, description=ACTOR_UNIT)
    via: str | None = Field(
        default=None,
        max_length=300,
        exclude_if=lambda value: value is None,
        description="The inbound topic through which an outside system sent the command that this actor's event "
        "answers (`proposalflow.unit-reports.<system>`: the Kafka user allowed to write it is the authenticated "
        "system). Set by ProposalFlow, never by the sender; absent for what was done over HTTP or by a service.",
    )


class ProposerKind(StrEnum):
    """提案者: an individual member, or a collective."""

    MEMBER = "member"  # 委员
    PARTY = "party"  # 党派
    PEOPLES_ORGANISATION = "peoples_organisation"  # 人民团体
    SECTOR = "sector"  # 界别
    SPECIAL_COMMITTEE = "special_committee"  # 专门委员会
    MEMBER_GROUP = "member_group"  # 委员小组


class Proposer(BaseModel):
    """One signer of a proposal."""

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    kind: ProposerKind = ProposerKind.MEMBER


class Suggestion(BaseModel):
    """建议: one numbered concrete suggestion of a proposal; adoption is tracked per suggestion."""

    number: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=5000)


class SessionKind(StrEnum):
    """大会提案 (during the plenary) or 平时提案 (between sessions)."""

    PLENARY = "plenary"
    INTERIM = "interim"


class AssignmentForm(StrEnum):
    """交办形式."""

    SINGLE = "single"  # 单办
    LEAD_CO = "lead_co"  # 主办 + 会办
    SPLIT = "split"  # 分办


class UnitRef(BaseModel):
    """A handling unit (承办单位) as the assignment events name it: its id and its name. Commands and
    the progress events carry the bare unit id instead (the `id` here)."""

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)


class Measure(BaseModel):
    """举措: a measure a reply commits to, tracked until implemented."""

    id: str
    text: str = Field(min_length=1, max_length=5000)
    owner_unit: str = Field(description=UNIT_ID)
    due: date


ADOPTIONS_REQUIRED = (
    "采纳情况: required by rule `adoption_for_every_suggestion` when the proposal has suggestions: one entry "
    "for each suggestion number 1..n, exactly once, saying whether it was adopted. Empty only for a "
    "proposal without numbered suggestions; otherwise the reply is rejected."
)


class SuggestionAdoption(BaseModel):
    """Whether one suggestion of the proposal was adopted, and how."""

    number: int = Field(ge=1)
    adopted: bool
    how: str = ""


PROVISIONAL_CALENDAR = (
    "暂定日历: a deadline of this event falls in a year whose official holiday calendar (国务院放假安排, "
    "with its 调休 working days) was not known when it was computed; it may move once the year is "
    "announced (then `…deadlines-changed` events follow)."
)


# Base classes -------------------------------------------------------------------------------------


class Message(BaseModel):
    """Anything that travels as a CloudEvent. `TYPE` and `TOPIC` name as what and where."""

    TYPE: ClassVar[str] = ""
    TOPIC: ClassVar[str] = ""

    @classmethod
    def registry(cls) -> dict[str, type[Message]]:
        """Every concrete event and command type, by CloudEvents type."""
        found: dict[str, type[Message]] = {}
        stack: list[type[Message]] = list(cls.__subclasses__())
        while stack:
            sub = stack.pop()
            stack.extend(sub.__subclasses__())
            if sub.TYPE:
                if sub.TYPE in found and found[sub.TYPE] is not sub:
                    raise RuntimeError(f"event type {sub.TYPE} is defined twice")
                found[sub.TYPE] = sub
        return dict(sorted(found.items()))


class Event(Message):
    """The data of a ProposalFlow event: always about one proposal, with who caused it and why."""

    model_config = ConfigDict(extra="ignore")

    proposal_id: str = Field(min_length=1, max_length=100)
    actor: Actor
    correlation_id: str | None = None


class Command(Message):
    """A command written by an outside system to an inbound topic; unknown fields are refused.

    The sending system is the CloudEvents `source` (checked against the allow-list); `actor` is the
    person on whose behalf it sends.
    """

    model_config = ConfigDict(extra="forbid")

    actor: Actor


class Rejection(Event):
    """What became of a command that failed validation or authorisation (…rejected events).

    `proposal_id` is the proposal the command named, or the command id when it named none.
    """

    command_id: str
    command_source: str
    command_type: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


# Inbound commands ---------------------------------------------------------------------------------


class ProposalContent(BaseModel):
    """What a proposer writes: the same over HTTP and over Kafka."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=4, max_length=200)
    body: str = Field(min_length=10, max_length=50_000)
    category: str = Field(min_length=1, max_length=50, description=CATEGORY)
    session_kind: SessionKind = SessionKind.INTERIM
    first_proposer: Proposer
    cosigners: list[Proposer] = Field(default_factory=list, max_length=200)
    suggestions: list[str] = Field(min_length=1, max_length=100, description="建议, in order; numbered from 1.")
    series_id: str | None = Field(default=None, max_length=100)


class SubmitProposal(Command, ProposalContent):
    """提交提案 from a member portal or the CPPCC's own platform (topic proposalflow.submissions)."""

    TYPE = "proposalflow.submission.requested.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str | None = Field(default=None, max_length=100, description="Optional id chosen by the sender.")


class ProgressKind(StrEnum):
    """办理进展的方式: how a unit worked on a proposal."""

    FACE_TO_FACE = "face_to_face"  # 面商
    PHONE = "phone"  # 电话沟通
    WRITTEN = "written"  # 书面沟通
    MEETING = "meeting"  # 座谈会
    RESEARCH = "research"  # 调研
    OTHER = "other"


class ProgressContent(BaseModel):
    """办理进展 as a unit writes it: the same over HTTP and over Kafka."""

    model_config = ConfigDict(extra="forbid")

    kind: ProgressKind = Field(description=PROGRESS_KIND)
    on: date
    text: str = Field(min_length=1, max_length=20_000)


class MeasurePlan(BaseModel):
    """举措 as a reply commits to it: what, which unit owns it, by when."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=5000)
    owner_unit: str = Field(min_length=1, max_length=200, description=UNIT_ID)
    due: date


class ReplyContent(BaseModel):
    """答复 as the lead unit (or each unit, for 分办) drafts it: the same over HTTP and over Kafka."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=10, max_length=50_000)
    classification: str = Field(min_length=1, max_length=20, description=REPLY_CLASS)
    adoptions: list[SuggestionAdoption] = Field(
        default_factory=list,
        max_length=100,
        description=ADOPTIONS_REQUIRED,
    )
    measures: list[MeasurePlan] = Field(default_factory=list, max_length=100)


class ReportProgress(Command):
    """办理进展 reported by a unit's own system (topic proposalflow.unit-reports)."""

    TYPE = "proposalflow.unit-report.progress-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(description=UNIT_ID)
    kind: Literal["face_to_face", "phone", "written", "meeting", "research", "other"] = Field(description=PROGRESS_KIND)
    on: date
    text: str = Field(min_length=1, max_length=20_000)


class SubmitCoOpinion(Command):
    """会办意见 sent by a co-handling unit's system (topic proposalflow.unit-reports)."""

    TYPE = "proposalflow.unit-report.co-opinion-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(description=UNIT_ID)
    text: str = Field(min_length=1, max_length=20_000)


class SubmitReply(Command, ReplyContent):
    """答复 drafted in a unit's own system, sent for 办复审查 (topic proposalflow.unit-reports)."""

    TYPE = "proposalflow.unit-report.reply-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(description=UNIT_ID)


class CosignProposal(Command):
    """联名确认 by a named cosigner, from a member platform (intake).

    On topic proposalflow.submissions. The cosigner is the command's `actor` (role member)."""

    TYPE = "proposalflow.submission.cosign-confirmed.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str = Field(min_length=1, max_length=100)


class WithdrawProposal(Command):
    """撤案 by the first proposer before filing, from a member platform (intake).

    On topic proposalflow.submissions. The first proposer is the command's `actor` (role member)."""

    TYPE = "proposalflow.submission.withdrawal-requested.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=2000)


class ResubmitProposal(Command):
    """修改后重新提交 of a returned proposal (退回修改) by its first proposer, from a member platform (intake).

    On topic proposalflow.submissions. The fields given replace the returned proposal's, those left out
    keep what it holds; the revision and the resubmission are one step (both or neither). Signers are
    fixed once submitted."""

    TYPE = "proposalflow.submission.resubmission-requested.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str = Field(min_length=1, max_length=100)
    title: str | None = Field(default=None, min_length=4, max_length=200)
    body: str | None = Field(default=None, min_length=10, max_length=50_000)
    category: str | None = Field(default=None, min_length=1, max_length=50)
    session_kind: SessionKind | None = None
    suggestions: list[Annotated[str, Field(min_length=1, max_length=5000)]] | None = Field(
        default=None, min_length=1, max_length=100, description="建议, in order; numbered from 1."
    )
    series_id: str | None = Field(default=None, max_length=100, description="null leaves the series.")

    @model_validator(mode="after")
    def _null_clears_only_the_series(self) -> ResubmitProposal:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None and name != "series_id")
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep what it holds")
        return self

    def changes(self) -> dict[str, Any]:
        """The revision: the content fields the command sets."""
        content = self.model_fields_set - {"actor", "proposal_id"}
        return self.model_dump(mode="json", include=content)


class EvaluateReply(Command):
    """评价 by a signer of the reply to their proposal, from a member platform (progress).

    On topic proposalflow.submissions, beside intake's commands. The signer is the command's `actor`
    (role member); the grades are the policy's evaluation grade codes."""

    TYPE = "proposalflow.submission.evaluation-submitted.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str = Field(min_length=1, max_length=100)
    handling_grade: str = Field(min_length=1, max_length=50, description="办理态度: a grade code from the policy.")
    result_grade: str = Field(min_length=1, max_length=50, description="办理结果: a grade code from the policy.")
    comment: str = Field(default="", max_length=5000)


class EvaluateImplementation(Command):
    """落实评价 by a signer of what was implemented, once every measure is settled, from a member platform
    (progress); the command form of `POST /proposals/{id}/implementation-evaluations`.

    On topic proposalflow.submissions, beside intake's commands. The signer is the command's `actor`
    (role member). An unsatisfied first proposer names the measures to reopen (`reopen`) or asks the lead
    unit for a new measure (`new_measure`)."""

    TYPE = "proposalflow.submission.implementation-evaluation-submitted.v1"
    TOPIC = SUBMISSIONS

    proposal_id: str = Field(min_length=1, max_length=100)
    grade: str = Field(min_length=1, max_length=50, description="落实评价: a grade code from the policy.")
    comment: str = Field(default="", max_length=5000)
    reopen: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100, description="Ids of the settled measures to reopen."
    )
    new_measure: bool = Field(default=False, description="Ask the lead unit for a new measure (新举措).")


class RecordSupervision(Command):
    """督办 recorded by a leader's office system on a key proposal the leader supervises (progress).

    On topic proposalflow.leader-reports. The leader is the command's `actor` (role leader)."""

    TYPE = "proposalflow.leader-report.supervision-recorded.v1"
    TOPIC = LEADER_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    kind: Literal["meeting", "visit", "instruction", "other"]
    on: date
    text: str = Field(min_length=1, max_length=20_000)


HTTP_ONLY_ACTIONS = (
    "审查立案 (file, refuse, merge or return a proposal): the proposal committee, over intake's HTTP API",
    "交办 (confirm or change a suggested assignment, settle a dispute): the dispatcher, over assignment's HTTP API",
    "办复审查 (approve or return a reply): the proposal committee, over progress's HTTP API",
)
"""The CPPCC office's own steps: done in ProposalFlow's own screens, so they have no command event."""


class AcceptAssignment(Command):
    """签收 sent by a unit's own system: the unit takes on its assignment (topic proposalflow.unit-reports).

    Handled by the assignment service, through the same rules as `POST /assignments/{id}/accept`.
    """

    TYPE = "proposalflow.unit-report.acceptance-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=200, description="The unit that accepts: one of the assignment's.")


class DisputeAssignment(Command):
    """异议 sent by a unit's own system within the dispute window (topic proposalflow.unit-reports).

    Handled by the assignment service, through the same rules as `POST /assignments/{id}/dispute`.
    """

    TYPE = "proposalflow.unit-report.dispute-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=200, description="The unit that disputes: one of the assignment's.")
    reason: str = Field(min_length=5, max_length=2000, description="Why the unit should not handle it, and who should.")


class UpdateMeasure(Command):
    """举措落实 sent by the owner unit's (or the lead unit's) system (topic proposalflow.unit-reports).

    Handled by the progress service, through the same rules as `POST /proposals/{id}/measures/{measure_id}`.
    """

    TYPE = "proposalflow.unit-report.measure-update-submitted.v1"
    TOPIC = UNIT_REPORTS

    proposal_id: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=200, description="The measure's owner unit, or the lead unit.")
    measure_id: str = Field(min_length=1, max_length=100, description="`id` of the measure in `reply.drafted`.")
    status: Literal["planned", "in_progress", "done", "dropped"]
    note: str = Field(default="", max_length=5000, description="How it was done; required to drop a measure.")


# proposalflow.proposals (intake) ------------------------------------------------------------------


class ProposalSubmitted(Event):
    """提案已提交: a proposal entered the system."""

    TYPE = "proposalflow.proposal.submitted.v1"
    TOPIC = PROPOSALS

    title: str
    body: str
    category: str = Field(description=CATEGORY)
    session_kind: SessionKind
    first_proposer: Proposer
    cosigners: list[Proposer] = Field(default_factory=list)
    suggestions: list[Suggestion]
    series_id: str | None = None
    submitted_at: datetime


class ProposalFiled(Event):
    """立案: the committee accepted the proposal for handling and gave it a number."""

    TYPE = "proposalflow.proposal.filed.v1"
    TOPIC = PROPOSALS

    filing_number: str
    title: str
    category: str = Field(description=CATEGORY)
    first_proposer: Proposer
    cosigners: list[Proposer] = Field(default_factory=list)
    suggestion_count: int = Field(ge=1)
    filed_at: datetime
    merged_proposal_ids: list[str] = Field(default_factory=list, description="Proposals merged into this one (并案).")


class ProposalNotFiled(Event):
    """不予立案: refused, with the reason; optionally converted to an opinion (转为意见建议)."""

    TYPE = "proposalflow.proposal.not-filed.v1"
    TOPIC = PROPOSALS

    reason: str
    converted_to_opinion: bool = False
    ground: str | None = Field(default=None, description=NOT_FILED_GROUND)


class ProposalMerged(Event):
    """并案: merged into another proposal.

    The merged proposal's own signers (from its `submitted` event) keep being told about it;
    `into_proposal_id` is where its handling continues.
    """

    TYPE = "proposalflow.proposal.merged.v1"
    TOPIC = PROPOSALS

    into_proposal_id: str
    reason: str = ""
    into_filing_number: str | None = Field(default=None, description="案号 of the proposal merged into, if filed.")
    first_proposer: Proposer | None = None
    cosigners: list[Proposer] = Field(default_factory=list)


class ProposalCosignRequested(Event):
    """联名确认: the cosigners of a joint proposal are asked to confirm by `due` (联名确认期)."""

    TYPE = "proposalflow.proposal.cosign-requested.v1"
    TOPIC = PROPOSALS

    cosigners: list[Proposer]
    due: date
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class ProposalCosigned(Event):
    """附议确认: one cosigner confirmed their signature on a joint proposal."""

    TYPE = "proposalflow.proposal.cosigned.v1"
    TOPIC = PROPOSALS

    cosigner: Proposer
    cosigned_at: datetime


class ProposalReviewStarted(Event):
    """进入审查: a joint proposal's cosign stage ended, or a returned proposal was resubmitted; it
    awaits the committee's review (审查立案). A proposal without cosigners is in review from `submitted`.

    `confirmed_cosigners` are the cosigners who confirmed; the others had not when the window
    closed and are no longer signers.
    """

    TYPE = "proposalflow.proposal.review-started.v1"
    TOPIC = PROPOSALS

    trigger: Literal["all_cosigned", "cosign_window_closed", "resubmitted"]
    confirmed_cosigners: list[Proposer] = Field(default_factory=list)
    unconfirmed_cosigners: list[Proposer] = Field(default_factory=list)


class ProposalReturned(Event):
    """退回修改: returned to its first proposer for revision, with what to change."""

    TYPE = "proposalflow.proposal.returned.v1"
    TOPIC = PROPOSALS

    reason: str


class ProposalResubmitted(Event):
    """修改后重新提交: the revised content of a returned proposal, back in review."""

    TYPE = "proposalflow.proposal.resubmitted.v1"
    TOPIC = PROPOSALS

    title: str
    body: str
    category: str = Field(description=CATEGORY)
    session_kind: SessionKind
    suggestions: list[Suggestion]
    series_id: str | None = None
    resubmitted_at: datetime


class ProposalWithdrawn(Event):
    """撤案: withdrawn by its first proposer before filing."""

    TYPE = "proposalflow.proposal.withdrawn.v1"
    TOPIC = PROPOSALS

    reason: str = ""


class SubmissionRejected(Rejection):
    """A submission command that could not be accepted, and why."""

    TYPE = "proposalflow.submission.rejected.v1"
    TOPIC = PROPOSALS


# proposalflow.assignments (assignment) ------------------------------------------------------------


class AssignmentSuggested(Event):
    """交办建议: the routing the dispatcher is asked to confirm, with its reasons."""

    TYPE = "proposalflow.assignment.suggested.v1"
    TOPIC = ASSIGNMENTS

    form: AssignmentForm
    lead_unit: UnitRef = Field(description=UNIT_REF)
    co_units: list[UnitRef] = Field(default_factory=list, description=UNIT_REF)
    reasons: list[str] = Field(default_factory=list)


class ProposalAssigned(Event):
    """交办: the proposal was assigned to its units, with its deadlines.

    Which unit replies, by form:
    - 单办 (`single`): `lead_unit` replies; `co_units` and `split_units` are empty.
    - 主办+会办 (`lead_co`): `lead_unit` replies once for all; each of `co_units` sends its
      会办意见 to the lead unit by `co_opinion_due`.
    - 分办 (`split`): `lead_unit` and each of `split_units` reply on their own, each by `reply_due`;
      `co_units` is empty and there is no `co_opinion_due`. A consumer that does not know
      `split_units` still sees a correct single assignment of `lead_unit`, never phantom co-units.

    The deadlines are computed once here (policy's `deadline_for` on the working-day calendar);
    consumers read them instead of recomputing.
    """

    TYPE = "proposalflow.assignment.assigned.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    form: AssignmentForm
    lead_unit: UnitRef = Field(description=UNIT_REF)
    co_units: list[UnitRef] = Field(default_factory=list, description=UNIT_REF)
    split_units: list[UnitRef] = Field(
        default_factory=list, description="分办: the other units that each reply. " + UNIT_REF
    )
    reply_due: date
    co_opinion_due: date | None = None
    dispute_until: date
    assigned_at: datetime
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class AssignmentReassigned(Event):
    """改办 (重新交办): the dispatcher assigned the proposal to other units, with recomputed deadlines.

    A new `assignment_id` replaces `previous_assignment_id`; units, forms and deadlines read as in
    `proposalflow.assignment.assigned.v1`, and the deadlines run afresh from `assigned_at`.
    """

    TYPE = "proposalflow.assignment.reassigned.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    previous_assignment_id: str
    form: AssignmentForm
    lead_unit: UnitRef = Field(description=UNIT_REF)
    co_units: list[UnitRef] = Field(default_factory=list, description=UNIT_REF)
    split_units: list[UnitRef] = Field(default_factory=list, description=UNIT_REF)
    reply_due: date
    co_opinion_due: date | None = None
    dispute_until: date
    assigned_at: datetime
    reason: str = ""
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class AssignmentAccepted(Event):
    """签收: a unit accepted its assignment, or was deemed to (`deemed`, actor `system`) when the
    dispute window (异议期) closed without a word from it."""

    TYPE = "proposalflow.assignment.accepted.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    unit: UnitRef = Field(description=UNIT_REF)
    deemed: bool = False


class AssignmentDisputed(Event):
    """异议: a unit disputes its assignment, with a reason, within the dispute window."""

    TYPE = "proposalflow.assignment.disputed.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    unit: UnitRef = Field(description=UNIT_REF)
    reason: str


class AssignmentDisputeUpheld(Event):
    """维持交办: the dispatcher kept the assignment despite the dispute; the disputing units handle it."""

    TYPE = "proposalflow.assignment.dispute-upheld.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    units: list[UnitRef] = Field(description=UNIT_REF)
    note: str = ""


class KeyProposalDesignated(Event):
    """重点提案: designated key, with its supervising (督办) and optional leading (领办) leader."""

    TYPE = "proposalflow.key-proposal.designated.v1"
    TOPIC = ASSIGNMENTS

    supervising_leader: str
    leading_leader: str | None = None
    series_id: str | None = Field(default=None, description="系列提案: set when designated as a series.")


class AssignmentDeadlinesChanged(Event):
    """期限调整: an assignment's deadlines were recomputed after the working-day calendar changed.

    Sent by `proposalflow deadlines recompute` (a newly announced year, 放假安排) for a proposal still
    being handled; `previous_*` are the dates it replaces. The new dates are final unless
    `provisional_calendar` says otherwise.
    """

    TYPE = "proposalflow.assignment.deadlines-changed.v1"
    TOPIC = ASSIGNMENTS

    assignment_id: str
    reply_due: date
    co_opinion_due: date | None = None
    dispute_until: date
    previous_reply_due: date
    previous_co_opinion_due: date | None = None
    previous_dispute_until: date
    reason: str = ""
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class AssignmentReportRejected(Rejection):
    """A unit's 签收 or 异议 command (on proposalflow.unit-reports) that could not be accepted, and why."""

    TYPE = "proposalflow.assignment.unit-report-rejected.v1"
    TOPIC = ASSIGNMENTS


# proposalflow.handling (progress) -----------------------------------------------------------------


class ProgressReported(Event):
    """办理进展: contact with the proposer (面商, phone, written), a meeting (座谈会), research (调研)…"""

    TYPE = "proposalflow.handling.progress-reported.v1"
    TOPIC = HANDLING

    unit: str = Field(description=UNIT_ID)
    kind: str = Field(description=PROGRESS_KIND)
    on: date
    text: str


class CoOpinionSubmitted(Event):
    """会办意见: a co-handling unit's opinion to the lead unit."""

    TYPE = "proposalflow.handling.co-opinion-submitted.v1"
    TOPIC = HANDLING

    unit: str = Field(description=UNIT_ID)
    text: str
    co_opinion_due: date | None = None


class ReplyDrafted(Event):
    """答复: the lead unit's reply, with its class, adoption per suggestion and measures."""

    TYPE = "proposalflow.reply.drafted.v1"
    TOPIC = HANDLING

    reply_id: str
    unit: str = Field(description=UNIT_ID)
    classification: str = Field(description=REPLY_CLASS)
    text: str
    adoptions: list[SuggestionAdoption] = Field(default_factory=list, description=ADOPTIONS_REQUIRED)
    measures: list[Measure] = Field(default_factory=list)
    round: int = Field(default=1, ge=1, description="1 for the first reply, 2 after 重新办理.")
    reply_due: date | None = None


class ReplyApproved(Event):
    """办复审查通过: the committee approved the reply; it goes to the proposers."""

    TYPE = "proposalflow.reply.approved.v1"
    TOPIC = HANDLING

    reply_id: str
    unit: str | None = Field(default=None, description=UNIT_ID)
    approved_at: datetime | None = None
    evaluation_due: date | None = Field(
        default=None, description="评价期 end, once every unit's reply of the round is approved."
    )
    public: bool = Field(default=False, description="Disclosed on the public route (personal data removed).")
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class ReplyReturned(Event):
    """办复审查退回: the committee returned the reply, with the reason."""

    TYPE = "proposalflow.reply.returned.v1"
    TOPIC = HANDLING

    reply_id: str
    reason: str
    unit: str | None = Field(default=None, description=UNIT_ID)


class EvaluationSubmitted(Event):
    """评价: one signer's evaluation of the handling (办理态度) and the result (办理结果)."""

    TYPE = "proposalflow.evaluation.submitted.v1"
    TOPIC = HANDLING

    signer_id: str
    handling_grade: str = Field(description="办理态度: " + EVALUATION_GRADE)
    result_grade: str = Field(description="办理结果: " + EVALUATION_GRADE)
    comment: str = ""
    round: int = Field(default=1, ge=1)


class RehandlingStarted(Event):
    """重新办理: an unsatisfied first proposer sent the proposal back, with a new deadline."""

    TYPE = "proposalflow.handling.rehandling-started.v1"
    TOPIC = HANDLING

    reply_due: date
    round: int = Field(default=2, ge=2)
    reason: str = ""
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class ProposalClosed(Event):
    """办结: all evaluations in, or the evaluation window closed."""

    TYPE = "proposalflow.proposal.closed.v1"
    TOPIC = HANDLING

    closed_at: datetime
    reason: Literal["all_evaluated", "evaluation_window_closed", ""] = ""


class MeasureUpdated(Event):
    """举措落实: a measure's status changed (planned / in progress / done / dropped)."""

    TYPE = "proposalflow.measure.updated.v1"
    TOPIC = HANDLING

    measure_id: str
    status: Literal["planned", "in_progress", "done", "dropped"] = Field(description=MEASURE_STATUS)
    note: str = ""
    owner_unit: str | None = Field(default=None, description=UNIT_ID)


class ProposalImplemented(Event):
    """落实: every measure the replies committed to is done (or dropped with a reason) after 办结."""

    TYPE = "proposalflow.proposal.implemented.v1"
    TOPIC = HANDLING

    implemented_at: datetime
    measures_done: int = Field(ge=0)
    measures_dropped: int = Field(ge=0)


class SupervisionRecorded(Event):
    """督办: a leader's supervision action on a key proposal."""

    TYPE = "proposalflow.supervision.recorded.v1"
    TOPIC = HANDLING

    leader_id: str
    kind: Literal["meeting", "visit", "instruction", "other"] = Field(description=SUPERVISION_KIND)
    on: date
    text: str


class DeadlineApproaching(Event):
    """到期预警: a deadline is near (deterministic id per proposal, unit, kind and due date).

    `kind` is reply, co_opinion, evaluation or measure; `signer_id` names the signer for an
    evaluation, `measure_id` the measure. `supervising_leader` is the 督办领导 of a key proposal as
    the writer knew it when the deadline fell due: readers tell that leader without having to have
    seen the designation first (it travels on another topic).
    """

    TYPE = "proposalflow.deadline.approaching.v1"
    TOPIC = HANDLING

    unit: str = Field(description=UNIT_ID)
    kind: str = Field(description=DEADLINE_KIND)
    due: date
    signer_id: str | None = None
    measure_id: str | None = None
    supervising_leader: str | None = None


class DeadlineOverdue(Event):
    """逾期: a deadline passed without the step being done (same fields as 到期预警)."""

    TYPE = "proposalflow.deadline.overdue.v1"
    TOPIC = HANDLING

    unit: str = Field(description=UNIT_ID)
    kind: str = Field(description=DEADLINE_KIND)
    due: date
    signer_id: str | None = None
    measure_id: str | None = None
    supervising_leader: str | None = None


class HandlingDeadlineChanged(Event):
    """期限调整: a deadline progress owns was recomputed after the working-day calendar changed.

    `kind` is `reply` (the 重新办理 reply deadline of `round`) or `evaluation` (评价期); `due`
    replaces `previous_due`. Sent by `proposalflow deadlines recompute` for open proposals only.
    """

    TYPE = "proposalflow.handling.deadline-changed.v1"
    TOPIC = HANDLING

    kind: Literal["reply", "evaluation"]
    round: int = Field(ge=1)
    due: date
    previous_due: date
    reason: str = ""
    provisional_calendar: bool = Field(default=False, description=PROVISIONAL_CALENDAR)


class UnitReportRejected(Rejection):
    """A unit report command that could not be accepted, and why."""

    TYPE = "proposalflow.unit-report.rejected.v1"
    TOPIC = HANDLING


# 落实评价 (progress): the proposers judge what was implemented -----------------------------------


class ImplementationEvaluationOpened(Event):
    """落实评价开始: every measure is settled (落实); the signers evaluate what was implemented by
    `evaluation_due` (the policy's implementation_evaluation_window, in working days)."""

    TYPE = "proposalflow.implementation.evaluation-opened.v1"
    TOPIC = HANDLING

    round: int = Field(ge=1, description="1 for the first 落实评价, 2 after measures were reopened, …")
    evaluation_due: date
    signers: list[str] = Field(default_factory=list, description="Who is asked to evaluate (every signer).")
    last_round: bool = Field(
        default=False, description="No reopening after this round (policy implementation_evaluation_rounds)."
    )


class ImplementationEvaluated(Event):
    """落实评价: one signer's grade on what was implemented, with an optional comment.

    An unsatisfied first proposer (领衔提案者) names the measures to reopen (`reopened_measures`) or asks
    the lead unit for a new measure (`new_measure_requested`), unless this is the policy's last round.
    `supervising_leader` is the 督办领导 of a key proposal, told when the implementation is judged
    unsatisfied."""

    TYPE = "proposalflow.implementation.evaluated.v1"
    TOPIC = HANDLING

    signer_id: str
    grade: str
    comment: str = ""
    round: int = Field(default=1, ge=1)
    satisfied: bool = Field(description="Whether the grade counts as satisfied in the policy (满意, 基本满意).")
    reopened_measures: list[str] = Field(default_factory=list)
    new_measure_requested: bool = False
    supervising_leader: str | None = None


class ImplementationEvaluationClosed(Event):
    """落实评价结束: every signer evaluated, or the window closed (the round's result is final)."""

    TYPE = "proposalflow.implementation.evaluation-closed.v1"
    TOPIC = HANDLING

    round: int = Field(ge=1)
    reason: Literal["all_evaluated", "evaluation_window_closed"]
    evaluations: int = Field(ge=0)
    satisfied: int = Field(ge=0, description="Evaluations of the round whose grade counts as satisfied.")


class MeasureReopened(Event):
    """举措重新落实: an unsatisfied 落实评价 reopened a settled measure; its owner `unit` works on it again
    by `due`, supervised by `supervising_leader` for a key proposal."""

    TYPE = "proposalflow.measure.reopened.v1"
    TOPIC = HANDLING

    measure_id: str
    unit: str = Field(description="The measure's owner unit.")
    due: date
    round: int = Field(ge=1, description="The 落实评价 round that reopened it.")
    reason: str = ""
    supervising_leader: str | None = None


class MeasureRequested(Event):
    """新举措: an unsatisfied 落实评价 asked the lead `unit` for a new measure by `due`."""

    TYPE = "proposalflow.measure.requested.v1"
    TOPIC = HANDLING

    unit: str
    due: date
    round: int = Field(ge=1)
    reason: str = ""
    supervising_leader: str | None = None


class MeasureAdded(Event):
    """新举措: the lead unit committed to a new measure after an unsatisfied 落实评价."""

    TYPE = "proposalflow.measure.added.v1"
    TOPIC = HANDLING

    measure: Measure
    unit: str


class EvaluationRejected(Rejection):
    """An evaluation command (评价, from a member platform) that could not be accepted, and why."""

    TYPE = "proposalflow.evaluation.rejected.v1"
    TOPIC = HANDLING


class LeaderReportRejected(Rejection):
    """A leader's office command (督办) that could not be accepted, and why."""

    TYPE = "proposalflow.leader-report.rejected.v1"
    TOPIC = HANDLING


# proposalflow.notifications (notify) --------------------------------------------------------------


class NotificationDelivered(Event):
    """A notification reached its recipient on a channel."""

    TYPE = "proposalflow.notification.delivered.v1"
    TOPIC = NOTIFICATIONS

    notification_id: str
    recipient: str
    channel: Literal["inbox", "webhook", "email", "sms"]
    cause_event_id: str
    cause_event_type: str
    attempts: int | None = Field(default=None, ge=1, description="How many sends it took (1 for the inbox).")


class NotificationFailed(Event):
    """A notification could not be delivered after its last retry."""

    TYPE = "proposalflow.notification.failed.v1"
    TOPIC = NOTIFICATIONS

    notification_id: str
    recipient: str
    channel: Literal["inbox", "webhook", "email", "sms"]
    cause_event_id: str
    cause_event_type: str
    error: str
    attempts: int | None = Field(default=None, ge=1, description="How many sends were tried before giving up.")


class NotificationAttemptFailed(Event):
    """One send of a notification failed; another is planned at `retry_at`.

    The last failure is `notification.failed`: integrators and the ops team see every attempt's
    outcome as it happens, and `failed` stays final."""

    TYPE = "proposalflow.notification.attempt-failed.v1"
    TOPIC = NOTIFICATIONS

    notification_id: str
    recipient: str
    channel: Literal["inbox", "webhook", "email", "sms"]
    cause_event_id: str
    cause_event_type: str
    error: str
    attempts: int = Field(ge=1, description="How many sends have been tried so far.")
    retry_at: datetime = Field(description="When the next send is due (after quiet hours, for SMS).")


def messages_on(topic: str) -> list[type[Message]]:
    """The event and command types that travel on one topic."""
    return [cls for cls in Message.registry().values() if cls.TOPIC == topic]


_REGISTRY: dict[str, type[Message]] | None = None


def message_class(ce_type: str) -> type[Message] | None:
    """The model of a CloudEvents type, or None for a type this version does not know."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Message.registry()
    return _REGISTRY.get(ce_type)


def parse_message(ce_type: str, data: dict[str, Any]) -> Message | None:
    """Validate the data of a known type (raises pydantic's ValidationError); None if unknown."""
    cls = message_class(ce_type)
    return None if cls is None else cls.model_validate(data)
