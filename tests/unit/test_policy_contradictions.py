"""办理规则 that cannot hold together are refused when the policy loads, with the fields they involve named.

Each test starts from the packaged Dongguan policy (which has none) and changes the fields a city could
get wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.policy import Policy, PolicyError, contradictions, load_policy, parse_policy

PACKAGED = Path(__file__).resolve().parents[2] / "shared" / "policies" / "dongguan.yaml"


def dongguan(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
    data.update(changes)
    return dict(data)


def problems_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as refused:
        parse_policy(yaml.safe_dump(data, allow_unicode=True), "city.yaml")
    assert str(refused.value).startswith("invalid policy in city.yaml:")
    return refused.value.problems


def test_the_packaged_policy_and_the_issues_second_city_hold_together() -> None:
    assert contradictions(load_policy()) == []
    # A/B/C/D, a 10-working-day dispute window, 2-month co-opinions, a 20-working-day evaluation window.
    four_classes = [{"code": code, "label": code, "counts_as_adopted": code in "AB"} for code in ("A", "B", "C", "D")]
    other = dongguan(
        reply_classes=four_classes,
        dispute_window="10 working days",
        co_opinion_deadline="2 months",
        evaluation_window="20 working days",
    )
    assert contradictions(Policy.model_validate(other)) == []


def test_a_co_opinion_deadline_after_the_reply_deadline_is_refused() -> None:
    problems = problems_of(dongguan(co_opinion_deadline="2 months", reply_deadline="1 month"))
    assert problems == (
        "co_opinion_deadline, reply_deadline: co_opinion_deadline (2 months) does not end before reply_deadline "
        "(1 month): from 2025-01-01 the first is due 2025-03-03, the second 2025-02-05; the lead unit needs the "
        "co-handling units' opinions (会办意见) before its reply is due (rule co_opinion_before_reply)",
    )


def test_a_co_opinion_deadline_that_only_a_holiday_pushes_past_the_reply_is_refused_too() -> None:
    # 22 working days usually end before a month does; across the 2025 Spring Festival they do not.
    problems = problems_of(dongguan(co_opinion_deadline="22 working days", reply_deadline="1 month"))
    assert len(problems) == 1 and problems[0].startswith("co_opinion_deadline, reply_deadline: ")
    assert "from 2025-01-" in problems[0]
    assert contradictions(Policy.model_validate(dongguan(co_opinion_deadline="15 working days"))) == []


def test_a_co_opinion_due_with_the_reply_is_allowed() -> None:
    assert contradictions(Policy.model_validate(dongguan(co_opinion_deadline="3 months"))) == []


def test_a_dispute_window_that_outlasts_the_co_opinion_or_reply_deadline_is_refused() -> None:
    problems = problems_of(dongguan(dispute_window="25 working days"))
    assert [p.split(":")[0] for p in problems] == ["dispute_window, co_opinion_deadline"]
    assert "a unit could still dispute (异议) an assignment whose work is already due" in problems[0]
    problems = problems_of(dongguan(dispute_window="4 months", co_opinion_deadline="3 months"))
    assert [p.split(":")[0] for p in problems] == [
        "dispute_window, co_opinion_deadline",
        "dispute_window, reply_deadline",
    ]


def test_a_warning_lead_time_as_long_as_a_period_it_warns_of_is_refused() -> None:
    problems = problems_of(dongguan(warning_lead_time="15 working days"))
    assert problems == (
        "warning_lead_time, evaluation_window: warning_lead_time (15 working days) is not shorter than "
        "evaluation_window (15 working days): from 2025-01-01 the 到期预警 would be raised the day the period "
        "starts; shorten warning_lead_time or lengthen the period (rule warning_inside_period)",
    )
    problems = problems_of(dongguan(warning_lead_time="1 month"))
    assert {p.split(":")[0] for p in problems} == {
        "warning_lead_time, co_opinion_deadline",
        "warning_lead_time, evaluation_window",
        "warning_lead_time, rehandling_deadline",
    }


def test_a_class_list_with_no_class_counted_as_adopted_is_refused() -> None:
    classes = [
        {"code": "甲", "label": "已采纳", "counts_as_adopted": False},
        {"code": "乙", "label": "参考", "counts_as_adopted": False},
    ]
    assert problems_of(dongguan(reply_classes=classes)) == (
        "reply_classes: no reply class counts as adopted (classes 甲, 乙); set counts_as_adopted: true on the "
        "classes that mean the proposal was adopted (Dongguan: A and B) (rule some_class_counts_as_adopted)",
    )


def test_grades_with_none_counted_as_satisfied_are_refused() -> None:
    grades = [
        {"code": "ok", "label": "一般", "counts_as_satisfied": False, "triggers_rehandling": False},
        {"code": "bad", "label": "不满意", "counts_as_satisfied": False, "triggers_rehandling": True},
    ]
    (problem,) = problems_of(dongguan(evaluation_grades=grades))
    assert problem.startswith("evaluation_grades: no evaluation grade counts as satisfied (grades ok, bad)")


def test_every_contradiction_is_reported_at_once_with_the_file(tmp_path: Path) -> None:
    file = tmp_path / "city.yaml"
    data = dongguan(co_opinion_deadline="4 months", warning_lead_time="20 working days")
    data["reply_classes"] = [{**c, "counts_as_adopted": False} for c in data["reply_classes"]]
    file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(file)
    fields = [p.split(":")[0] for p in refused.value.problems]
    assert fields == [
        "co_opinion_deadline, reply_deadline",
        "warning_lead_time, evaluation_window",
        "warning_lead_time, rehandling_deadline",
        "reply_classes",
    ]
    assert str(file) in str(refused.value)
