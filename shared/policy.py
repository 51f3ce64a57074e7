"""办理规则 (policy): the rules that differ from city to city, as data, and the one deadline function.

Policy is data. The periods (办复期限, 会办意见期限, 异议期, 评价期, 联名确认期, 到期预警提前量,
重新办理期限), the reply classes (答复分类 A/B/C), the evaluation grades (满意/基本满意/不满意), the
proposal categories (提案分类), the assignment mode and the working-day calendar overrides live
in one YAML file validated by :class:`Policy`. The default for 东莞市 ships with the package as
``shared/policies/dongguan.yaml``; ``PROPOSALFLOW_POLICY_FILE`` points at another city's file.

A period is a :class:`Duration` of exactly one kind: ``months``, ``days`` (calendar days) or
``working_days``. In YAML it is written ``"3 months"``, ``"1 month"``, ``"30 days"``,
``"5 working days"``, or as a mapping such as ``{working_days: 5}``.

Working days (工作日) are the days of :class:`WorkingCalendar`: Monday to Friday, minus mainland
China's public holidays (法定节假日 and the days off moved by 调休), plus the weekend days made
working days by 调休, all from the ``holidays`` package (``holidays.country_holidays("CN")``:
its days and its ``weekend_workdays``), then the policy's ``calendar.extra_holidays`` and
``calendar.extra_workdays`` on top (they win), for an announcement the installed package does not
know yet.

Official and provisional years: the package carries the State Council's yearly announcement
(国务院办公厅关于…部分节假日安排的通知) up to some year (:func:`latest_announced_year`); for a later
year it only has the statutory days moved off weekends, without the 调休 working days, so a deadline
that falls in such a year is *provisional* (:meth:`WorkingCalendar.provisional_years`): it may move
once the year is announced. A policy declares an announced year in ``calendar.declared_years``
(:class:`DeclaredYear`: every day off and every 调休 working day of the year); a declared year
replaces the package's table for that year and counts as official. ``proposalflow deadlines
recompute`` then moves the stored deadlines of open proposals (docs/operations.md).

Every due date is computed by :func:`due_date`, with these rules:

* The start is a date. An aware datetime is first converted to the policy's time zone
  (``Asia/Shanghai`` by default) and its local date taken; a naive datetime is rejected
  (``ValueError``), because its date is ambiguous.
* ``N working days``: the N-th working day after the start date. The start date itself is never
  counted, whether or not it is a working day (交办 on Friday + 5 working days = the next Friday,
  when there is no holiday in between).
* ``N months``: the same day of the month N months later, clamped to the end of a shorter month
  (Jan 31 + 1 month = Feb 28, or Feb 29 in a leap year); if that day is not a working day, the
  due date rolls forward to the next working day.
* ``N days``: the start date + N calendar days; if that is not a working day, it rolls forward
  to the next working day.

A due date is the last day on which the step is on time: it is overdue (逾期) from the next day.

:func:`warning_date` is the day a 到期预警 is due, ``lead`` before a due date: for working days,
the N-th working day before the due date; for months and days, the same count back, then rolled
BACK to the nearest working day on or before it (so a warning never lands on a holiday and never
later than it would have).

Everything here is pure (no I/O, no clock) except :func:`load_policy`, which reads the file.
"""

from __future__ import annotations

import calendar as _calendar
import difflib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "DEADLINE_NAMES",
    "DEFAULT_TIMEZONE",
    "POLICY_ENV_VAR",
    "CalendarOverrides",
    "ChinaYear",
    "Contradiction",
    "DeadlineName",
    "DeclaredYear",
    "Duration",
    "DurationKind",
    "EvaluationGrade",
    "Policy",
    "PolicyError",
    "ReplyClass",
    "WorkingCalendar",
    "add_months",
    "china_public_calendar",
    "contradictions",
    "deadline_for",
    "default_policy",
    "due_date",
    "latest_announced_year",
    "load_policy",
    "local_date",
    "parse_policy",
    "warning_date",
]

POLICY_ENV_VAR = "PROPOSALFLOW_POLICY_FILE"
"""Environment variable naming the policy file to use instead of the packaged default."""

DEFAULT_TIMEZONE = "Asia/Shanghai"

DEFAULT_NOT_FILED_GROUNDS = (
    "不属于政协职能范围",
    "涉及党和国家秘密",
    "内容不实或无具体建议",
    "属于个人或少数人利益诉求",
    "已有结论或正在处理",
)
"""不予立案的理由, used when a policy file does not list its own ``not_filed_grounds``."""

_PACKAGED_POLICY = ("shared.policies", "dongguan.yaml")

DurationKind = Literal["months", "days", "working_days"]

DeadlineName = Literal[
    "reply_deadline",
    "co_opinion_deadline",
    "dispute_window",
    "evaluation_window",
    "cosign_window",
    "rehandling_deadline",
    "implementation_evaluation_window",
]
"""The policy periods that yield a due date (``warning_lead_time`` is a lead, not a deadline)."""

DEADLINE_NAMES: tuple[DeadlineName, ...] = get_args(DeadlineName)

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
PositiveCount = Annotated[int, Field(strict=True, gt=0)]


class PolicyError(ValueError):
    """The policy file is missing, is not YAML, or has an invalid field; the message says which.

    ``source`` names the file; ``problems`` lists one line per problem, each starting with the
    field path (``reply_classes[1].code: ...``).
    """

    def __init__(self, source: str, problems: Sequence[str], headline: str = "invalid policy") -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [f"{headline} in {source}:"]
        lines += ["  " + problem.replace("\n", "\n    ") for problem in self.problems]
        super().__init__("\n".join(lines) if self.problems else f"{headline}: {source}")


# Duration ---------------------------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"^\s*(?P<n>[+-]?\d+)\s*(?P<unit>months?|working[\s_-]+days?|days?)\s*$",
    re.IGNORECASE,
)
_ACCEPTED_FORMS = (
    "write 'N months', 'N days' (calendar days) or 'N working days' with N a positive whole "
    "number (e.g. '3 months', '1 month', '30 days', '5 working days'), or a mapping with exactly "
    "one of months, days, working_days (e.g. {working_days: 5})"
)


class Duration(BaseModel):
    """期限: a period of exactly one kind: calendar ``months``, calendar ``days`` or ``working_days``.

    Built from a mapping (``{"working_days": 5}``) or a string (``"5 working days"``); it
    serialises back to the string form, so a dumped policy loads again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    months: PositiveCount | None = None
    days: PositiveCount | None = None
    working_days: PositiveCount | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _DURATION_RE.match(data)
            if match is None:
                raise ValueError(f"cannot parse duration {data!r}: {_ACCEPTED_FORMS}")
            unit = match["unit"].lower()
            if unit.startswith("working"):
                return {"working_days": int(match["n"])}
            if unit.startswith("month"):
                return {"months": int(match["n"])}
            return {"days": int(match["n"])}
        if isinstance(data, (dict, Duration)):
            return data
        raise ValueError(f"a duration cannot be {data!r}: {_ACCEPTED_FORMS}")

    @model_validator(mode="after")
    def _exactly_one(self) -> Duration:
        given = [name for name in ("months", "days", "working_days") if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(f"a duration needs exactly one of months, days, working_days (got {got})")
        return self

    @property
    def kind(self) -> DurationKind:
        """Which of ``months``, ``days``, ``working_days`` this period counts."""
        if self.months is not None:
            return "months"
        if self.days is not None:
            return "days"
        return "working_days"

    @property
    def amount(self) -> int:
        """How many of :attr:`kind`."""
        for value in (self.months, self.days, self.working_days):
            if value is not None:
                return value
        raise AssertionError("unreachable: a Duration has exactly one field")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return ((k, v) for k, v in super().__repr_args__() if v is not None)

    def __str__(self) -> str:
        unit = {"months": "month", "days": "day", "working_days": "working day"}[self.kind]
        return f"{self.amount} {unit}{'' if self.amount == 1 else 's'}"

    @model_serializer(mode="plain")
    def _serialise(self) -> str:
        return str(self)


# Policy -----------------------------------------------------------------------------------------


class ReplyClass(BaseModel):
    """答复分类: a class of the lead unit's reply (A 已解决或采纳, B 正在解决或列入计划, C 留作参考)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: NonEmptyStr
    label: NonEmptyStr
    counts_as_adopted: bool
    """Whether a reply of this class counts as adopted (采纳) in statistics."""


class EvaluationGrade(BaseModel):
    """评价等级: a proposer's grade of the handling (满意, 基本满意, 不满意)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: NonEmptyStr
    label: NonEmptyStr
    counts_as_satisfied: bool
    """Whether this grade counts as satisfied (满意率 counts 满意 and 基本满意 in Dongguan)."""
    triggers_rehandling: bool
    """Whether this grade from the first proposer sends the proposal back (重新办理)."""

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationGrade:
        if self.counts_as_satisfied and self.triggers_rehandling:
            raise ValueError("a grade that counts as satisfied cannot trigger rehandling")
        return self


class DeclaredYear(BaseModel):
    """放假安排: one year's official calendar as the State Council announced it (国务院办公厅通知).

    It replaces the ``holidays`` package's table for that year, so it lists the whole year: every day
    off (法定节假日 and the weekdays given off by 调休) and every Saturday or Sunday made a working day.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    holidays: list[date] = Field(min_length=1)
    """放假: the year's days off (weekend days inside a holiday may be listed too, they change nothing)."""
    workdays: list[date] = Field(default_factory=list)
    """调休上班: the Saturdays and Sundays that are working days."""
    announcement: str = ""
    """Which notice this is (e.g. its title or 国办发明电 number), for whoever checks the file later."""


_YEAR_RANGE = (1950, 2200)
"""Years a policy may declare (the package's Chinese calendar starts in 1950)."""


def _declared_year_problems(year: int, declared: DeclaredYear) -> list[str]:
    """What is wrong with ``declared`` as the calendar of ``year``, one line per problem."""
    where = f"declared_years[{year}]"
    low, high = _YEAR_RANGE
    if not low <= year <= high:
        return [f"{where}: {year} is not a year between {low} and {high}"]
    problems = []
    for name, days in (("holidays", declared.holidays), ("workdays", declared.workdays)):
        outside = sorted(d for d in days if d.year != year)
        if outside:
            listed = ", ".join(d.isoformat() for d in outside)
            problems.append(
                f"{where}.{name}: {listed} not in {year} (a day of another year goes in "
                "extra_holidays or extra_workdays, or under its own year)"
            )
        repeated = sorted({d for d in days if days.count(d) > 1})
        if repeated:
            problems.append(f"{where}.{name}: listed twice: {', '.join(d.isoformat() for d in repeated)}")
    weekdays = sorted(d for d in declared.workdays if d.weekday() < 5)
    if weekdays:
        listed = ", ".join(f"{d.isoformat()} ({d.strftime('%A')})" for d in weekdays)
        problems.append(
            f"{where}.workdays: {listed} is a weekday; list only the Saturdays and Sundays made working days (调休上班)"
        )
    both = sorted(set(declared.holidays) & set(declared.workdays))
    if both:
        problems.append(f"{where}: in both holidays and workdays: {', '.join(d.isoformat() for d in both)}")
    return problems


class CalendarOverrides(BaseModel):
    """工作日历调整: days off and working days the ``holidays`` package does not know (yet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extra_holidays: list[date] = Field(default_factory=list)
    """Extra days off (放假), e.g. from a State Council announcement newer than the package."""
    extra_workdays: list[date] = Field(default_factory=list)
    """Extra working days (调休上班), e.g. a Saturday made a working day."""
    declared_years: dict[int, DeclaredYear] = Field(default_factory=dict)
    """Whole years as the State Council announced them (year → :class:`DeclaredYear`): each replaces
    the package's table for its year and makes the year official (no longer provisional)."""

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarOverrides:
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            days = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"dates in both extra_holidays and extra_workdays: {days}")
        return self

    @model_validator(mode="after")
    def _declared_years_valid(self) -> CalendarOverrides:
        problems = [
            line for year, declared in self.declared_years.items() for line in _declared_year_problems(year, declared)
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self


class StatisticsRules(BaseModel):
    """统计口径 where cities differ (the definitions themselves: ``shared/statistics.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    merged_proposals: Literal["accepted", "not_accepted", "excluded"] = "accepted"
    """立案率 and 并案: a merged proposal counts as accepted (立案, the default: its content is handled in
    the proposal it joined), as not accepted, or is left out of both numerator and denominator."""


def _check_unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    dupes: set[str] = set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(sorted(dupes))}")


class Policy(BaseModel):
    """办理规则: one city's rules for handling proposals (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    city: NonEmptyStr
    timezone: str = DEFAULT_TIMEZONE
    reply_deadline: Duration
    """办复期限: from 交办 to the lead unit's reply (Dongguan: 3 months)."""
    co_opinion_deadline: Duration
    """会办意见期限: co-handling units send their opinion to the lead unit (1 month)."""
    dispute_window: Duration
    """异议期: a unit may dispute its assignment (5 working days)."""
    evaluation_window: Duration
    """评价期: the proposers evaluate the reply (15 working days)."""
    cosign_window: Duration
    """联名确认期: co-signers confirm a joint proposal (5 working days)."""
    warning_lead_time: Duration
    """到期预警提前量: a 到期预警 is raised this long before a due date (10 working days)."""
    rehandling_deadline: Duration
    """重新办理期限: the new reply deadline after an unsatisfied evaluation, and a reopened measure's new due
    date after an unsatisfied 落实评价 (1 month)."""
    reply_classes: list[ReplyClass] = Field(min_length=1)
    """答复分类, codes unique."""
    evaluation_grades: list[EvaluationGrade] = Field(min_length=1)
    """评价等级, codes unique."""
    categories: list[NonEmptyStr] = Field(min_length=1)
    """提案分类, unique."""
    not_filed_grounds: list[NonEmptyStr] = Field(default_factory=lambda: list(DEFAULT_NOT_FILED_GROUNDS), min_length=1)
    """不予立案理由: the grounds on which the committee may decline to file a proposal."""
    assignment_mode: Literal["confirm", "auto"] = "confirm"
    """交办方式: ``confirm`` (a person confirms the suggested units) or ``auto``."""
    calendar: CalendarOverrides = Field(default_factory=CalendarOverrides)
    """工作日历调整 on top of the ``holidays`` package."""
    publish_approved_replies: bool = False
    """答复公开: approved replies are disclosed on the public route (personal data removed)."""
    statistics: StatisticsRules = Field(default_factory=StatisticsRules)
    """统计口径 choices (立案率 and merged proposals)."""
    implementation_evaluation_window: Duration = Duration(working_days=15)
    """落实评价期: the proposers evaluate what was implemented, once every measure is settled (15 working
    days, like the 评价期)."""
    implementation_evaluation_rounds: PositiveCount = 2
    """落实评价轮次上限: how many times the proposers evaluate the implementation; an unsatisfied evaluation
    reopens measures only before the last round (2: one reopening)."""
    title: NonEmptyStr | None = None
    """平台名称: the portal's title; left out, ``{city}政协提案办理平台``."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return value

    @field_validator("reply_classes")
    @classmethod
    def _unique_reply_classes(cls, value: list[ReplyClass]) -> list[ReplyClass]:
        _check_unique((c.code for c in value), "reply class codes")
        return value

    @field_validator("evaluation_grades")
    @classmethod
    def _unique_grades(cls, value: list[EvaluationGrade]) -> list[EvaluationGrade]:
        _check_unique((g.code for g in value), "evaluation grade codes")
        return value

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, value: list[str]) -> list[str]:
        _check_unique(value, "categories")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        found = contradictions(self)
        if found:
            raise ValueError("\n".join(str(c) for c in found))
        return self

    @property
    def platform_title(self) -> str:
        """The portal's title (平台名称): ``title``, else the city's 政协提案办理平台."""
        return self.title or f"{self.city}政协提案办理平台"

    def reply_class(self, code: str) -> ReplyClass:
        """答复分类 by code; ``KeyError`` if the policy has no such class."""
        for reply_class in self.reply_classes:
            if reply_class.code == code:
                return reply_class
        raise KeyError(code)

    def evaluation_grade(self, code: str) -> EvaluationGrade:
        """评价等级 by code; ``KeyError`` if the policy has no such grade."""
        for grade in self.evaluation_grades:
            if grade.code == code:
                return grade
        raise KeyError(code)


# Contradictions ---------------------------------------------------------------------------------

CONSISTENCY_YEARS = (2025, 2026)
"""The years whose every day is tried as a start date when periods of different kinds (months, working
days) are compared: years with a published official calendar (调休 included), so that holidays such as
the Spring Festival, which stretch a working-day period, are part of the comparison."""


class Contradiction(NamedTuple):
    """A policy rule that cannot hold together with another: the fields involved, the rule, and why."""

    fields: tuple[str, ...]
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{', '.join(self.fields)}: {self.message} (rule {self.rule})"


def _start_days() -> Iterator[date]:
    day, last = date(CONSISTENCY_YEARS[0], 1, 1), date(CONSISTENCY_YEARS[-1], 12, 31)
    while day <= last:
        yield day
        day += timedelta(days=1)


def _first_start_where(policy: Policy, broken: Callable[[date, WorkingCalendar], bool]) -> date | None:
    calendar = WorkingCalendar.from_policy(policy)
    return next((start for start in _start_days() if broken(start, calendar)), None)


def _ends_later(policy: Policy, later: DeadlineName, earlier: DeadlineName, *, or_same_day: bool) -> str | None:
    """Why ``later`` ends after (or, with ``or_same_day``, on the day of) ``earlier`` for some start date."""

    def broken(start: date, calendar: WorkingCalendar) -> bool:
        first = due_date(start, getattr(policy, later), calendar)
        second = due_date(start, getattr(policy, earlier), calendar)
        return first >= second if or_same_day else first > second

    start = _first_start_where(policy, broken)
    if start is None:
        return None
    calendar = WorkingCalendar.from_policy(policy)
    first, second = (due_date(start, getattr(policy, name), calendar) for name in (later, earlier))
    return (
        f"{later} ({getattr(policy, later)}) does not end before {earlier} ({getattr(policy, earlier)}): "
        f"from {start.isoformat()} the first is due {first.isoformat()}, the second {second.isoformat()}"
    )


WARNED_DEADLINES: tuple[DeadlineName, ...] = (
    "reply_deadline",
    "co_opinion_deadline",
    "evaluation_window",
    "rehandling_deadline",
)
"""The periods a 到期预警 is raised for (progress's open steps: the reply, 会办意见, the evaluation)."""


def contradictions(policy: Policy) -> list[Contradiction]:
    """The rules of ``policy`` that contradict each other; empty for a policy that can be followed.

    * 会办意见 before the reply: co-handling units send their opinion to the lead unit for its reply, so
      ``co_opinion_deadline`` may not end after ``reply_deadline`` (for any start date).
    * 异议 before the work it would undo: a unit may dispute its assignment only while nothing is due yet,
      so ``dispute_window`` must end before ``co_opinion_deadline`` and ``reply_deadline``.
    * 到期预警 inside its period: ``warning_lead_time`` must be shorter than every period it warns of
      (the reply, 会办意见, the evaluation, 重新办理), else the warning is raised the day the period starts.
    * 采纳 and 满意 can happen: at least one reply class ``counts_as_adopted`` (else 采纳类答复占比 is 0 by
      definition) and at least one evaluation grade ``counts_as_satisfied`` (else 满意率 is).

    Periods of different kinds are compared on every start day of :data:`CONSISTENCY_YEARS`.
    """
    found: list[Contradiction] = []
    why = _ends_later(policy, "co_opinion_deadline", "reply_deadline", or_same_day=False)
    if why:
        found.append(
            Contradiction(
                ("co_opinion_deadline", "reply_deadline"),
                "co_opinion_before_reply",
                why + "; the lead unit needs the co-handling units' opinions (会办意见) before its reply is due",
            )
        )
    for due in ("co_opinion_deadline", "reply_deadline"):
        why = _ends_later(policy, "dispute_window", due, or_same_day=True)
        if why:
            found.append(
                Contradiction(
                    ("dispute_window", due),
                    "dispute_before_due",
                    why + "; a unit could still dispute (异议) an assignment whose work is already due",
                )
            )
    for period in WARNED_DEADLINES:
        duration: Duration = getattr(policy, period)

        def at_once(start: date, calendar: WorkingCalendar, duration: Duration = duration) -> bool:
            return warning_date(due_date(start, duration, calendar), policy.warning_lead_time, calendar) <= start

        start = _first_start_where(policy, at_once)
        if start is not None:
            found.append(
                Contradiction(
                    ("warning_lead_time", period),
                    "warning_inside_period",
                    f"warning_lead_time ({policy.warning_lead_time}) is not shorter than {period} ({duration}): "
                    f"from {start.isoformat()} the 到期预警 would be raised the day the period starts; "
                    "shorten warning_lead_time or lengthen the period",
                )
            )
    if not any(c.counts_as_adopted for c in policy.reply_classes):
        codes = ", ".join(c.code for c in policy.reply_classes)
        found.append(
            Contradiction(
                ("reply_classes",),
                "some_class_counts_as_adopted",
                f"no reply class counts as adopted (classes {codes}); set counts_as_adopted: true on the "
                "classes that mean the proposal was adopted (Dongguan: A and B)",
            )
        )
    if not any(g.counts_as_satisfied for g in policy.evaluation_grades):
        codes = ", ".join(g.code for g in policy.evaluation_grades)
        found.append(
            Contradiction(
                ("evaluation_grades",),
                "some_grade_counts_as_satisfied",
                f"no evaluation grade counts as satisfied (grades {codes}); set counts_as_satisfied: true on "
                "满意 and 基本满意",
            )
        )
    return found


# Working-day calendar ---------------------------------------------------------------------------


class ChinaYear(NamedTuple):
    """One year of mainland China's official calendar, as the ``holidays`` package gives it."""

    days_off: frozenset[date]
    """Public holidays and the weekdays given off by 调休 (weekend days may be listed too)."""
    shifted_workdays: frozenset[date]
    """调休上班: weekend days that are working days."""


@lru_cache(maxsize=512)
def china_public_calendar(year: int) -> ChinaYear:
    """法定节假日与调休: mainland China's days off and shifted workdays for ``year``.

    From ``holidays.country_holidays("CN")``: its dates are the days off, its
    ``weekend_workdays`` the Saturdays and Sundays worked instead. The package derives those from
    its table of State Council announcements (国务院办公厅关于…部分节假日安排的通知), including
    cross-year ones (a 31 December worked for 2 January). For a year after the newest
    announcement it knows, the package only has the statutory days moved off weekends, without
    调休 workdays: add the announcement to the policy's calendar overrides. Cached per year.
    """
    cn = holidays.country_holidays("CN", years=year)
    days_off = frozenset(d for d in cn if d.year == year)
    shifted = frozenset(d for d in cn.weekend_workdays if d.year == year)
    return ChinaYear(days_off=days_off, shifted_workdays=shifted)


@lru_cache(maxsize=1)
def latest_announced_year() -> int:
    """The newest year whose State Council announcement (放假安排) the installed ``holidays`` knows.

    Later years are provisional (see the module docstring). Read from the package's table of
    announced 调休 days; should a future version move that table, the newest year with any 调休
    working day is taken instead.
    """
    try:
        from holidays.countries.china import ChinaStaticHolidays

        return max(int(year) for year in ChinaStaticHolidays.special_public_holidays)
    except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover - another package layout
        years = range(_YEAR_RANGE[0], _YEAR_RANGE[1] + 1)
        return max((y for y in years if china_public_calendar(y).shifted_workdays), default=_YEAR_RANGE[0])


def _require_date(value: date, what: str = "day") -> date:
    if isinstance(value, datetime):
        raise TypeError(f"{what} must be a date, not a datetime (use local_date() first)")
    return value


class WorkingCalendar:
    """工作日历: mainland China's working days with a policy's overrides.

    A day is a working day if it is in ``extra_workdays``; else not if it is in
    ``extra_holidays``; else, on a Saturday or Sunday, if it is a 调休 workday; else, on a
    weekday, if it is not a public holiday or 调休 day off. The public holidays and 调休 workdays
    of a declared year are the declaration's, of any other year the ``holidays`` package's.
    Immutable; the China tables are cached per year for the whole process.
    """

    __slots__ = ("_declared", "_extra_holidays", "_extra_workdays")

    def __init__(
        self,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        declared_years: Mapping[int, DeclaredYear] | None = None,
    ) -> None:
        self._extra_holidays = frozenset(_require_date(d, "an extra holiday") for d in extra_holidays)
        self._extra_workdays = frozenset(_require_date(d, "an extra workday") for d in extra_workdays)
        both = self._extra_holidays & self._extra_workdays
        if both:
            days = ", ".join(d.isoformat() for d in sorted(both))
            raise ValueError(f"dates in both extra_holidays and extra_workdays: {days}")
        problems = [line for y, dy in (declared_years or {}).items() for line in _declared_year_problems(y, dy)]
        if problems:
            raise ValueError("\n".join(problems))
        self._declared = {
            year: ChinaYear(days_off=frozenset(declared.holidays), shifted_workdays=frozenset(declared.workdays))
            for year, declared in (declared_years or {}).items()
        }

    @classmethod
    def from_overrides(cls, overrides: CalendarOverrides) -> WorkingCalendar:
        """The calendar with a policy's ``calendar`` overrides and declared years."""
        return cls(overrides.extra_holidays, overrides.extra_workdays, overrides.declared_years)

    @classmethod
    def from_policy(cls, policy: Policy) -> WorkingCalendar:
        """The calendar of ``policy``."""
        return cls.from_overrides(policy.calendar)

    def __repr__(self) -> str:
        return (
            f"WorkingCalendar(extra_holidays={sorted(self._extra_holidays)!r}, "
            f"extra_workdays={sorted(self._extra_workdays)!r}, declared_years={sorted(self._declared)!r})"
        )

    def is_official(self, year: int) -> bool:
        """Whether ``year``'s calendar is the announced one: declared in the policy, or announced in
        the ``holidays`` package (:func:`latest_announced_year`). Otherwise it is provisional."""
        return year in self._declared or year <= latest_announced_year()

    def provisional_years(self, first: date, last: date) -> tuple[int, ...]:
        """The provisional years from ``first`` to ``last`` (in either order): a deadline counted
        over these days may move once those years are announced (empty: it is final)."""
        low, high = sorted((_require_date(first).year, _require_date(last).year))
        return tuple(year for year in range(low, high + 1) if not self.is_official(year))

    def is_provisional(self, first: date, last: date) -> bool:
        """Whether any day from ``first`` to ``last`` lies in a provisional year (暂定日历)."""
        return bool(self.provisional_years(first, last))

    def _year(self, year: int) -> ChinaYear:
        declared = self._declared.get(year)
        return declared if declared is not None else china_public_calendar(year)

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (工作日)."""
        _require_date(d)
        if d in self._extra_workdays:
            return True
        if d in self._extra_holidays:
            return False
        year = self._year(d.year)
        if d.weekday() >= 5:
            return d in year.shifted_workdays
        return d not in year.days_off

    def add_working_days(self, d: date, n: int) -> date:
        """The ``n``-th working day after ``d`` (``d`` itself not counted).

        A negative ``n`` counts back: the ``|n|``-th working day before ``d``. ``n == 0``
        returns ``d`` unchanged, working day or not.
        """
        _require_date(d)
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        while remaining:
            d += step
            if self.is_working_day(d):
                remaining -= 1
        return d

    def next_working_day_on_or_after(self, d: date) -> date:
        """``d`` if it is a working day, else the first working day after it."""
        _require_date(d)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def previous_working_day_on_or_before(self, d: date) -> date:
        """``d`` if it is a working day, else the last working day before it."""
        _require_date(d)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d


# Due dates --------------------------------------------------------------------------------------


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def local_date(moment: date | datetime, tz: str = DEFAULT_TIMEZONE) -> date:
    """The calendar date of ``moment`` in ``tz``: a date as is, an aware datetime converted.

    A naive datetime raises ``ValueError``: its local date cannot be known.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime {moment.isoformat()} has no time zone; pass an aware datetime or a date")
        return moment.astimezone(_zone(tz)).date()
    return moment


def add_months(d: date, months: int) -> date:
    """The same day of the month ``months`` later (or earlier if negative), clamped to month end."""
    _require_date(d)
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    return date(year, month, min(d.day, _calendar.monthrange(year, month)[1]))


def due_date(
    start: date | datetime,
    duration: Duration,
    calendar: WorkingCalendar,
    tz: str = DEFAULT_TIMEZONE,
) -> date:
    """到期日: the last on-time day of a period of ``duration`` from ``start``.

    The rules are in the module docstring: working days count from the day after the start;
    months and calendar days land on a date that rolls forward to a working day.
    """
    day = local_date(start, tz)
    kind, amount = duration.kind, duration.amount
    if kind == "working_days":
        return calendar.add_working_days(day, amount)
    target = add_months(day, amount) if kind == "months" else day + timedelta(days=amount)
    return calendar.next_working_day_on_or_after(target)


def warning_date(due: date, lead: Duration, calendar: WorkingCalendar) -> date:
    """到期预警日: ``lead`` before ``due``.

    Working days: the N-th working day before ``due``. Months and days: that many back, then
    rolled back to the nearest working day on or before it.
    """
    _require_date(due, "due")
    kind, amount = lead.kind, lead.amount
    if kind == "working_days":
        return calendar.add_working_days(due, -amount)
    target = add_months(due, -amount) if kind == "months" else due - timedelta(days=amount)
    return calendar.previous_working_day_on_or_before(target)


def deadline_for(
    policy: Policy,
    name: DeadlineName,
    start: date | datetime,
    calendar: WorkingCalendar | None = None,
) -> date:
    """The due date of the policy period ``name`` (e.g. ``"reply_deadline"``) from ``start``.

    Uses the policy's time zone, and its calendar unless ``calendar`` is given.
    """
    if name not in DEADLINE_NAMES:
        raise ValueError(f"unknown deadline {name!r}; one of {', '.join(DEADLINE_NAMES)}")
    duration: Duration = getattr(policy, name)
    cal = calendar if calendar is not None else WorkingCalendar.from_policy(policy)
    return due_date(start, duration, cal, policy.timezone)


# Loading ----------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (else the last one wins)."""


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: list[Any] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.append(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Duration``, ``list[ReplyClass]``…), if any."""
    candidates = [annotation, *get_args(annotation)] if get_origin(annotation) else [annotation]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _allowed_fields(loc: Sequence[int | str]) -> list[str]:
    """The field names allowed where the last element of ``loc`` is."""
    model: type[BaseModel] | None = Policy
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _format_loc(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind: str = error["type"]
    message: str = error["msg"]
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        allowed = _allowed_fields(loc)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        return f"{_format_loc(loc)}: unknown field ({hint})"
    message = message.removeprefix("Value error, ")
    value = error.get("input")
    # Our own checks (value_error) already say what they got.
    if kind not in ("missing", "value_error") and isinstance(value, (str, int, float, bool, date)):
        message += f" (got {value!r})"
    return f"{_format_loc(loc)}: {message}"


def _problems(exc: ValidationError) -> list[str]:
    """One line per problem; the cross-field ones (:func:`contradictions`) already name their fields."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        if not error["loc"] and error["type"] == "value_error":
            problems += str(error["msg"]).removeprefix("Value error, ").split("\n")
        else:
            problems.append(_describe(error))
    return problems


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """The :class:`Policy` in YAML ``text``; ``source`` names it in a :class:`PolicyError`."""
    try:
        stream = io.StringIO(text)
        stream.name = source  # named in the marks of a YAML error
        data = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(source, [str(exc)], "not valid YAML") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise PolicyError(source, [f"(top level): expected a mapping of fields, got {got}"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _problems(exc)) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path``, else in ``$PROPOSALFLOW_POLICY_FILE``, else the packaged Dongguan one.

    Raises :class:`PolicyError` (a ``ValueError``) naming the file, the field path and the
    problem if the file is missing or unreadable, is not YAML, or does not validate.
    """
    env_value = os.environ.get(POLICY_ENV_VAR, "").strip()
    if path is not None:
        file, origin = Path(path).expanduser(), ""
    elif env_value:
        file, origin = Path(env_value).expanduser(), f" (from ${POLICY_ENV_VAR})"
    else:
        package, name = _PACKAGED_POLICY
        resource = resources.files(package).joinpath(name)
        source = f"{resource} (packaged default)"
        try:
            text = resource.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(source, [], f"cannot read packaged policy ({exc})") from None
        return parse_policy(text, source)

    source = f"{file}{origin}"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(source, [], "policy file not found") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(source, [], f"policy file is not UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise PolicyError(source, [], f"cannot read policy file ({exc.strerror or exc})") from None
    return parse_policy(text, source)


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The process's policy: :func:`load_policy` with no argument, loaded once and cached.

    It honours ``$PROPOSALFLOW_POLICY_FILE`` as it was at the first call; tests that change the
    variable call ``default_policy.cache_clear()``.
    """
    return load_policy()
