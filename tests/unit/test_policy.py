"""办理规则 (shared.policy): the Dongguan default, durations, the working-day calendar, due dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from shared.policy import (
    DEADLINE_NAMES,
    POLICY_ENV_VAR,
    Duration,
    Policy,
    PolicyError,
    WorkingCalendar,
    add_months,
    china_public_calendar,
    deadline_for,
    default_policy,
    due_date,
    load_policy,
    local_date,
    parse_policy,
    warning_date,
)

PACKAGED = Path(__file__).resolve().parents[2] / "shared" / "policies" / "dongguan.yaml"

CAL = WorkingCalendar()
FIVE_WORKING_DAYS = Duration(working_days=5)


@pytest.fixture(autouse=True)
def _no_policy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the packaged default, whatever the developer's shell says."""
    monkeypatch.delenv(POLICY_ENV_VAR, raising=False)
    default_policy.cache_clear()


def _dongguan_data() -> dict[str, object]:
    data = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _write_policy(tmp_path: Path, data: dict[str, object], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# The packaged Dongguan policy -----------------------------------------------------------------


def test_default_policy_loads_with_the_documented_values() -> None:
    policy = load_policy()

    assert policy.city == "东莞市"
    assert policy.timezone == "Asia/Shanghai"
    assert policy.reply_deadline == Duration(months=3)
    assert policy.co_opinion_deadline == Duration(months=1)
    assert policy.dispute_window == Duration(working_days=5)
    assert policy.evaluation_window == Duration(working_days=15)
    assert policy.cosign_window == Duration(working_days=5)
    assert policy.warning_lead_time == Duration(working_days=10)
    assert policy.rehandling_deadline == Duration(months=1)
    assert [(c.code, c.label, c.counts_as_adopted) for c in policy.reply_classes] == [
        ("A", "已解决或采纳", True),
        ("B", "正在解决或列入计划", True),
        ("C", "留作参考", False),
    ]
    assert [(g.code, g.label, g.counts_as_satisfied, g.triggers_rehandling) for g in policy.evaluation_grades] == [
        ("satisfied", "满意", True, False),
        ("basically_satisfied", "基本满意", True, False),
        ("unsatisfied", "不满意", False, True),
    ]
    assert policy.categories == [
        "经济建设",
        "政治建设",
        "文化建设",
        "社会建设",
        "生态文明建设",
    ]
    assert policy.assignment_mode == "confirm"
    assert policy.calendar.extra_holidays == []
    assert policy.calendar.extra_workdays == []
    assert policy.reply_class("C").counts_as_adopted is False
    assert policy.evaluation_grade("unsatisfied").triggers_rehandling is True
    with pytest.raises(KeyError):
        policy.reply_class("D")


def test_default_policy_is_cached_and_frozen() -> None:
    policy = default_policy()
    assert default_policy() is policy
    with pytest.raises(ValueError, match="frozen"):
        setattr(policy, "city", "深圳市")  # noqa: B010 - bypass static frozen checks


def test_policy_round_trips_through_its_dump() -> None:
    policy = load_policy()
    dumped = policy.model_dump(mode="json")
    assert dumped["reply_deadline"] == "3 months"
    assert dumped["dispute_window"] == "5 working days"
    assert Policy.model_validate(dumped) == policy


# Duration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 months", Duration(months=3)),
        ("1 month", Duration(months=1)),
        ("5 working days", Duration(working_days=5)),
        ("1 working day", Duration(working_days=1)),
        ("  15  Working   Days ", Duration(working_days=15)),
        ("30 days", Duration(days=30)),
        ("1 day", Duration(days=1)),
    ],
)
def test_duration_string_forms_parse(text: str, expected: Duration) -> None:
    assert Duration.model_validate(text) == expected


def test_duration_mapping_form_parses_and_prints() -> None:
    duration = Duration.model_validate({"working_days": 5})
    assert duration == Duration(working_days=5)
    assert (duration.kind, duration.amount) == ("working_days", 5)
    assert str(duration) == "5 working days"
    assert str(Duration(months=1)) == "1 month"
    assert repr(Duration(days=30)) == "Duration(days=30)"


@pytest.mark.parametrize("text", ["3 moths", "three months", "5 weeks", "months 3", ""])
def test_bad_duration_string_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="cannot parse duration") as excinfo:
        Duration.model_validate(text)
    assert "'N months', 'N days' (calendar days) or 'N working days'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"months": 3, "days": 2}, "exactly one of months, days, working_days"),
        ({}, "exactly one of months, days, working_days"),
        ({"working_days": 0}, "greater than 0"),
        ({"weeks": 2}, "Extra inputs are not permitted"),
        ("0 days", "greater than 0"),
        (90, "a duration cannot be 90"),
    ],
)
def test_invalid_durations_are_rejected(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Duration.model_validate(data)


# The working-day calendar (工作日历) ----------------------------------------------------------


def test_package_knows_the_2025_and_2026_shifted_workdays() -> None:
    """调休上班 days, per the State Council announcements for 2025 and 2026."""
    assert china_public_calendar(2025).shifted_workdays == {
        date(2025, 1, 26),  # Sun, 春节
        date(2025, 2, 8),  # Sat, 春节
        date(2025, 4, 27),  # Sun, 劳动节
        date(2025, 9, 28),  # Sun, 国庆节/中秋节
        date(2025, 10, 11),  # Sat, 国庆节/中秋节
    }
    assert china_public_calendar(2026).shifted_workdays == {
        date(2026, 1, 4),  # Sun, 元旦
        date(2026, 2, 14),  # Sat, 春节
        date(2026, 2, 28),  # Sat, 春节
        date(2026, 5, 9),  # Sat, 劳动节
        date(2026, 9, 20),  # Sun, 国庆节
        date(2026, 10, 10),  # Sat, 国庆节
    }


def _days_off(start: date, end: date) -> list[date]:
    days = (start + timedelta(n) for n in range((end - start).days + 1))
    return [d for d in days if not CAL.is_working_day(d)]


def test_national_day_2025_and_spring_festival_2026_are_off() -> None:
    # 2025 国庆节、中秋节: 10月1日至8日放假调休, 共8天.
    assert _days_off(date(2025, 9, 27), date(2025, 10, 12)) == [
        date(2025, 9, 27),  # Sat (an ordinary weekend day)
        *(date(2025, 10, d) for d in range(1, 9)),
        date(2025, 10, 12),  # Sun
    ]
    # 2026 春节: 2月15日至23日放假调休, 共9天; 2月14日、2月28日 (Sat) 上班.
    assert _days_off(date(2026, 2, 14), date(2026, 2, 28)) == [date(2026, 2, d) for d in range(15, 24)]
    # 2026 国庆节: 10月1日至7日放假调休, 共7天; 9月20日 (Sun)、10月10日 (Sat) 上班.
    assert _days_off(date(2026, 10, 1), date(2026, 10, 10)) == [
        *(date(2026, 10, d) for d in range(1, 8)),
    ]


def test_a_shifted_workday_counts_as_a_working_day() -> None:
    sunday = date(2025, 9, 28)
    saturday = date(2025, 10, 11)
    assert sunday.weekday() == 6 and saturday.weekday() == 5
    assert CAL.is_working_day(sunday)
    assert CAL.is_working_day(saturday)
    assert not CAL.is_working_day(date(2025, 10, 4))  # an ordinary Saturday inside the holiday
    # Friday 2025-10-10 + 1 working day is Saturday 10-11, a 调休 workday.
    assert CAL.add_working_days(date(2025, 10, 10), 1) == saturday
    # Saturday 2025-09-27 + 1 working day is Sunday 09-28.
    assert CAL.add_working_days(date(2025, 9, 27), 1) == sunday


def test_working_day_helpers() -> None:
    holiday = date(2025, 10, 3)
    assert CAL.next_working_day_on_or_after(holiday) == date(2025, 10, 9)
    assert CAL.previous_working_day_on_or_before(holiday) == date(2025, 9, 30)
    assert CAL.next_working_day_on_or_after(date(2025, 10, 9)) == date(2025, 10, 9)
    assert CAL.add_working_days(holiday, 0) == holiday
    assert CAL.add_working_days(date(2025, 10, 9), -1) == date(2025, 9, 30)
    with pytest.raises(TypeError, match="not a datetime"):
        CAL.is_working_day(datetime(2025, 10, 9, tzinfo=UTC))


def test_extra_holidays_and_workdays_override_the_package() -> None:
    calendar = WorkingCalendar(
        extra_holidays=[
            date(2025, 9, 29),
            date(2025, 9, 28),
        ],  # a Monday, a 调休 Sunday
        extra_workdays=[date(2025, 10, 4)],  # a Saturday inside the National Day holiday
    )
    assert not calendar.is_working_day(date(2025, 9, 29))
    assert not calendar.is_working_day(date(2025, 9, 28))
    assert calendar.is_working_day(date(2025, 10, 4))
    # From Fri 09-26: 09-30 (1), 10-04 (2), 10-09 (3), 10-10 (4), 10-11 Sat 调休 (5).
    assert due_date(date(2025, 9, 26), FIVE_WORKING_DAYS, calendar) == date(2025, 10, 11)


def test_policy_calendar_overrides_take_effect(tmp_path: Path) -> None:
    data = _dongguan_data()
    data["calendar"] = {
        "extra_holidays": [date(2025, 9, 29)],
        "extra_workdays": ["2025-10-04"],
    }
    policy = load_policy(_write_policy(tmp_path, data))
    assert policy.calendar.extra_workdays == [date(2025, 10, 4)]
    calendar = WorkingCalendar.from_policy(policy)
    assert calendar.is_working_day(date(2025, 10, 4))  # Sat inside the holiday, made a workday
    assert not calendar.is_working_day(date(2025, 9, 29))
    wednesday = date(2025, 9, 24)
    # From Wed 09-24: 09-25 (1), 09-26 (2), 09-28 Sun 调休 (3), 09-30 (4), 10-04 Sat (5).
    assert deadline_for(policy, "dispute_window", wednesday) == date(2025, 10, 4)
    # The default calendar counts 09-29 and ends before the holiday: 09-30.
    assert deadline_for(load_policy(), "dispute_window", wednesday) == date(2025, 9, 30)


def test_a_date_in_both_override_lists_is_rejected() -> None:
    with pytest.raises(ValueError, match="both extra_holidays and extra_workdays: 2025-10-04"):
        WorkingCalendar(extra_holidays=[date(2025, 10, 4)], extra_workdays=[date(2025, 10, 4)])
    data = _dongguan_data()
    data["calendar"] = {
        "extra_holidays": ["2025-10-04"],
        "extra_workdays": ["2025-10-04"],
    }
    with pytest.raises(PolicyError, match="calendar: dates in both"):
        parse_policy(yaml.safe_dump(data, allow_unicode=True))


# Due dates (到期日) ---------------------------------------------------------------------------


def test_five_working_days_across_national_day_2025() -> None:
    # Start Fri 2025-09-26 (异议期 5 working days); the start day itself is not counted.
    #   Sat 09-27  weekend                         -
    #   Sun 09-28  调休 workday                     1
    #   Mon 09-29                                   2
    #   Tue 09-30                                   3
    #   Wed 10-01 .. Wed 10-08  国庆节/中秋节 holiday  -
    #   Thu 10-09                                   4
    #   Fri 10-10                                   5  -> due 2025-10-10
    # (Without the Sunday 调休 workday it would be Sat 10-11, itself a 调休 workday.)
    assert due_date(date(2025, 9, 26), FIVE_WORKING_DAYS, CAL) == date(2025, 10, 10)


def test_three_months_ending_in_a_holiday_rolls_forward() -> None:
    # 2025-07-01 + 3 months = Wed 2025-10-01, 国庆节; Oct 1-8 are all off -> Thu 2025-10-09.
    assert due_date(date(2025, 7, 1), Duration(months=3), CAL) == date(2025, 10, 9)
    policy = load_policy()
    assert deadline_for(policy, "reply_deadline", date(2025, 7, 1)) == date(2025, 10, 9)


def test_calendar_days_roll_forward_too() -> None:
    # 2025-09-01 + 30 days = Wed 2025-10-01 -> Thu 2025-10-09.
    assert due_date(date(2025, 9, 1), Duration(days=30), CAL) == date(2025, 10, 9)
    # 2025-03-03 + 5 days = Sat 2025-03-08 -> Mon 2025-03-10.
    assert due_date(date(2025, 3, 3), Duration(days=5), CAL) == date(2025, 3, 10)


def test_month_end_clamps() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2025, 10, 31), 4) == date(2026, 2, 28)
    assert add_months(date(2025, 3, 31), -1) == date(2025, 2, 28)
    # Fri 2025-02-28 is a working day.
    assert due_date(date(2025, 1, 31), Duration(months=1), CAL) == date(2025, 2, 28)
    # Sat 2026-02-28 is a 调休 workday (春节), so no roll-forward.
    assert due_date(date(2026, 1, 31), Duration(months=1), CAL) == date(2026, 2, 28)
    # Sat 2027-02-27 is not -> Mon 2027-03-01.
    assert due_date(date(2027, 1, 31), Duration(months=1), CAL) == date(2027, 3, 1)


def test_aware_datetime_uses_the_shanghai_date() -> None:
    # 2025-03-03 (Mon) 18:30 UTC is Tue 2025-03-04 02:30 in Shanghai.
    late_utc = datetime(2025, 3, 3, 18, 30, tzinfo=UTC)
    assert local_date(late_utc) == date(2025, 3, 4)
    # Tue 03-04 + 1 working day = Wed 03-05 (the UTC date would have given Tue 03-04).
    one = Duration(working_days=1)
    assert due_date(late_utc, one, CAL) == date(2025, 3, 5)
    assert due_date(late_utc, one, CAL, tz="UTC") == date(2025, 3, 4)
    beijing = timezone(timedelta(hours=8))
    assert due_date(datetime(2025, 3, 4, 2, 30, tzinfo=beijing), one, CAL) == date(2025, 3, 5)
    # 2025-09-27 17:00 UTC is Sun 09-28 01:00 in Shanghai. 5 working days after 09-28:
    # 09-29, 09-30, 10-09, 10-10, 10-11 (Sat, 调休) -> 10-11; from the UTC date 09-27 it would
    # be 10-10 (09-28 itself would count).
    evening = datetime(2025, 9, 27, 17, tzinfo=UTC)
    assert deadline_for(load_policy(), "dispute_window", evening) == date(2025, 10, 11)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        due_date(datetime(2025, 3, 3, 9, 0), FIVE_WORKING_DAYS, CAL)


def test_warning_date_goes_back_from_the_due_date() -> None:
    # 10 working days before Thu 2025-10-09: 09-30, 09-29, 09-28 (调休 Sun), 09-26, 09-25,
    # 09-24, 09-23, 09-22, 09-19, 09-18.
    assert warning_date(date(2025, 10, 9), Duration(working_days=10), CAL) == date(2025, 9, 18)
    # 1 month before 2025-11-05 is Sun 10-05 (holiday) -> back to Tue 09-30.
    assert warning_date(date(2025, 11, 5), Duration(months=1), CAL) == date(2025, 9, 30)
    # 3 days before Mon 2025-03-10 is Fri 03-07, a working day.
    assert warning_date(date(2025, 3, 10), Duration(days=3), CAL) == date(2025, 3, 7)


def test_deadline_for_every_policy_period() -> None:
    policy = load_policy()
    start = date(2025, 3, 3)  # a Monday with no holiday nearby
    due = {name: deadline_for(policy, name, start) for name in DEADLINE_NAMES}
    assert due == {
        "reply_deadline": date(2025, 6, 3),
        "co_opinion_deadline": date(2025, 4, 3),
        "dispute_window": date(2025, 3, 10),
        "evaluation_window": date(2025, 3, 24),
        "cosign_window": date(2025, 3, 10),
        "rehandling_deadline": date(2025, 4, 3),
        "implementation_evaluation_window": date(2025, 3, 24),
    }
    with pytest.raises(ValueError, match="unknown deadline 'warning_lead_time'"):
        deadline_for(policy, "warning_lead_time", start)  # type: ignore[arg-type]


# Loading and errors ---------------------------------------------------------------------------


def test_env_var_loads_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dongguan_data()
    data.update(city="深圳市", reply_deadline={"days": 60}, assignment_mode="auto")
    path = _write_policy(tmp_path, data, "shenzhen.yaml")
    monkeypatch.setenv(POLICY_ENV_VAR, str(path))

    policy = load_policy()
    assert policy.city == "深圳市"
    assert policy.reply_deadline == Duration(days=60)
    assert policy.assignment_mode == "auto"
    default_policy.cache_clear()
    assert default_policy().city == "深圳市"
    # An explicit path still wins over the variable.
    assert load_policy(PACKAGED).city == "东莞市"


def test_missing_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyError, match="policy file not found") as excinfo:
        load_policy(missing)
    assert str(missing) in str(excinfo.value)
    monkeypatch.setenv(POLICY_ENV_VAR, str(missing))
    with pytest.raises(PolicyError, match=f"from \\${POLICY_ENV_VAR}"):
        load_policy()


def test_bad_duration_in_a_file_names_file_field_and_forms(tmp_path: Path) -> None:
    data = _dongguan_data()
    data["reply_deadline"] = "3 moths"
    path = _write_policy(tmp_path, data)
    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "reply_deadline: cannot parse duration '3 moths'" in message
    assert "'N working days'" in message
    assert isinstance(excinfo.value, ValueError)


def test_unknown_field_is_named_with_a_suggestion(tmp_path: Path) -> None:
    data = _dongguan_data()
    data["reply_deadlin"] = data.pop("reply_deadline")
    data["calendar"] = {"extra_holiday": []}
    with pytest.raises(PolicyError) as excinfo:
        load_policy(_write_policy(tmp_path, data))
    problems = excinfo.value.problems
    assert "reply_deadline: Field required" in problems
    assert "reply_deadlin: unknown field (did you mean 'reply_deadline'?)" in problems
    assert "calendar.extra_holiday: unknown field (did you mean 'extra_holidays'?)" in problems


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"timezone": "Asia/Dongguan"}, "timezone: unknown time zone 'Asia/Dongguan'"),
        (
            {"assignment_mode": "manual"},
            "assignment_mode: Input should be 'confirm' or 'auto'",
        ),
        ({"reply_classes": []}, "reply_classes: List should have at least 1 item"),
        (
            {"reply_classes": [{"code": "A", "label": "x", "counts_as_adopted": True}] * 2},
            "reply_classes: duplicate reply class codes: A",
        ),
        (
            {"categories": ["经济建设", "经济建设"]},
            "categories: duplicate categories: 经济建设",
        ),
        (
            {"reply_classes": [{"code": "", "label": "x", "counts_as_adopted": True}]},
            "reply_classes[0].code: String should have at least 1 character",
        ),
        (
            {
                "evaluation_grades": [
                    {
                        "code": "x",
                        "label": "x",
                        "counts_as_satisfied": True,
                        "triggers_rehandling": True,
                    }
                ]
            },
            "evaluation_grades[0]: a grade that counts as satisfied cannot trigger rehandling",
        ),
        (
            {"dispute_window": {"working_days": 0}},
            "dispute_window.working_days: Input should be",
        ),
    ],
)
def test_invalid_fields_are_reported_with_their_path(change: dict[str, object], problem: str) -> None:
    data = _dongguan_data()
    data.update(change)
    with pytest.raises(PolicyError) as excinfo:
        parse_policy(yaml.safe_dump(data, allow_unicode=True), "test.yaml")
    assert any(p.startswith(problem) for p in excinfo.value.problems), excinfo.value.problems
    assert str(excinfo.value).startswith("invalid policy in test.yaml:")


def test_invalid_yaml_and_duplicate_keys_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("city: 东莞市\nreply_deadline: [3 months\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML") as excinfo:
        load_policy(broken)
    assert str(broken) in str(excinfo.value)

    with pytest.raises(PolicyError, match="found duplicate key 'city'"):
        parse_policy("city: 东莞市\ncity: 深圳市\n")
    with pytest.raises(PolicyError, match="expected a mapping of fields, got an empty file"):
        parse_policy("")


def test_merged_proposals_in_the_filing_rate_default_to_accepted_and_a_typo_is_named(tmp_path: Path) -> None:
    assert load_policy().statistics.merged_proposals == "accepted"
    data = _dongguan_data()
    data.pop("statistics")
    assert parse_policy(yaml.safe_dump(data, allow_unicode=True)).statistics.merged_proposals == "accepted"
    data["statistics"] = {"merged_proposals": "excluded"}
    assert parse_policy(yaml.safe_dump(data, allow_unicode=True)).statistics.merged_proposals == "excluded"
    data["statistics"] = {"merged_proposals": "accept"}
    with pytest.raises(PolicyError) as excinfo:
        load_policy(_write_policy(tmp_path, data))
    assert "statistics.merged_proposals" in str(excinfo.value)
    assert "'accepted', 'not_accepted' or 'excluded'" in str(excinfo.value)
