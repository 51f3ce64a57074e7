"""Intake's rules (domain.py) and similar-proposal ranking (similarity.py): pure, no I/O."""

from __future__ import annotations

from datetime import date

import pytest

from services.intake import domain, similarity
from services.intake.domain import ProposalStatus as S
from shared.errors import RuleViolation, StateConflict
from shared.events import Actor, Proposer, Role
from shared.policy import DEFAULT_NOT_FILED_GROUNDS, load_policy

MEMBER = Actor(id="m-1", role=Role.MEMBER)


def rule_of(exc: pytest.ExceptionInfo[RuleViolation]) -> str:
    return exc.value.rule


@pytest.mark.parametrize("status", list(S))
def test_withdraw_only_before_filing(status: S) -> None:
    if status in (S.DRAFT, S.AWAITING_COSIGNERS, S.SUBMITTED, S.RETURNED):
        domain.withdraw_only_before_filing(status)
    else:
        with pytest.raises(StateConflict) as exc:
            domain.withdraw_only_before_filing(status)
        assert rule_of(exc) == "withdraw_only_before_filing"


@pytest.mark.parametrize("status", list(S))
def test_edit_and_submit_only_a_draft_or_a_returned_proposal(status: S) -> None:
    allowed = status in (S.DRAFT, S.RETURNED)
    for rule in (domain.edit_only_draft_or_returned, domain.submit_only_draft_or_returned):
        if allowed:
            rule(status)
        else:
            with pytest.raises(StateConflict):
                rule(status)


@pytest.mark.parametrize("status", list(S))
def test_review_and_cosign_each_have_one_state(status: S) -> None:
    if status == S.SUBMITTED:
        domain.review_may_decide(status)
    else:
        with pytest.raises(StateConflict, match="only a submitted proposal"):
            domain.review_may_decide(status)
    if status == S.AWAITING_COSIGNERS:
        domain.cosign_only_while_awaiting(status)
    else:
        with pytest.raises(StateConflict):
            domain.cosign_only_while_awaiting(status)


def test_only_the_first_proposer_changes_a_proposal_but_the_committee_may() -> None:
    domain.only_the_first_proposer(MEMBER, "m-1")
    domain.only_the_first_proposer(Actor(id="c-1", role=Role.COMMITTEE), "m-1")
    with pytest.raises(RuleViolation) as exc:
        domain.only_the_first_proposer(Actor(id="m-2", role=Role.MEMBER), "m-1")
    assert rule_of(exc) == "only_the_first_proposer"


def test_a_cosigner_is_named_and_confirms_once() -> None:
    domain.cosigner_must_be_named("m-2", ["m-2", "m-3"], [])
    with pytest.raises(RuleViolation) as named:
        domain.cosigner_must_be_named("m-9", ["m-2"], [])
    assert rule_of(named) == "cosigner_named"
    with pytest.raises(StateConflict) as once:
        domain.cosigner_must_be_named("m-2", ["m-2"], ["m-2"])
    assert rule_of(once) == "cosign_once"


def test_the_cosign_window_includes_its_due_date() -> None:
    due = date(2026, 3, 9)
    assert domain.cosign_window_open(date(2026, 3, 9), due)
    assert not domain.cosign_window_open(date(2026, 3, 10), due)


def test_a_joint_proposal_is_ready_for_review_when_all_confirmed_or_the_window_closed() -> None:
    due = date(2026, 3, 9)
    assert domain.ready_for_review(["m-2", "m-3"], ["m-3", "m-2"], date(2026, 3, 3), due)
    assert not domain.ready_for_review(["m-2", "m-3"], ["m-2"], date(2026, 3, 9), due)
    assert domain.ready_for_review(["m-2", "m-3"], [], date(2026, 3, 10), due)


def test_not_filed_needs_a_note_and_a_configured_ground() -> None:
    grounds = list(DEFAULT_NOT_FILED_GROUNDS)
    assert domain.not_filed_needs_reason_and_ground("转有关部门", grounds[0], grounds) == grounds[0]
    with pytest.raises(RuleViolation) as no_note:
        domain.not_filed_needs_reason_and_ground("  ", grounds[0], grounds)
    assert rule_of(no_note) == "not_filed_needs_reason"
    with pytest.raises(RuleViolation) as no_ground:
        domain.not_filed_needs_reason_and_ground("转有关部门", None, grounds)
    assert rule_of(no_ground) == "not_filed_ground_known"


def test_the_dongguan_policy_lists_the_not_filed_grounds() -> None:
    assert load_policy().not_filed_grounds == list(DEFAULT_NOT_FILED_GROUNDS)


def test_a_return_says_what_to_revise() -> None:
    assert domain.return_needs_reason(" 请补充数据 ") == "请补充数据"
    with pytest.raises(RuleViolation) as exc:
        domain.return_needs_reason(None)
    assert rule_of(exc) == "return_needs_reason"


@pytest.mark.parametrize(
    ("target_id", "target_status", "rule"),
    [
        ("p-1", S.SUBMITTED, "merge_into_another"),
        ("p-2", None, "merge_target_exists"),
        ("p-2", S.NOT_FILED, "merge_target_open"),
        ("p-2", S.MERGED, "merge_target_open"),
        ("p-2", S.AWAITING_COSIGNERS, "merge_target_open"),
    ],
)
def test_merge_only_into_another_open_proposal(target_id: str, target_status: S | None, rule: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        domain.merge_target_must_be_open("p-1", target_id, target_status)
    assert rule_of(exc) == rule


def test_merge_into_a_submitted_or_filed_proposal() -> None:
    domain.merge_target_must_be_open("p-1", "p-2", S.SUBMITTED)
    domain.merge_target_must_be_open("p-1", "p-2", S.FILED)


def test_signers_are_distinct_and_a_member_signs_first() -> None:
    first = Proposer(id="m-1", name="张三")
    with pytest.raises(RuleViolation) as repeated:
        domain.submitter_must_sign(MEMBER, first, [Proposer(id="m-1", name="张三")])
    assert rule_of(repeated) == "signers_distinct"
    with pytest.raises(RuleViolation) as other:
        domain.submitter_must_sign(Actor(id="m-2", role=Role.MEMBER), first, [])
    assert rule_of(other) == "submitter_is_first_proposer"


def test_suggestions_are_numbered_and_never_empty() -> None:
    assert [s.number for s in domain.number_suggestions(["a", " b "])] == [1, 2]
    with pytest.raises(RuleViolation, match=r"\[2\]"):
        domain.number_suggestions(["a", "  "])


def test_chinese_text_becomes_character_bigrams_and_latin_words() -> None:
    assert similarity.tokens("土地整治, 5G基站") == ["土地", "地整", "整治", "基站", "5g"]
    assert similarity.tokens("水") == ["水"]


def test_an_obviously_related_proposal_ranks_first() -> None:
    query = similarity.Document("q", "关于推进全域土地综合整治的建议", "土地利用碎片化, 建议统筹推进全域土地综合整治。")
    candidates = [
        similarity.Document("edu", "关于发展职业教育的建议", "建议深化产教融合, 提升职业教育质量。"),
        similarity.Document("land", "关于加强土地综合整治的建议", "推进全域土地综合整治, 保护耕地。"),
        similarity.Document("water", "关于治理城市内涝的建议", "建议完善排水管网, 治理内涝。"),
        similarity.Document("q", "itself", "is never its own match"),
    ]
    ranked = similarity.rank_similar(query, candidates, limit=5)
    assert ranked[0].id == "land"
    assert "q" not in [match.id for match in ranked]
    assert ranked[0].score > 2 * ranked[1].score
    assert [m.score for m in ranked] == sorted((m.score for m in ranked), reverse=True)
    assert len(similarity.rank_similar(query, candidates, limit=1)) == 1


def test_nothing_in_common_is_not_a_match() -> None:
    query = similarity.Document("q", "土地整治", "耕地保护")
    assert similarity.rank_similar(query, [similarity.Document("x", "bus", "metro")], limit=5) == []
