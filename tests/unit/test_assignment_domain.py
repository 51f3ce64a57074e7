"""Assignment rules (交办): routing, forms, the dispute window, deadlines on the mainland calendar,
and the routing accuracy measured on the labelled set."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.assignment import domain
from services.assignment.catalogs import load_labelled, load_routing
from services.assignment.domain import AssignmentStatus, Route, RoutingRules, UnitResponse
from services.assignment.evaluate import evaluate, split
from services.assignment.learning import Example, UnitRanker, bigrams
from shared.errors import RuleViolation
from shared.events import AssignmentForm
from shared.policy import WorkingCalendar, default_policy


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return load_routing()


def names(table) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {unit.id: unit.short_name for unit in table.units}


# Routing ---------------------------------------------------------------------------------------------


def test_bigrams_stay_within_runs_of_chinese_text() -> None:
    assert bigrams("虎门港, 5G") == ["虎门", "门港", "5G"]


def test_the_learned_ranking_puts_the_unit_of_similar_past_proposals_first() -> None:
    ranker = UnitRanker(
        [
            Example("虎门服装产业转型 虎门服交会", "dg-humen"),
            Example("虎门港区港产城融合", "dg-humen"),
            Example("轨道交通建设 地铁线网", "dg-jtj"),
        ]
    )
    assert ranker.rank("关于完善虎门港区物流配套的建议")[0][0] == "dg-humen"


def test_a_confident_learned_ranking_overrules_an_incidental_title_keyword(table) -> None:  # type: ignore[no-untyped-def]
    ranking = [("dg-changan", 0.30), ("dg-jyj", 0.17)]
    route, ranked = domain.combined_route("关于长安镇学位供给的建议", "", "社会建设", table, ranking, names(table))
    assert route.lead == "dg-changan"
    assert ranked[:2] == ["dg-changan", "dg-jyj"]
    assert any("长安镇" in reason for reason in route.reasons)


def test_a_title_keyword_decides_when_the_learned_ranking_is_unsure_and_both_are_shown(table) -> None:  # type: ignore[no-untyped-def]
    ranking = [("dg-nyj", 0.20), ("dg-zrzyj", 0.19)]
    route, _ = domain.combined_route("关于推进全域土地综合整治的建议", "", "经济建设", table, ranking, names(table))
    assert (route.lead, route.co, route.form) == ("dg-zrzyj", ("dg-nyj", "dg-fgj"), AssignmentForm.LEAD_CO)
    assert route.reasons[0].startswith("标题关键词: 土地")
    assert route.reasons[1].startswith("相似历史提案: 市农业农村局 0.20")


def test_without_keyword_or_similar_past_proposals_the_category_default_handles_it(table) -> None:  # type: ignore[no-untyped-def]
    route, _ = domain.combined_route("关于完善基层协商的建议", "", "政治建设", table, [("dg-zzb", 0.05)], names(table))
    assert route.lead == "dg-sfj"


def test_learned_routing_is_at_least_as_accurate_as_the_rules_alone_on_the_holdout(table) -> None:  # type: ignore[no-untyped-def]
    items = load_labelled()
    assert len(items) >= 150
    assert {item.lead_unit for item in items} == {unit.id for unit in table.units}
    train, holdout = split(items)
    assert not {item.id for item in train} & {item.id for item in holdout}
    report = evaluate(table.rules_only(), names(table), items)
    print("\n".join(report.lines()))
    assert report.combined.top1 >= report.rules.top1
    assert report.combined.top3 >= report.rules.top3
    # The README's performance section quotes these; a change that lowers them must update it.
    assert report.combined.top1 >= 0.80


def test_routing_rules_must_name_active_units_and_policy_categories(table) -> None:  # type: ignore[no-untyped-def]
    rules = RoutingRules(rules=[], category_defaults={"体育": "dg-whj"}, fallback="dg-nope")
    with pytest.raises(RuleViolation) as refused:
        domain.rules_must_name_known_units(rules, [u.id for u in table.units], default_policy().categories)
    assert refused.value.rule == "routing_rules_valid"
    assert "体育" in refused.value.message and "dg-nope" in refused.value.message


# Forms (交办形式) ---------------------------------------------------------------------------------------


def test_forms_follow_from_the_units() -> None:
    assert domain.route_of_form(None, "a", [], []).form == AssignmentForm.SINGLE
    assert domain.route_of_form(None, "a", ["b"], []).form == AssignmentForm.LEAD_CO
    split_route = domain.route_of_form(AssignmentForm.SPLIT, "a", [], ["b", "c"])
    assert (split_route.form, split_route.units) == (AssignmentForm.SPLIT, ("a", "b", "c"))


@pytest.mark.parametrize(
    ("form", "co", "split_units", "rule"),
    [
        (AssignmentForm.SINGLE, ["b"], [], "form_matches_units"),
        (AssignmentForm.LEAD_CO, [], [], "form_matches_units"),
        (AssignmentForm.SPLIT, ["b"], ["c"], "form_matches_units"),
        (None, ["b"], ["c"], "form_matches_units"),
        (None, ["a"], [], "units_distinct"),
    ],
)
def test_a_form_that_does_not_match_its_units_is_refused(
    form: AssignmentForm | None, co: list[str], split_units: list[str], rule: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        domain.route_of_form(form, "a", co, split_units)
    assert refused.value.rule == rule


def test_only_active_catalog_units_are_assigned() -> None:
    catalog = {"a": {"active": True}, "b": {"active": False}}
    domain.units_must_be_active(["a"], catalog)
    with pytest.raises(RuleViolation, match="deactivated"):
        domain.units_must_be_active(["a", "b"], catalog)
    with pytest.raises(RuleViolation, match="unknown"):
        domain.units_must_be_active(["x"], catalog)


# Disputes (异议) ------------------------------------------------------------------------------------


ROUTE = Route("lead", ("co",))
WINDOW_END = date(2026, 3, 6)


def test_the_dispute_window_includes_its_last_day() -> None:
    assert domain.dispute_window_open(WINDOW_END, WINDOW_END)
    assert not domain.dispute_window_open(WINDOW_END, date(2026, 3, 7))


def test_a_unit_answers_its_own_assignment_once_within_the_window() -> None:
    ok = domain.unit_may_respond("co", ROUTE, AssignmentStatus.ASSIGNED, {}, WINDOW_END, WINDOW_END)
    assert ok == "co"
    cases = [
        ("other", AssignmentStatus.ASSIGNED, {}, WINDOW_END, "unit_acts_on_own_assignment"),
        ("lead", AssignmentStatus.ASSIGNED, {"lead": UnitResponse.ACCEPTED}, WINDOW_END, "unit_responds_once"),
        ("lead", AssignmentStatus.ASSIGNED, {}, date(2026, 3, 9), "dispute_window_open"),
        ("lead", AssignmentStatus.SUGGESTED, {}, WINDOW_END, "assignment_awaits_response"),
    ]
    for unit, status, responses, today, rule in cases:
        with pytest.raises(RuleViolation) as refused:
            domain.unit_may_respond(unit, ROUTE, status, responses, WINDOW_END, today)
        assert refused.value.rule == rule


def test_a_dispute_waits_for_the_dispatcher_else_all_answers_or_the_closed_window_accept() -> None:
    disputed = {"lead": UnitResponse.DISPUTED}
    assert domain.settled_status(ROUTE, disputed, window_open=False) == AssignmentStatus.DISPUTED
    assert domain.settled_status(ROUTE, {"lead": UnitResponse.ACCEPTED}, True) == AssignmentStatus.ASSIGNED
    both = {"lead": UnitResponse.UPHELD, "co": UnitResponse.ACCEPTED}
    assert domain.settled_status(ROUTE, both, True) == AssignmentStatus.ACCEPTED
    assert domain.settled_status(ROUTE, {}, window_open=False) == AssignmentStatus.ACCEPTED
    assert domain.silent_units(ROUTE, {"lead": UnitResponse.DISPUTED}) == ["co"]


def test_the_dispatcher_settles_only_disputes_and_reassigns_only_before_acceptance() -> None:
    domain.uphold_only_disputed(AssignmentStatus.DISPUTED)
    with pytest.raises(RuleViolation, match="no dispute"):
        domain.uphold_only_disputed(AssignmentStatus.ASSIGNED)
    domain.reassign_before_acceptance(AssignmentStatus.DISPUTED)
    with pytest.raises(RuleViolation) as refused:
        domain.reassign_before_acceptance(AssignmentStatus.ACCEPTED)
    assert refused.value.rule == "reassign_before_acceptance"


def test_key_proposals_are_named_one_by_one_or_as_a_series() -> None:
    domain.key_designation_target(["p-1"], None)
    domain.key_designation_target([], "s-1")
    for ids, series in (([], None), (["p-1"], "s-1")):
        with pytest.raises(RuleViolation, match="exactly one"):
            domain.key_designation_target(ids, series)


# Deadlines ---------------------------------------------------------------------------------------------


def _due(moment: datetime, co: bool = True) -> domain.Deadlines:
    policy = default_policy()
    return domain.deadlines(moment, co, policy, WorkingCalendar.from_policy(policy))


def test_deadlines_skip_the_spring_festival_and_count_its_shifted_workdays() -> None:
    # Assigned Fri 2025-01-24 (Beijing). Sun 01-26 is a shifted workday (调休), 01-28..02-04 are off,
    # Sat 02-08 is a shifted workday: 5 working days = 01-26, 01-27, 02-05, 02-06, 02-07.
    due = _due(datetime(2025, 1, 24, 3, 0, tzinfo=UTC))
    assert due.dispute_until == date(2025, 2, 7)
    # 1 month: Mon 02-24 is a working day; 3 months: Thu 04-24.
    assert (due.co_opinion_due, due.reply_due) == (date(2025, 2, 24), date(2025, 4, 24))


def test_a_late_evening_assignment_counts_from_the_beijing_date_and_single_has_no_co_deadline() -> None:
    # 2025-04-30 17:00 UTC is May 1 in Beijing (a holiday): 5 working days from May 1 → May 6..9 and 12?
    due = _due(datetime(2025, 4, 30, 17, 0, tzinfo=UTC), co=False)
    assert due.co_opinion_due is None
    assert due.dispute_until == date(2025, 5, 12)
    # 3 months from May 1 is Aug 1 (a Friday, a working day).
    assert due.reply_due == date(2025, 8, 1)
