"""办理统计 for a small made-up year, computed by hand and compared with the service's figures.

Every proposal goes through progress's own use cases on the in-memory unit of work, so the dossiers the
statistics read are the ones the service would hold. Today is 2026-09-01; every reply is due 2026-06-03
unless said otherwise. Units: zrzyj (U1), czj (U2), nyj (U3), jtj (U4).

| id   | year | category | what happened                                                                        |
|------|------|----------|--------------------------------------------------------------------------------------|
| p-01 | 2026 | 经济建设 | U1 replies 05-10 (A, adopts 1 and 2); both signers 满意; closed                       |
| p-02 | 2026 | 经济建设 | U1 replies 05-20 (C, adopts none); first proposer 不满意 → 重新办理 (round 2);        |
|      |      |          | U1 replies 07-10, late (B, adopts 1); 满意 + 基本满意; closed                         |
| p-03 | 2026 | 社会建设 | 分办 U2 + U3: U2 05-15 (A, adopts 1), U3 06-10 late (C, adopts 2); 基本满意 + 不满意  |
| p-04 | 2026 | 经济建设 | assigned to U1, 改办 to U4 (due 06-22); never answered                                  |
| p-05 | 2026 | 社会建设 | U2, due 10-15: not due yet, no reply                                                  |
| p-06 | 2026 | 经济建设 | U2 drafts 06-01 (on time), still in 办复审查                                          |
| p-07 | 2026 | 经济建设 | U3 drafts 05-25, returned; redrafts 06-08 (late), still in 办复审查                  |
| p-08 | 2026 | 经济建设 | withdrawn (撤案)                                                                       |
| p-09 | 2026 | 社会建设 | not filed (不予立案)                                                                   |
| p-10 | 2026 | 经济建设 | merged (并案) into p-01                                                                 |
| p-11 | 2026 | 经济建设 | still in review (审查中)                                                                |
| p-12 | 2025 | 社会建设 | U1 replies 2025-05-10 (A, adopts 1); both 满意; closed                                 |
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from services.progress import service
from services.progress.domain import Dossier, DraftReply, Evaluate, Occasion, ReviewReply, Stage
from services.progress.stats import statistics
from services.progress.stats_schema import Figures
from shared.events import (
    Actor,
    AssignmentForm,
    AssignmentReassigned,
    Event,
    ProposalMerged,
    ProposalNotFiled,
    ProposalWithdrawn,
    ReplyContent,
    Role,
    SuggestionAdoption,
    UnitRef,
)
from shared.outbox import envelope_for
from shared.policy import Policy, StatisticsRules, WorkingCalendar, default_policy
from shared.statistics import RATE_DEFINITIONS
from tests.progress_fakes import FakeUnitOfWork
from tests.progress_fixtures import COMMITTEE, DISPATCHER, lifecycle

POLICY = default_policy()
CALENDAR = WorkingCalendar.from_policy(POLICY)
TODAY = date(2026, 9, 1)
U1, U2, U3, U4 = "dg-zrzyj", "dg-czj", "dg-nyj", "dg-jtj"
FIRST, SECOND = Actor(id="m-1", role=Role.MEMBER), Actor(id="m-2", role=Role.MEMBER)


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T02:00:00+00:00")


def by(actor: Actor, now: datetime) -> Occasion:
    """The occasion of a step `actor` takes at `now`, under the default policy."""
    return Occasion(actor, None, now, POLICY, CALENDAR)


async def feed(uow: FakeUnitOfWork, events: list[Event]) -> None:
    for event in events:
        await service.record(uow, envelope_for(event, "intake"), event)


async def reply(
    uow: FakeUnitOfWork, proposal_id: str, unit: str, day: str, cls: str, adopted: set[int], review: str | None
) -> str:
    """A unit drafts a reply on `day`; the committee approves or returns it the same
    day (review None: still in 办复审查)."""
    content = ReplyContent(
        text="答复全文, 逐条说明建议的采纳情况。",
        classification=cls,
        adoptions=[SuggestionAdoption(number=n, adopted=n in adopted) for n in (1, 2)],
    )
    actor = Actor(id=f"u-{unit}", role=Role.UNIT, unit=unit)
    drafted = DraftReply(proposal_id, unit, content)
    await service.carry_out(uow, drafted, by(actor, at(day)))
    if review is not None:
        reason = None if review == "approve" else "请补充具体措施"
        reviewed = ReviewReply(proposal_id, drafted.reply_id, approve=review == "approve", reason=reason)
        await service.carry_out(uow, reviewed, by(COMMITTEE, at(day).replace(hour=8)))
    return drafted.reply_id


async def evaluate(uow: FakeUnitOfWork, proposal_id: str, signer: Actor, grade: str, day: str) -> None:
    await service.carry_out(
        uow, Evaluate(proposal_id, handling_grade="satisfied", result_grade=grade), by(signer, at(day))
    )


async def made_up_year() -> list[Dossier]:
    uow = FakeUnitOfWork()
    spring = at("2026-03-02")
    await feed(uow, lifecycle("p-0001", lead=U1, co=(), submitted=spring))
    await reply(uow, "p-0001", U1, "2026-05-10", "A", {1, 2}, "approve")
    await evaluate(uow, "p-0001", FIRST, "satisfied", "2026-05-12")
    await evaluate(uow, "p-0001", SECOND, "satisfied", "2026-05-12")

    await feed(uow, lifecycle("p-0002", lead=U1, co=(), submitted=spring))
    await reply(uow, "p-0002", U1, "2026-05-20", "C", set(), "approve")
    await evaluate(uow, "p-0002", FIRST, "unsatisfied", "2026-05-22")  # 重新办理, due 1 month later
    assert uow.dossier("p-0002").round == 2
    await reply(uow, "p-0002", U1, "2026-07-10", "B", {1}, "approve")
    await evaluate(uow, "p-0002", FIRST, "satisfied", "2026-07-13")
    await evaluate(uow, "p-0002", SECOND, "basically_satisfied", "2026-07-13")

    await feed(
        uow, lifecycle("p-0003", category="社会建设", form=AssignmentForm.SPLIT, lead=U2, co=(U3,), submitted=spring)
    )
    await reply(uow, "p-0003", U2, "2026-05-15", "A", {1}, "approve")
    await reply(uow, "p-0003", U3, "2026-06-10", "C", {2}, "approve")
    await evaluate(uow, "p-0003", FIRST, "basically_satisfied", "2026-06-11")
    await evaluate(uow, "p-0003", SECOND, "unsatisfied", "2026-06-11")  # not the first proposer: no rehandling

    await feed(uow, lifecycle("p-0004", lead=U1, co=(), submitted=spring))
    await feed(
        uow,
        [
            AssignmentReassigned(
                proposal_id="p-0004",
                actor=DISPATCHER,
                assignment_id="a-p-0004-2",
                previous_assignment_id="a-p-0004",
                form=AssignmentForm.SINGLE,
                lead_unit=UnitRef(id=U4, name=U4),
                reply_due=date(2026, 6, 22),
                dispute_until=date(2026, 3, 27),
                assigned_at=at("2026-03-20"),
                reason="职能调整",
            )
        ],
    )

    await feed(uow, lifecycle("p-0005", category="社会建设", lead=U2, co=(), reply_due=date(2026, 10, 15)))

    await feed(uow, lifecycle("p-0006", lead=U2, co=(), submitted=spring))
    await reply(uow, "p-0006", U2, "2026-06-01", "A", {1, 2}, None)

    await feed(uow, lifecycle("p-0007", lead=U3, co=(), submitted=spring))
    await reply(uow, "p-0007", U3, "2026-05-25", "A", {1, 2}, "return")
    await reply(uow, "p-0007", U3, "2026-06-08", "A", {1, 2}, None)

    await feed(uow, lifecycle("p-0008", filed=False, submitted=spring))
    await feed(uow, [ProposalWithdrawn(proposal_id="p-0008", actor=FIRST, reason="另行反映")])
    await feed(uow, lifecycle("p-0009", category="社会建设", filed=False, submitted=spring))
    await feed(uow, [ProposalNotFiled(proposal_id="p-0009", actor=COMMITTEE, reason="属于个人诉求")])
    await feed(uow, lifecycle("p-0010", filed=False, submitted=spring))
    await feed(uow, [ProposalMerged(proposal_id="p-0010", actor=COMMITTEE, into_proposal_id="p-0001")])
    await feed(uow, lifecycle("p-0011", filed=False, submitted=spring))

    await feed(
        uow,
        lifecycle(
            "p-0012", category="社会建设", lead=U1, co=(), submitted=at("2025-03-03"), reply_due=date(2025, 6, 3)
        ),
    )
    await reply(uow, "p-0012", U1, "2025-05-10", "A", {1}, "approve")
    await evaluate(uow, "p-0012", FIRST, "satisfied", "2025-05-12")
    await evaluate(uow, "p-0012", SECOND, "satisfied", "2025-05-12")

    stages = {d.id: d.stage for d in uow.stored.values()}
    assert stages == {
        "p-0001": Stage.CLOSED,
        "p-0002": Stage.CLOSED,
        "p-0003": Stage.CLOSED,
        "p-0004": Stage.ASSIGNED,
        "p-0005": Stage.ASSIGNED,
        "p-0006": Stage.REPLY_REVIEW,
        "p-0007": Stage.REPLY_REVIEW,
        "p-0008": Stage.WITHDRAWN,
        "p-0009": Stage.NOT_FILED,
        "p-0010": Stage.MERGED,
        "p-0011": Stage.SUBMITTED,
        "p-0012": Stage.CLOSED,
    }
    return list(uow.stored.values())


RATES = (
    "filing_rate",
    "on_time_reply_rate",
    "closing_rate",
    "satisfaction_rate",
    "evaluation_satisfaction_rate",
    "suggestion_adoption_rate",
    "adopted_class_rate",
    "first_class_rate",
)


def rates(
    filing: tuple[int, int],
    on_time: tuple[int, int],
    closing: tuple[int, int],
    per_proposal: tuple[int, int],
    per_evaluation: tuple[int, int],
    adoption: tuple[int, int],
    adopted_class: tuple[int, int],
    first_class: tuple[int, int],
) -> dict[str, float | None]:
    """The hand-computed (numerator, denominator) pairs, as the rates the service rounds to 4 places."""
    pairs = (filing, on_time, closing, per_proposal, per_evaluation, adoption, adopted_class, first_class)
    return {name: round(part / whole, 4) if whole else None for name, (part, whole) in zip(RATES, pairs, strict=True)}


def rates_of(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {name: figures[name] for name in RATES}


@pytest.fixture(scope="module")
async def year() -> list[Dossier]:
    return await made_up_year()


async def test_every_rate_of_the_year_matches_the_hand_computed_figures(year: list[Dossier]) -> None:
    figures = statistics(year, TODAY, POLICY)
    # 2026. 立案率: p-01..07 filed + p-10 merged (accepted) of those + p-09 (not filed); p-08 withdrawn and
    # p-11 in review left out = 8/9.
    # 按期办复率: due and counted: p-01 ✓, p-02 round 1 ✓, round 2 ✗ (late), p-03 U2 ✓, U3 ✗ (late), p-04 U4 ✗
    # (never answered), p-07 ✗ (redraft late, in review); p-05 not due, p-06 sent on time and in review = 3/7.
    # 办结率: p-01, 02, 03 of p-01..07 = 3/7. 满意率 按件: p-01 ✓, p-02 ✓ (round 2), p-03 ✗ = 2/3;
    # 按份: 2 + (1 of round 1's one + 2) + 1 of 2 = 5/7. 采纳率: p-01 2/2, p-02 1/2 (round 2 wins),
    # p-03 2/2 (分办: 1 by U2, 2 by U3) = 5/6. Final answers: p-01 A, p-02 B, p-03 A and C: A or B 3/4, A 2/4.
    assert rates_of(figures["per_year"]["2026"]) == rates(
        (8, 9), (3, 7), (3, 7), (2, 3), (5, 7), (5, 6), (3, 4), (2, 4)
    )
    assert rates_of(figures["per_year"]["2025"]) == rates(
        (1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (1, 2), (1, 1), (1, 1)
    )
    assert rates_of(figures["overall"]) == rates((9, 10), (4, 8), (4, 8), (3, 4), (7, 9), (6, 8), (4, 5), (3, 5))
    assert (figures["overall"]["submitted"], figures["overall"]["in_review"]) == (11, 1)  # all but p-08


async def test_rates_by_category_match_the_hand_computed_figures(year: list[Dossier]) -> None:
    figures = statistics(year, TODAY, POLICY)["per_category"]
    # 社会建设: p-03, p-05, p-09 (not filed), p-12. On time: p-03 U2 ✓, U3 ✗, p-12 ✓ (p-05 not due).
    assert rates_of(figures["社会建设"]) == rates((3, 4), (2, 3), (2, 3), (1, 2), (3, 4), (3, 4), (2, 3), (2, 3))
    # 经济建设: p-01, 02, 04, 06, 07 filed, p-10 merged; p-08 withdrawn, p-11 in review left out.
    # On time: p-01 ✓, p-02 ✓ ✗, p-04 ✗, p-07 ✗. Final answers: p-01 A, p-02 B.
    assert rates_of(figures["经济建设"]) == rates((6, 6), (2, 5), (2, 5), (2, 2), (4, 5), (3, 4), (2, 2), (1, 2))


async def test_rates_by_unit_follow_the_unit_and_count_only_its_own_replies(year: list[Dossier]) -> None:
    figures = statistics(year, TODAY, POLICY)["per_unit"]
    assert set(figures) == {U1, U2, U3, U4}
    # U1: p-01, p-02, p-12 (p-04 moved to U4 by 改办). On time: p-01 ✓, p-02 ✓ ✗, p-12 ✓.
    assert rates_of(figures[U1]) == rates((3, 3), (3, 4), (3, 3), (3, 3), (6, 7), (4, 6), (3, 3), (2, 3))
    assert figures[U1]["filed"] == 3
    # U4: p-04 only, never answered: its overdue reply is U4's, not U1's.
    assert rates_of(figures[U4]) == rates((1, 1), (0, 1), (0, 1), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0))
    # U2: p-03 (its own reply: A, adopts 1), p-05 (not due), p-06 (in review, sent on time).
    # 满意率 is the proposal's: p-03 not satisfied; 按份 1 of 2.
    assert rates_of(figures[U2]) == rates((3, 3), (1, 1), (1, 3), (0, 1), (1, 2), (1, 2), (1, 1), (1, 1))
    # U3: p-03 (its own reply: C, late, adopts 2), p-07 (late redraft in review).
    assert rates_of(figures[U3]) == rates((2, 2), (0, 2), (1, 2), (0, 1), (1, 2), (1, 2), (0, 1), (0, 1))


async def test_merged_proposals_count_as_the_policy_says(year: list[Dossier]) -> None:
    def filing_2026(policy: Policy) -> float | None:
        figures: dict[str, float | None] = statistics(year, TODAY, policy)["per_year"]["2026"]
        return figures["filing_rate"]

    assert filing_2026(POLICY) == round(8 / 9, 4)
    assert filing_2026(POLICY.model_copy(update={"statistics": StatisticsRules(merged_proposals="excluded")})) == 0.875
    assert filing_2026(
        POLICY.model_copy(update={"statistics": StatisticsRules(merged_proposals="not_accepted")})
    ) == round(7 / 9, 4)


async def test_two_on_time_one_late_one_never_answered_is_one_half() -> None:
    uow = FakeUnitOfWork()
    for n, (day, review) in enumerate(
        [("2026-05-10", "approve"), ("2026-05-11", "approve"), ("2026-06-20", "approve")]
    ):
        await feed(uow, lifecycle(f"p-010{n}", lead=U1, co=()))
        await reply(uow, f"p-010{n}", U1, day, "A", {1}, review)
    await feed(uow, lifecycle("p-0109", lead=U1, co=()))
    figures = statistics(list(uow.stored.values()), TODAY, POLICY)["overall"]
    assert (figures["replies_on_time"], figures["replies_due"], figures["on_time_reply_rate"]) == (2, 4, 0.5)


def test_every_rate_has_one_definition_in_the_docs_and_the_api_schema() -> None:
    written = (Path(__file__).parents[2] / "docs" / "statistics.md").read_text(encoding="utf-8")
    properties = Figures.model_json_schema()["properties"]
    for name, definition in RATE_DEFINITIONS.items():
        assert definition in written, f"docs/statistics.md lacks the definition of {name}"
        assert properties[name]["description"] == definition
    implementation = {"implementation_rate", "measure_on_time_rate", "implementation_satisfaction_rate"}
    assert set(RATE_DEFINITIONS) == set(RATES) | implementation  # 落实's: tests/unit/test_implementation_stats.py
