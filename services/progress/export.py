"""统计导出: the year's figures per unit and per category as CSV and XLSX, and the proposals behind them.

A proposal office hands these files on (to the plenary session's report, to leaders, to units). Every
figure can be traced: the 明细 (trace) lists, for every rate of every row of the figures, each item its
denominator counts (a proposal, a reply owed, an evaluation, a suggestion, a final answer) and whether
the numerator counts it too. The lists are computed with the very functions the figures come from
(``services/progress/stats.py``), and a test checks that counting them gives every figure.

Pure: tables in, bytes out; no I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from services.progress import stats
from services.progress.domain import Dossier
from shared.policy import Policy
from shared.statistics import RATE_DEFINITIONS, UNIT_RULE, YEAR_RULE

RATE_PARTS: dict[str, tuple[str, str]] = {
    "filing_rate": ("accepted", "decided"),
    "on_time_reply_rate": ("replies_on_time", "replies_due"),
    "closing_rate": ("closed", "filed"),
    "satisfaction_rate": ("proposals_satisfied", "proposals_evaluated"),
    "evaluation_satisfaction_rate": ("satisfied", "evaluations"),
    "suggestion_adoption_rate": ("suggestions_adopted", "suggestions"),
    "adopted_class_rate": ("adopted_class_replies", "replies_final"),
    "first_class_rate": ("first_class_replies", "replies_final"),
}
"""Rate → (numerator figure, denominator figure) in the statistics' JSON."""

RATE_NAMES: dict[str, str] = {
    "filing_rate": "立案率",
    "on_time_reply_rate": "按期办复率",
    "closing_rate": "办结率",
    "satisfaction_rate": "满意率 (按件)",
    "evaluation_satisfaction_rate": "满意率 (按份)",
    "suggestion_adoption_rate": "采纳率 (建议)",
    "adopted_class_rate": "采纳类答复占比",
    "first_class_rate": "首类答复占比",
}

FIGURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("submitted", "提交"),
    ("in_review", "审查中"),
    ("decided", "已作审查决定"),
    ("accepted", "计为立案"),
    ("filing_rate", "立案率"),
    ("filed", "立案办理"),
    ("replies_due", "应答复 (已到期)"),
    ("replies_on_time", "按期答复"),
    ("on_time_reply_rate", "按期办复率"),
    ("closed", "办结"),
    ("closing_rate", "办结率"),
    ("proposals_evaluated", "已评价提案"),
    ("proposals_satisfied", "满意提案"),
    ("satisfaction_rate", "满意率 (按件)"),
    ("evaluations", "评价份数"),
    ("satisfied", "满意评价份数"),
    ("evaluation_satisfaction_rate", "满意率 (按份)"),
    ("suggestions", "建议条数"),
    ("suggestions_adopted", "采纳建议条数"),
    ("suggestion_adoption_rate", "采纳率 (建议)"),
    ("replies_final", "答复件数"),
    ("adopted_class_replies", "采纳类答复"),
    ("adopted_class_rate", "采纳类答复占比"),
    ("first_class_replies", "首类答复"),
    ("first_class_rate", "首类答复占比"),
    ("implemented", "举措已落实"),
    ("overdue_total", "逾期事项"),
)
"""The figures' columns: (key in the statistics' JSON, heading). ``overdue_total`` sums ``overdue``."""

SCOPE_ALL, SCOPE_UNIT, SCOPE_CATEGORY = "全部", "承办单位", "类别"
FIGURE_HEADINGS = ("年度", "范围", "分组", *(heading for _, heading in FIGURE_COLUMNS))
TRACE_HEADINGS = ("年度", "范围", "分组", "指标", "提案ID", "案号", "标题", "计入项", "计入分子")


@dataclass(frozen=True)
class TraceItem:
    """One item a rate's denominator counts, and whether its numerator counts it too."""

    rate: str
    proposal_id: str
    item: str
    """What is counted, in words: 提案, 第 2 轮 dg-czj 的答复 (期限 2026-06-03), 建议 2, m-1 第 1 轮评价…"""
    counted: bool


def trace(dossiers: Sequence[Dossier], today: date, policy: Policy, unit: str | None = None) -> list[TraceItem]:
    """The items behind each rate of :func:`stats.figures` for the same dossiers (and ``unit``)."""
    items: list[TraceItem] = []
    satisfied_codes = {grade.code for grade in policy.evaluation_grades if grade.counts_as_satisfied}
    adopted_classes = {c.code for c in policy.reply_classes if c.counts_as_adopted}
    first_class = policy.reply_classes[0].code
    for dossier in dossiers:
        pid = dossier.id
        outcome = stats.filing_outcome(dossier, policy)
        if outcome is not None:
            items.append(TraceItem("filing_rate", pid, f"提案 ({dossier.stage.value})", outcome))
        if not stats.in_handling(dossier):
            continue
        for slot in stats.reply_slots(dossier, today, policy):
            if slot.fell_due and unit in (None, slot.unit):
                what = f"第 {slot.round} 轮 {slot.unit} 的答复 (期限 {slot.due})"
                items.append(TraceItem("on_time_reply_rate", pid, what, slot.on_time))
        items.append(TraceItem("closing_rate", pid, "提案", dossier.proposal["closed_at"] is not None))
        satisfied = stats.proposal_satisfied(dossier, policy)
        if satisfied is not None:
            items.append(TraceItem("satisfaction_rate", pid, "提案 (最近一轮评价)", satisfied))
        for ev in dossier.evaluations:
            what = f"{ev['signer_id']} 第 {ev['round']} 轮评价 ({ev['result_grade']})"
            items.append(TraceItem("evaluation_satisfaction_rate", pid, what, ev["result_grade"] in satisfied_codes))
        items += _suggestions(dossier, unit)
        for answer in stats.final_answers(dossier, unit):
            what = f"{answer['unit']} 第 {answer['round']} 轮答复 ({answer['classification']} 类)"
            items.append(TraceItem("adopted_class_rate", pid, what, answer["classification"] in adopted_classes))
            items.append(TraceItem("first_class_rate", pid, what, answer["classification"] == first_class))
    return items


def _suggestions(dossier: Dossier, unit: str | None) -> list[TraceItem]:
    """采纳率's items: each suggestion of an answered proposal once, adopted if any final answer adopted it."""
    _, count = stats.suggestion_adoption(dossier, unit)
    if not count:
        return []
    answers = stats.final_answers(dossier, unit)
    numbers = {a["number"] for answer in answers for a in answer["adoptions"]}
    adopted = {a["number"] for answer in answers for a in answer["adoptions"] if a["adopted"]}
    unlisted = (n for n in range(1, count + 1 + len(numbers)) if n not in numbers)
    while len(numbers) < count:  # suggestions no answer listed count as not adopted
        numbers.add(next(unlisted))
    return [TraceItem("suggestion_adoption_rate", dossier.id, f"建议 {n}", n in adopted) for n in sorted(numbers)]


# Tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One row of the figures: the year's proposals overall, of one unit, or of one category."""

    scope: str
    key: str
    dossiers: list[Dossier]
    unit: str | None = None


def groups(dossiers: Sequence[Dossier]) -> list[Group]:
    """全部, then each unit (its proposals as the per-unit statistics count them), then each category."""
    by_unit: dict[str, list[Dossier]] = {}
    by_category: dict[str, list[Dossier]] = {}
    for dossier in dossiers:
        for unit in stats.units_of(dossier):
            by_unit.setdefault(unit, []).append(dossier)
        by_category.setdefault(dossier.proposal["category"], []).append(dossier)
    return [
        Group(SCOPE_ALL, SCOPE_ALL, list(dossiers)),
        *(Group(SCOPE_UNIT, unit, members, unit) for unit, members in sorted(by_unit.items())),
        *(Group(SCOPE_CATEGORY, category, members) for category, members in sorted(by_category.items())),
    ]


@dataclass(frozen=True)
class Export:
    """What the export files hold: the figures' rows and the trace's rows, as cells."""

    year: str
    figures: list[list[Any]]
    trace: list[list[Any]]
    first_class: str


def build(dossiers: Sequence[Dossier], today: date, policy: Policy, year: str | None) -> Export:
    """The export of ``year``'s proposals (a year of submission, ``YEAR_RULE``), or of every year."""
    label = year or "全部年度"
    chosen = [d for d in dossiers if year is None or stats.year_of(d, policy) == year]
    figure_rows: list[list[Any]] = []
    trace_rows: list[list[Any]] = []
    for group in groups(chosen):
        figures = stats.figures(group.dossiers, today, policy, group.unit)
        figures["overdue_total"] = sum(figures["overdue"].values())
        figure_rows.append([label, group.scope, group.key, *(figures[key] for key, _ in FIGURE_COLUMNS)])
        by_id = {d.id: d.proposal for d in group.dossiers}
        for item in trace(group.dossiers, today, policy, group.unit):
            proposal = by_id[item.proposal_id]
            trace_rows.append(
                [
                    label,
                    group.scope,
                    group.key,
                    RATE_NAMES[item.rate],
                    item.proposal_id,
                    proposal["filing_number"] or "",
                    proposal["title"],
                    item.item,
                    "是" if item.counted else "否",
                ]
            )
    first = policy.reply_classes[0]
    return Export(label, figure_rows, trace_rows, f"{first.code} 类 ({first.label})")


def definitions(export: Export) -> list[list[str]]:
    """The 口径 sheet: every rate's definition, and which figures are its numerator and denominator."""
    rows = [["指标", "分子", "分母", "口径"]]
    headings = dict(FIGURE_COLUMNS)
    for rate, (numerator, denominator) in RATE_PARTS.items():
        name = RATE_NAMES[rate] + (f" ({export.first_class})" if rate == "first_class_rate" else "")
        rows.append([name, headings[numerator], headings[denominator], RATE_DEFINITIONS[rate]])
    rows += [["年度", "", "", YEAR_RULE], ["承办单位", "", "", UNIT_RULE]]
    return rows


# Files -------------------------------------------------------------------------------------------


def _csv(headings: Iterable[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a byte order mark, so that a spreadsheet program opens the Chinese headings right."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(headings)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return text.getvalue().encode("utf-8-sig")


def figures_csv(export: Export) -> bytes:
    """统计表: one row per group (全部, each unit, each category); a rate with a 0 denominator is empty."""
    return _csv(FIGURE_HEADINGS, export.figures)


def trace_csv(export: Export) -> bytes:
    """统计明细: one row per item a rate's denominator counts, per group."""
    return _csv(TRACE_HEADINGS, export.trace)


def workbook(export: Export) -> bytes:
    """The XLSX: sheets 统计 (figures; rates as percentages), 明细 (trace) and 口径 (definitions)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "统计"
    sheet.append(FIGURE_HEADINGS)
    for row in export.figures:
        sheet.append(row)
    rate_columns = [i + 4 for i, (key, _) in enumerate(FIGURE_COLUMNS) if key in RATE_PARTS]
    for column in rate_columns:
        for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
            cell.number_format = "0.00%"
    _tidy(sheet)
    details = book.create_sheet("明细")
    details.append(TRACE_HEADINGS)
    for row in export.trace:
        details.append(row)
    _tidy(details)
    meaning = book.create_sheet("口径")
    for row in definitions(export):
        meaning.append(row)
    _tidy(meaning)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _tidy(sheet: Any) -> None:
    """Bold headings, frozen under them, and columns wide enough for their headings."""
    sheet.freeze_panes = "A2"
    for index, cell in enumerate(sheet[1], start=1):
        cell.font = Font(bold=True)
        sheet.column_dimensions[get_column_letter(index)].width = max(10, 2 * len(str(cell.value)) + 2)
