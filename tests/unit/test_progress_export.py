"""统计导出: the CSV and XLSX a proposal office hands on carry the statistics' numbers, and the 明细 behind
each figure counts exactly to it.

The made-up year is the hand-computed one of test_progress_stats.py (its table says what happened to each
proposal); the HTTP test compares the files with `GET /stats` on SQLite.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from services.progress import export
from services.progress.app import build
from services.progress.domain import Dossier
from services.progress.stats import statistics
from shared import statistics_export as files
from shared.migrate import upgrade_async
from shared.statistics import RATE_DEFINITIONS
from shared.statistics_export import Codes
from tests.progress_fixtures import Clock, feed, lifecycle
from tests.unit.test_progress_api import COMMITTEE, LEAD, LEADER, REPLY
from tests.unit.test_progress_stats import POLICY, RATES, TODAY, U1, U2, U3, U4, made_up_year, rates

CODES = Codes()
Row = tuple[str, str]
"""A row of the figures: (范围, 分组)."""


@pytest.fixture(scope="module")
async def year() -> list[Dossier]:
    return await made_up_year()


def read_csv(content: bytes) -> list[dict[str, str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "a spreadsheet program needs the BOM to read UTF-8"
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


HEADING = dict(files.FIGURE_COLUMNS)


def figures_by_row(records: list[dict[str, Any]]) -> dict[Row, dict[str, Any]]:
    """The figures file's rows by (范围, 分组), each as {figure key: value}, empty cells as None."""
    return {
        (r["范围"], r["分组"]): {
            key: None if r[heading] in ("", None) else r[heading] for key, heading in HEADING.items()
        }
        for r in records
    }


def csv_rates(row: dict[str, Any]) -> dict[str, float | None]:
    return {name: None if row[name] is None else float(row[name]) for name in RATES}


async def test_the_years_figures_in_the_csv_match_the_hand_computed_year(year: list[Dossier]) -> None:
    rows = figures_by_row(read_csv(files.figures_csv(export.build(year, TODAY, POLICY, "2026"), CODES)))
    assert list(rows) == [
        ("全部", "全部"),
        *(("承办单位", unit) for unit in sorted([U1, U2, U3, U4])),
        ("类别", "社会建设"),
        ("类别", "经济建设"),
    ]
    # 2026 only: p-12 (2025, U1, 社会建设) is left out, unlike the all-years per-unit figures.
    assert csv_rates(rows["全部", "全部"]) == rates((8, 9), (3, 7), (3, 7), (2, 3), (5, 7), (5, 6), (3, 4), (2, 4))
    # U1 in 2026: p-01 (on time, A, 2 of 2 adopted, both 满意) and p-02 (on time, then late in round 2; B; 1 of 2).
    assert csv_rates(rows["承办单位", U1]) == rates((2, 2), (2, 3), (2, 2), (2, 2), (4, 5), (3, 4), (2, 2), (1, 2))
    assert csv_rates(rows["承办单位", U4]) == rates((1, 1), (0, 1), (0, 1), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0))
    # 社会建设 in 2026: p-03 (分办, closed, one 不满意), p-05 (not due), p-09 (not filed).
    assert csv_rates(rows["类别", "社会建设"]) == rates((2, 3), (1, 2), (1, 2), (0, 1), (1, 2), (2, 2), (1, 2), (1, 2))
    assert rows["全部", "全部"]["submitted"] == "10"  # p-01..p-11 but the withdrawn p-08
    # 逾期 as of 09-01: p-04's reply only (p-05 is not due; p-06 and p-07 wait for 办复审查, not for a unit).
    assert rows["全部", "全部"]["overdue_total"] == "1"


async def test_the_csv_of_every_year_carries_the_statistics_numbers(year: list[Dossier]) -> None:
    stats = statistics(year, TODAY, POLICY)
    rows = figures_by_row(read_csv(files.figures_csv(export.build(year, TODAY, POLICY, None), CODES)))
    expected = {
        ("全部", "全部"): stats["overall"],
        **{("承办单位", unit): figures for unit, figures in stats["per_unit"].items()},
        **{("类别", category): figures for category, figures in stats["per_category"].items()},
    }
    assert set(rows) == set(expected)
    for row, figures in expected.items():
        for key in HEADING:
            want = sum(figures["overdue"].values()) if key == "overdue_total" else figures[key]
            got = rows[row][key]
            assert (None if got is None else float(got)) == want, (row, key)


async def test_the_workbook_holds_the_same_numbers_as_the_csv_the_trace_and_the_definitions(
    year: list[Dossier],
) -> None:
    table = export.build(year, TODAY, POLICY, "2026")
    book = load_workbook(io.BytesIO(files.workbook(table, CODES)))
    assert book.sheetnames == ["统计", "明细", "口径"]
    sheet = [list(row) for row in book["统计"].iter_rows(values_only=True)]
    assert tuple(sheet[0]) == files.FIGURE_HEADINGS
    assert [[None if c == "" else c for c in row] for row in sheet[1:]] == files.figure_rows(table, CODES)
    from_csv = figures_by_row(read_csv(files.figures_csv(table, CODES)))
    from_book = figures_by_row([dict(zip(sheet[0], row, strict=True)) for row in sheet[1:]])
    for row, figures in from_csv.items():
        assert {k: None if v is None else float(v) for k, v in figures.items()} == from_book[row]
    rate_column = sheet[0].index("按期办复率") + 1
    assert book["统计"].cell(row=2, column=rate_column).number_format == "0.00%"
    details = [list(row) for row in book["明细"].iter_rows(values_only=True)]
    assert details[1:] == [[None if c == "" else c for c in row] for row in files.trace_rows(table, CODES)]
    written = {row[0]: row[3] for row in book["口径"].iter_rows(min_row=2, values_only=True)}
    assert written["立案率"] == RATE_DEFINITIONS["filing_rate"]
    assert written["首类答复占比 (A 类 (已解决或采纳))"] == RATE_DEFINITIONS["first_class_rate"]


@pytest.mark.parametrize("which_year", ["2026", "2025", None])
async def test_counting_the_trace_gives_every_figure(year: list[Dossier], which_year: str | None) -> None:
    table = export.build(year, TODAY, POLICY, which_year)
    rows = figures_by_row(read_csv(files.figures_csv(table, CODES)))
    denominators: Counter[tuple[str, str, str]] = Counter()
    numerators: Counter[tuple[str, str, str]] = Counter()
    for item in read_csv(files.trace_csv(table, CODES)):
        where = (item["范围"], item["分组"], item["指标"])
        denominators[where] += 1
        numerators[where] += item["计入分子"] == "是"
    for (scope, key), figures in rows.items():
        for rate, (numerator, denominator) in files.RATE_PARTS.items():
            where = (scope, key, files.RATE_NAMES[rate])
            assert (numerators[where], denominators[where]) == (
                int(figures[numerator]),
                int(figures[denominator]),
            ), where


async def test_the_trace_names_the_proposals_behind_a_figure(year: list[Dossier]) -> None:
    trace = read_csv(files.trace_csv(export.build(year, TODAY, POLICY, "2026"), CODES))

    def items(scope: str, key: str, rate: str) -> list[tuple[str, str, str]]:
        return [
            (t["提案ID"], t["计入项"], t["计入分子"])
            for t in trace
            if (t["范围"], t["分组"], t["指标"]) == (scope, key, rate)
        ]

    # 改办: p-04's reply, overdue and never sent, is U4's late reply, not U1's.
    assert ("p-0004", f"第 1 轮 {U4} 的答复 (期限 2026-06-22)", "否") in items("承办单位", U4, "按期办复率")
    assert all(pid != "p-0004" for pid, _, _ in items("承办单位", U1, "按期办复率"))
    # 分办: p-03's suggestions once each overall, adopted by either unit; per unit, only its own answer.
    assert items("全部", "全部", "采纳率 (建议)")[-2:] == [("p-0003", "建议 1", "是"), ("p-0003", "建议 2", "是")]
    assert items("承办单位", U3, "采纳率 (建议)") == [("p-0003", "建议 1", "否"), ("p-0003", "建议 2", "是")]
    # 立案率: withdrawn (p-08) and in review (p-11) are not there; merged (p-10) counts as accepted.
    filing = {pid: counted for pid, _, counted in items("全部", "全部", "立案率")}
    assert "p-0008" not in filing and "p-0011" not in filing
    assert (filing["p-0009"], filing["p-0010"]) == ("否", "是")


class Names(Codes):
    """Words as the portal gives them (a few, for the test)."""

    def unit(self, unit_id: str) -> str:
        return {U3: "市农业农村局", U4: "市交通运输局"}.get(unit_id, unit_id)

    def stage(self, code: str) -> str:
        return {"not_filed": "不予立案", "merged": "已并案"}.get(code, code)

    def grade(self, code: str) -> str:
        return {"unsatisfied": "不满意"}.get(code, code)

    def reply_class(self, code: str) -> str:
        return {"C": "C 类 (留作参考)"}.get(code, code)


async def test_the_files_name_units_stages_grades_and_classes_in_the_words_they_are_given(
    year: list[Dossier],
) -> None:
    data = export.build(year, TODAY, POLICY, "2026")
    trace = read_csv(files.trace_csv(data, Names()))
    units = {row["分组"] for row in read_csv(files.figures_csv(data, Names())) if row["范围"] == "承办单位"}
    assert units == {U1, U2, "市农业农村局", "市交通运输局"}
    said = {(t["提案ID"], t["指标"], t["计入项"]) for t in trace if t["范围"] == "全部"}
    assert ("p-0009", "立案率", "提案 (不予立案)") in said
    assert ("p-0010", "立案率", "提案 (已并案)") in said
    assert ("p-0004", "按期办复率", "第 1 轮 市交通运输局 的答复 (期限 2026-06-22)") in said
    assert ("p-0003", "满意率 (按份)", "m-2 第 1 轮评价 (不满意)") in said
    assert ("p-0003", "采纳类答复占比", "市农业农村局 第 1 轮答复 (C 类 (留作参考))") in said
    # Progress's own files: ids and stage codes, the policy's labels for grades and classes.
    own = {t["计入项"] for t in read_csv(files.trace_csv(data, export.PolicyWords(POLICY)))}
    assert {"提案 (not_filed)", "m-2 第 1 轮评价 (不满意)", f"{U3} 第 1 轮答复 (C 类 (留作参考))"} <= own


# Over HTTP -----------------------------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    await upgrade_async("progress", url)
    runtime, app = build(Clock(datetime(2026, 5, 20, 2, tzinfo=UTC)))  # replies due 2026-06-03
    await feed(runtime, lifecycle("p-0001"))
    await feed(runtime, lifecycle("p-0002", category="社会建设", lead="dg-czj", co=()))
    await feed(runtime, lifecycle("p-0003", filed=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        reply = await http.post("/proposals/p-0001/replies", json=REPLY, headers=LEAD)
        reply_id = reply.json()["replies"][0]["id"]
        review = {"decision": "approve"}
        assert (
            await http.post(f"/proposals/p-0001/replies/{reply_id}/review", json=review, headers=COMMITTEE)
        ).is_success
        yield http
    await runtime.engine.dispose()


def as_numbers(row: dict[str, Any]) -> dict[str, float | None]:
    return {key: None if value is None else float(value) for key, value in row.items()}


def expected_row(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: sum(figures["overdue"].values()) if key == "overdue_total" else figures[key] for key in HEADING}


async def test_the_exported_files_carry_the_numbers_of_the_stats_api(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/stats", headers=COMMITTEE)).json()
    assert stats["overall"]["replies_on_time"] == 1  # the test has something to compare
    answer = await client.get("/stats/export.csv", params={"year": 2026}, headers=COMMITTEE)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="proposal-statistics-2026.csv"'
    rows = figures_by_row(read_csv(answer.content))
    assert as_numbers(rows["全部", "全部"]) == expected_row(stats["per_year"]["2026"])

    every_year = await client.get("/stats/export.xlsx", headers=COMMITTEE)
    assert every_year.headers["content-disposition"] == 'attachment; filename="proposal-statistics-all.xlsx"'
    sheet = list(load_workbook(io.BytesIO(every_year.content))["统计"].iter_rows(values_only=True))
    book = figures_by_row([dict(zip(sheet[0], row, strict=True)) for row in sheet[1:]])
    assert book["全部", "全部"] == expected_row(stats["overall"])
    for unit, figures in stats["per_unit"].items():
        assert book["承办单位", unit] == expected_row(figures)
    for category, figures in stats["per_category"].items():
        assert book["类别", category] == expected_row(figures)

    data = (await client.get("/stats/export", params={"year": 2026}, headers=COMMITTEE)).json()
    assert data["year"] == "2026" and data["first_class"] == {"code": "A", "label": "已解决或采纳"}
    assert (data["figures"][0]["scope"], data["figures"][0]["key"]) == ("全部", "全部")
    assert data["figures"][0]["figures"]["replies_on_time"] == stats["per_year"]["2026"]["replies_on_time"]
    trace = read_csv((await client.get("/stats/trace.csv", params={"year": 2026}, headers=COMMITTEE)).content)
    on_time = [(t["提案ID"], t["计入分子"]) for t in trace if (t["范围"], t["指标"]) == ("全部", "按期办复率")]
    assert on_time == [("p-0001", "是")]


async def test_a_leader_exports_only_the_key_proposals_it_supervises(client: httpx.AsyncClient) -> None:
    """督办领导 read the figures of their key proposals, in the export as on /stats: none here."""
    data = (await client.get("/stats/export", headers=LEADER)).json()
    assert data["trace"] == []
    trace = read_csv((await client.get("/stats/trace.csv", headers=LEADER)).content)
    assert trace == []
    office = read_csv((await client.get("/stats/trace.csv", headers=COMMITTEE)).content)
    assert {t["提案ID"] for t in office} >= {"p-0001", "p-0002"}


async def test_only_the_proposal_office_and_leaders_may_export(client: httpx.AsyncClient) -> None:
    for path in ("/stats/export", "/stats/export.csv", "/stats/trace.csv", "/stats/export.xlsx"):
        assert (await client.get(path, headers=LEAD)).status_code == 403
        assert (await client.get(path)).status_code == 401
    assert (await client.get("/stats/export.csv", params={"year": 1066}, headers=COMMITTEE)).status_code == 422
