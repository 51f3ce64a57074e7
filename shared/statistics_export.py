"""统计导出: the export's data (the contract between progress, which computes it, and the portal, which hands
it to people) and its files, CSV and XLSX.

Progress serves the data as JSON (`GET /stats/export`) and as files with codes and ids (for other systems);
the portal renders the same data with words: unit names, stage words, grade and class labels. One data,
one renderer, so both files carry the same numbers.

The data: ``figures``, one row per group (全部, each 承办单位, each 类别) with the statistics' figures; and
``trace`` (明细), one item per thing a rate's denominator counts, with whether its numerator counts it too.
Pure: no I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypedDict

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

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
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class FigureRow(TypedDict):
    """One group's figures: ``scope`` 全部, 承办单位 or 类别; ``key`` the unit id or the category."""

    scope: str
    key: str
    figures: dict[str, Any]


class TraceItem(TypedDict):
    """One thing a rate's denominator counts, in a group, and whether its numerator counts it too.

    ``kind`` says what it is: ``proposal`` (``code``: its stage), ``reply`` (a reply owed by ``unit`` in
    ``round``, due ``due``), ``evaluation`` (``subject``: the signer; ``code``: the result grade),
    ``suggestion`` (``subject``: its number) or ``answer`` (``unit``'s final answer; ``code``: its class).
    """

    scope: str
    key: str
    rate: str
    proposal_id: str
    filing_number: str | None
    title: str
    kind: str
    unit: str | None
    round: int | None
    subject: str | None
    code: str | None
    due: str | None
    counted: bool


class ExportData(TypedDict):
    """The whole export of a year (``year``: the year, or 全部年度)."""

    year: str
    first_class: dict[str, str]
    """The policy's first reply class: {code, label}."""
    figures: list[FigureRow]
    trace: list[TraceItem]


class Words(Protocol):
    """How the files name what the data codes: units, stages, grades, reply classes."""

    def unit(self, unit_id: str) -> str: ...
    def stage(self, code: str) -> str: ...
    def grade(self, code: str) -> str: ...
    def reply_class(self, code: str) -> str: ...


class Codes:
    """The data's own ids and codes (progress's files, for other systems)."""

    def unit(self, unit_id: str) -> str:
        return unit_id

    def stage(self, code: str) -> str:
        return code

    def grade(self, code: str) -> str:
        return code

    def reply_class(self, code: str) -> str:
        return code


def item_text(item: TraceItem, words: Words) -> str:
    """计入项 in words: 提案 (已办结), 第 2 轮 市交通局 的答复 (期限 2026-06-03), 建议 2, m-1 第 1 轮评价 (满意)…"""
    kind = item["kind"]
    if kind == "proposal":
        return f"提案 ({words.stage(item['code'])})" if item["code"] else "提案"
    if kind == "reply":
        return f"第 {item['round']} 轮 {words.unit(item['unit'] or '')} 的答复 (期限 {item['due']})"
    if kind == "evaluation":
        return f"{item['subject']} 第 {item['round']} 轮评价 ({words.grade(item['code'] or '')})"
    if kind == "suggestion":
        return f"建议 {item['subject']}"
    return f"{words.unit(item['unit'] or '')} 第 {item['round']} 轮答复 ({words.reply_class(item['code'] or '')})"


def _group(scope: str, key: str, words: Words) -> str:
    return words.unit(key) if scope == SCOPE_UNIT else key


def figure_rows(data: ExportData, words: Words) -> list[list[Any]]:
    """统计表's rows: 年度, 范围, 分组, then the figures in :data:`FIGURE_COLUMNS` order."""
    return [
        [data["year"], row["scope"], _group(row["scope"], row["key"], words)]
        + [row["figures"][key] for key, _ in FIGURE_COLUMNS]
        for row in data["figures"]
    ]


def trace_rows(data: ExportData, words: Words) -> list[list[Any]]:
    """统计明细's rows, in :data:`TRACE_HEADINGS` order."""
    return [
        [
            data["year"],
            item["scope"],
            _group(item["scope"], item["key"], words),
            RATE_NAMES[item["rate"]],
            item["proposal_id"],
            item["filing_number"] or "",
            item["title"],
            item_text(item, words),
            "是" if item["counted"] else "否",
        ]
        for item in data["trace"]
    ]


def definitions(data: ExportData) -> list[list[str]]:
    """The 口径 sheet: every rate's definition, and which figures are its numerator and denominator."""
    rows = [["指标", "分子", "分母", "口径"]]
    headings = dict(FIGURE_COLUMNS)
    first = f" ({data['first_class']['code']} 类 ({data['first_class']['label']}))"
    for rate, (numerator, denominator) in RATE_PARTS.items():
        name = RATE_NAMES[rate] + (first if rate == "first_class_rate" else "")
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


def figures_csv(data: ExportData, words: Words) -> bytes:
    """统计表: one row per group (全部, each unit, each category); a rate with a 0 denominator is empty."""
    return _csv(FIGURE_HEADINGS, figure_rows(data, words))


def trace_csv(data: ExportData, words: Words) -> bytes:
    """统计明细: one row per item a rate's denominator counts, per group."""
    return _csv(TRACE_HEADINGS, trace_rows(data, words))


def workbook(data: ExportData, words: Words) -> bytes:
    """The XLSX: sheets 统计 (figures; rates as percentages), 明细 (trace) and 口径 (definitions)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "统计"
    sheet.append(FIGURE_HEADINGS)
    for row in figure_rows(data, words):
        sheet.append(row)
    for index, (key, _) in enumerate(FIGURE_COLUMNS, start=4):
        if key in RATE_PARTS:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = "0.00%"
    _tidy(sheet)
    details = book.create_sheet("明细")
    details.append(TRACE_HEADINGS)
    for row in trace_rows(data, words):
        details.append(row)
    _tidy(details)
    meaning = book.create_sheet("口径")
    for row in definitions(data):
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


EXPORT_FILES: dict[str, tuple[str, str]] = {
    "figures.csv": (CSV_TYPE, "proposal-statistics"),
    "trace.csv": (CSV_TYPE, "proposal-statistics-trace"),
    "figures.xlsx": (XLSX_TYPE, "proposal-statistics"),
}
"""The export's files: name → (content type, file name stem)."""


def render(data: ExportData, name: str, words: Words) -> tuple[bytes, str, str]:
    """The export file ``name`` (one of :data:`EXPORT_FILES`): (content, content type, file name)."""
    media_type, stem = EXPORT_FILES[name]
    content = {"figures.csv": figures_csv, "trace.csv": trace_csv, "figures.xlsx": workbook}[name](data, words)
    year = "all" if not data["year"].isdigit() else data["year"]
    return content, media_type, f"{stem}-{year}.{name.rsplit('.', 1)[1]}"
