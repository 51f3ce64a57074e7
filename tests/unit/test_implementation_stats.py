"""落实率, 举措按期完成率 and 落实满意率 for a small made-up year, computed by hand and compared with the
service's figures (the proposals go through progress's own use cases on the in-memory unit of work).

Today is 2027-01-15. Signers m-1 (first proposer) and m-2. Units: zrzyj (U1), czj (U2).

| id   | year | category | unit | measures (due) and what happened                                                 |
|------|------|----------|------|----------------------------------------------------------------------------------|
| p-01 | 2026 | 经济建设 | U1   | M1 (08-31) done 08-20; M2 (10-31) done 11-10, late → 落实 → m-1 不满意, reopens   |
|      |      |          |      | M2 (new due 12-14) → done 12-01 → 落实 again → round 2: 满意 + 基本满意             |
| p-02 | 2026 | 社会建设 | U2   | M3 (2026-07-31) never done, overdue; M4 (2027-03-31) not due yet; not 落实         |
| p-03 | 2026 | 经济建设 | U1   | M5 (09-30) done 09-01; M6 (09-30) dropped → 落实 → m-1 满意, m-2 不满意 (recorded) |
| p-04 | 2026 | 经济建设 | U1   | no measures                                                                      |
| p-05 | 2025 | 社会建设 | U1   | M7 (2025-12-31) done 2025-12-20 → 落实 → 满意 + 满意                              |
"""

from __future__ import annotations

from datetime import date

import pytest

from services.progress import service
from services.progress.domain import (
    Dossier,
    DraftReply,
    EvaluateImplementation,
    MeasureStatus,
    ReviewReply,
    UpdateMeasure,
)
from services.progress.stats import statistics
from services.progress.stats_schema import Figures
from shared.events import Actor, MeasurePlan, ReplyContent, Role, SuggestionAdoption
from shared.statistics import RATE_DEFINITIONS
from tests.progress_fakes import FakeUnitOfWork
from tests.progress_fixtures import COMMITTEE, lifecycle
from tests.unit.test_progress_stats import FIRST, POLICY, SECOND, at, by, evaluate, feed

TODAY = date(2027, 1, 15)
U1, U2 = "dg-zrzyj", "dg-czj"
IMPLEMENTATION_RATES = ("implementation_rate", "measure_on_time_rate", "implementation_satisfaction_rate")


async def answered(uow: FakeUnitOfWork, pid: str, unit: str, day: str, measures: list[tuple[str, date]]) -> list[str]:
    """The unit's reply with its measures, approved the same day, and both signers satisfied: 办结."""
    content = ReplyContent(
        text="答复全文, 逐条说明建议的采纳情况。",
        classification="B",
        adoptions=[SuggestionAdoption(number=n, adopted=True) for n in (1, 2)],
        measures=[MeasurePlan(text=text, owner_unit=unit, due=due) for text, due in measures],
    )
    actor = Actor(id=f"u-{unit}", role=Role.UNIT, unit=unit)
    drafted = DraftReply(pid, unit, content)
    await service.carry_out(uow, drafted, by(actor, at(day)))
    await service.carry_out(uow, ReviewReply(pid, drafted.reply_id, approve=True), by(COMMITTEE, at(day)))
    reply_id = drafted.reply_id
    for signer in (FIRST, SECOND):
        await evaluate(uow, pid, signer, "satisfied", day)
    return [f"{reply_id}-m{n}" for n in range(1, len(measures) + 1)]


async def settle(uow: FakeUnitOfWork, pid: str, unit: str, measure_id: str, day: str, status: str = "done") -> None:
    note = "已完成" if status == "done" else "已并入前项"
    step = UpdateMeasure(pid, measure_id, unit, MeasureStatus(status), note)
    await service.carry_out(uow, step, by(Actor(id=f"u-{unit}", role=Role.UNIT, unit=unit), at(day)))


async def judge(uow: FakeUnitOfWork, pid: str, signer: Actor, grade: str, day: str, reopen: list[str] = []) -> None:  # noqa: B006
    await service.carry_out(uow, EvaluateImplementation(pid, grade, reopen=reopen), by(signer, at(day)))


async def made_up_year() -> list[Dossier]:
    uow = FakeUnitOfWork()
    spring = at("2026-03-02")
    await feed(uow, lifecycle("p-0001", lead=U1, co=(), submitted=spring))
    m1, m2 = await answered(
        uow, "p-0001", U1, "2026-05-10", [("编制规划", date(2026, 8, 31)), ("设立资金", date(2026, 10, 31))]
    )
    await settle(uow, "p-0001", U1, m1, "2026-08-20")
    await settle(uow, "p-0001", U1, m2, "2026-11-10")
    await judge(uow, "p-0001", FIRST, "unsatisfied", "2026-11-12", reopen=[m2])
    reopened = next(m for m in uow.dossier("p-0001").measures if m.id == m2)
    # 1 month from 11-12 is Saturday 12-12: the next working day.
    assert (reopened.status, reopened.due) == ("in_progress", date(2026, 12, 14))
    await settle(uow, "p-0001", U1, m2, "2026-12-01")
    await judge(uow, "p-0001", FIRST, "satisfied", "2026-12-02")
    await judge(uow, "p-0001", SECOND, "basically_satisfied", "2026-12-02")

    await feed(uow, lifecycle("p-0002", category="社会建设", lead=U2, co=(), submitted=spring))
    await answered(uow, "p-0002", U2, "2026-05-15", [("试点", date(2026, 7, 31)), ("推广", date(2027, 3, 31))])

    await feed(uow, lifecycle("p-0003", lead=U1, co=(), submitted=spring))
    m5, m6 = await answered(uow, "p-0003", U1, "2026-05-20", [("甲", date(2026, 9, 30)), ("乙", date(2026, 9, 30))])
    await settle(uow, "p-0003", U1, m5, "2026-09-01")
    await settle(uow, "p-0003", U1, m6, "2026-09-02", status="dropped")
    await judge(uow, "p-0003", FIRST, "satisfied", "2026-09-03")
    await judge(uow, "p-0003", SECOND, "unsatisfied", "2026-09-03")  # a cosigner: recorded, reopens nothing

    await feed(uow, lifecycle("p-0004", lead=U1, co=(), submitted=spring))
    await answered(uow, "p-0004", U1, "2026-05-25", [])

    await feed(
        uow,
        lifecycle(
            "p-0005", category="社会建设", lead=U1, co=(), submitted=at("2025-03-03"), reply_due=date(2025, 6, 3)
        ),
    )
    [m7] = await answered(uow, "p-0005", U1, "2025-05-10", [("整治", date(2025, 12, 31))])
    await settle(uow, "p-0005", U1, m7, "2025-12-20")
    await judge(uow, "p-0005", FIRST, "satisfied", "2025-12-22")
    await judge(uow, "p-0005", SECOND, "satisfied", "2025-12-22")

    implemented = {d.id: d.proposal.implemented_at is not None for d in uow.stored.values()}
    assert implemented == {"p-0001": True, "p-0002": False, "p-0003": True, "p-0004": False, "p-0005": True}
    return list(uow.stored.values())


def rates(
    implementation: tuple[int, int], on_time: tuple[int, int], satisfied: tuple[int, int]
) -> dict[str, float | None]:
    pairs = (implementation, on_time, satisfied)
    return {
        name: round(part / whole, 4) if whole else None
        for name, (part, whole) in zip(IMPLEMENTATION_RATES, pairs, strict=True)
    }


def rates_of(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {name: figures[name] for name in IMPLEMENTATION_RATES}


@pytest.fixture(scope="module")
async def year() -> list[Dossier]:
    return await made_up_year()


async def test_the_implementation_figures_of_each_year_match_the_hand_computed_ones(year: list[Dossier]) -> None:
    figures = statistics(year, TODAY, POLICY)
    # 2026. 落实率: p-01, p-03 of the closed ones with measures p-01, p-02, p-03 (p-04 has none) = 2/3.
    # 举措按期: M1 ✓, M2 ✓ (done 12-01 by its new due 12-14), M3 ✗ (overdue), M5 ✓; M4 not due, M6 dropped = 3/4.
    # 落实满意率: p-01 round 1 不满意, round 2 满意 + 基本满意; p-03 满意 + 不满意 = 3/5.
    assert rates_of(figures["per_year"]["2026"]) == rates((2, 3), (3, 4), (3, 5))
    assert rates_of(figures["per_year"]["2025"]) == rates((1, 1), (1, 1), (2, 2))
    assert rates_of(figures["overall"]) == rates((3, 4), (4, 5), (5, 7))
    overall = figures["overall"]
    assert (overall["implemented_proposals"], overall["closed_with_measures"]) == (3, 4)
    assert (overall["measures_on_time"], overall["measures_due"]) == (4, 5)
    assert (overall["implementation_satisfied"], overall["implementation_evaluations"]) == (5, 7)


async def test_the_implementation_figures_by_unit_and_category(year: list[Dossier]) -> None:
    figures = statistics(year, TODAY, POLICY)
    # U1: p-01, p-03, p-04, p-05; its measures M1, M2, M5, M7 (M6 dropped).
    assert rates_of(figures["per_unit"][U1]) == rates((3, 3), (4, 4), (5, 7))
    # U2: p-02 only; M3 overdue, M4 not due; nobody evaluated an implementation.
    assert rates_of(figures["per_unit"][U2]) == rates((0, 1), (0, 1), (0, 0))
    # 经济建设: p-01, p-03, p-04. 社会建设: p-02, p-05.
    assert rates_of(figures["per_category"]["经济建设"]) == rates((2, 2), (3, 3), (3, 5))
    assert rates_of(figures["per_category"]["社会建设"]) == rates((1, 2), (1, 2), (2, 2))


def test_each_implementation_figure_has_one_definition_in_the_docs_and_the_api_schema() -> None:
    from pathlib import Path

    written = (Path(__file__).parents[2] / "docs" / "statistics.md").read_text(encoding="utf-8")
    properties = Figures.model_json_schema()["properties"]
    for name in IMPLEMENTATION_RATES:
        assert RATE_DEFINITIONS[name] in written, f"docs/statistics.md lacks the definition of {name}"
        assert properties[name]["description"] == RATE_DEFINITIONS[name]


async def test_a_measure_due_next_year_is_carried_over_into_that_years_figures(year: list[Dossier]) -> None:
    per_year = statistics(year, TODAY, POLICY)["per_year"]
    # 跨年度落实: p-02's M4 (2026 proposal, due 2027-03-31) is the one measure due after its proposal's year.
    assert (per_year["2026"]["carried_over_measures"], per_year["2026"]["carried_over_done"]) == (1, 0)
    assert (per_year["2027"]["carried_in_measures"], per_year["2027"]["carried_in_done"]) == (1, 0)
    assert per_year["2027"]["filed"] == 0  # no 2027 proposal yet: the year is there for what it carries
    assert (per_year["2025"]["carried_over_measures"], per_year["2025"]["carried_in_measures"]) == (0, 0)
    assert per_year["2026"]["carried_in_measures"] == 0
