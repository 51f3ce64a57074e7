"""Notify's rules and pure decisions: who is told what, in which words, on which channel, and when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from services.notify import domain
from services.notify.domain import Contact, ProposalView
from services.notify.rules import Channel, CompiledRule, RulesError, load_rules, local_date
from services.notify.settings import DEFAULT_RULES_FILE
from shared.events import Event, ProposalSubmitted
from tests.notify_fixtures import JTJ, NYJ, ZRJ, assigned, lifecycle

RULES = load_rules(DEFAULT_RULES_FILE)
LINK = "https://proposals.example/proposals/p"


def walk(rules: list[CompiledRule]) -> list[tuple[Event, list[domain.Notice], set[tuple[str, str]]]]:
    """Run the sample lifecycle through the rules as notify does: update the record, then tell."""
    views: dict[str, ProposalView] = {}
    out = []
    for event, expected in lifecycle():
        if isinstance(event, ProposalSubmitted):
            views[event.proposal_id] = ProposalView(
                id=event.proposal_id,
                title=event.title,
                signers=(event.first_proposer.id, *(c.id for c in event.cosigners)),
            )
        previous = views[event.proposal_id]
        views[event.proposal_id] = domain.updated_view(previous, event)
        notices = domain.notices_for(rules, event.TYPE, event, views[event.proposal_id], LINK, previous=previous)
        out.append((event, notices, expected))
    return out


def test_every_default_rule_tells_the_people_it_should() -> None:
    for event, notices, expected in walk(RULES):
        told = {(notice.recipient, notice.title) for notice in notices if notice.channel == Channel.INBOX}
        assert told == expected, event.TYPE


def test_every_default_rule_is_used_by_the_sample_lifecycle() -> None:
    used = {index for index, rule in enumerate(RULES) for event, _ in lifecycle() if rule.matches(event.TYPE, event)}
    assert used == set(range(len(RULES)))


def test_messages_carry_the_title_the_local_deadline_and_the_link() -> None:
    by_title: dict[str, domain.Notice] = {}
    for _event, notices, _expected in walk(RULES):
        for notice in notices:
            if notice.channel == Channel.INBOX:
                by_title.setdefault(notice.title, notice)
    assert "《关于推进全域土地综合整治的建议》" in by_title["新交办提案"].body
    assert "2026年6月1日" in by_title["新交办提案"].body
    assert "2026年5月1日" in by_title["新会办提案"].body and "东莞市自然资源局" in by_title["新会办提案"].body
    assert "东莞市农业农村局" in by_title["提案已交办"].body
    assert "2026年7月1日" in by_title["提案已答复, 请评价"].body
    assert "属于全国性事项" in by_title["提案不予立案"].body
    assert all(notice.body.endswith(LINK) for notice in by_title.values())


def test_an_sms_uses_its_own_short_words() -> None:
    view = ProposalView(id="p", title="关于X的建议", signers=("m-1",))
    notices = domain.notices_for(RULES, assigned("p", []).TYPE, assigned("p", []), view, LINK)
    sms = next(n for n in notices if n.channel == Channel.SMS and n.recipient == "m-1")
    assert sms.body == "您的提案《关于X的建议》已交办东莞市自然资源局主办。"


def test_the_unit_that_loses_a_proposal_to_reassignment_is_told_once_and_to_whom() -> None:
    """改办: the unit left with no part is told where the proposal went; the new lead unit gets its
    usual 新交办 notice; a unit moved from 主办 to 会办 is told it is 会办 now, not that it lost it."""
    reassigned = next(e for e, _ in lifecycle() if e.TYPE == "proposalflow.assignment.reassigned.v1")
    filed = ProposalView(id=reassigned.proposal_id, title="关于优化道路交通的建议", signers=("m-1",), filing_number="1")
    before = domain.updated_view(filed, assigned(reassigned.proposal_id, [NYJ]))
    after = domain.updated_view(before, reassigned)
    notices = domain.notices_for(RULES, reassigned.TYPE, reassigned, after, LINK, previous=before)
    pairs = [(n.recipient, n.channel) for n in notices]
    assert len(pairs) == len(set(pairs))  # once per (recipient, channel)
    inbox = {n.recipient: n for n in notices if n.channel == Channel.INBOX}
    removed = inbox["unit:dg-nyj"]
    assert removed.title == "提案已改由他单位办理"
    assert f"已改由 {JTJ.name} 主办, {ZRJ.name} 会办, 贵单位不再承办。" in removed.body
    assert "改办理由：职责调整" in removed.body and removed.body.endswith(LINK)
    assert {(n.recipient, n.channel) for n in notices if n.recipient == "unit:dg-nyj"} == {
        ("unit:dg-nyj", Channel.INBOX),
        ("unit:dg-nyj", Channel.EMAIL),
        ("unit:dg-nyj", Channel.WEBHOOK),
    }
    assert inbox["unit:dg-jtj"].title == "新交办提案"
    assert inbox["unit:dg-zrj"].title == "新会办提案"
    # Read again (a redelivery, the record already updated): nobody is newly removed, nothing new to say.
    again = domain.notices_for(RULES, reassigned.TYPE, reassigned, after, LINK, previous=after)
    assert "unit:dg-nyj" not in {n.recipient for n in again}


def test_overdue_reply_tells_the_supervising_leader_only_of_a_key_proposal() -> None:
    overdues = [e for e, _ in lifecycle() if e.TYPE == "proposalflow.deadline.overdue.v1"]
    overdue_co, overdue_reply = (e.model_copy(update={"supervising_leader": None}) for e in overdues[:2])
    plain = ProposalView(id=overdue_co.proposal_id, title="t", signers=("m-1",), lead_unit=ZRJ)
    key = replace(plain, supervising_leader="l-9")
    assert {n.recipient for n in domain.notices_for(RULES, overdue_co.TYPE, overdue_co, plain, LINK)} == {
        "unit:dg-nyj",
        "committee",
    }
    assert "l-9" in {n.recipient for n in domain.notices_for(RULES, overdue_reply.TYPE, overdue_reply, key, LINK)}
    assert "l-9" not in {n.recipient for n in domain.notices_for(RULES, overdue_reply.TYPE, overdue_reply, plain, LINK)}


def test_the_leader_named_on_a_deadline_notice_is_told_before_notify_has_read_the_designation() -> None:
    """督办领导 travels on the assignments topic, the deadline on handling: whichever notify reads
    first, the leader the deadline's writer knew is told."""
    overdue_reply = [e for e, _ in lifecycle() if e.TYPE == "proposalflow.deadline.overdue.v1"][1]
    assert overdue_reply.supervising_leader == "l-1"
    not_yet_key = ProposalView(id=overdue_reply.proposal_id, title="t", signers=("m-1",), lead_unit=ZRJ)
    told = domain.notices_for(RULES, overdue_reply.TYPE, overdue_reply, not_yet_key, LINK)
    assert ("l-1", "提案答复已逾期") in {(n.recipient, n.title) for n in told if n.channel == Channel.INBOX}


def test_one_recipient_named_by_two_rules_is_told_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
rules:
  - {event: proposalflow.assignment.assigned.v1, to: [proposers], channels: [inbox], title: 甲, body: a}
  - {event: proposalflow.assignment.assigned.v1, to: [first_proposer, lead_unit], channels: [inbox], title: 乙, body: b}
""",
        encoding="utf-8",
    )
    event = assigned("p", [])
    view = domain.updated_view(ProposalView(id="p", title="t", signers=("m-1", "m-2")), event)
    notices = domain.notices_for(load_rules(path), event.TYPE, event, view, LINK)
    assert [(n.recipient, n.title) for n in notices] == [("m-1", "甲"), ("m-2", "甲"), ("unit:dg-zrj", "乙")]


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ("{event: proposalflow.proposal.filled.v1, to: [proposers], channels: [inbox], title: t, body: b}", "filled"),
        ("{event: proposalflow.proposal.filed.v1, to: [mayor], channels: [inbox], title: t, body: b}", "mayor"),
        ("{event: proposalflow.proposal.filed.v1, to: [proposers], channels: [fax], title: t, body: b}", "fax"),
        (
            "{event: proposalflow.proposal.filed.v1, when: {colour: red}, to: [proposers], channels: [inbox],"
            " title: t, body: b}",
            "colour",
        ),
        ("{event: proposalflow.proposal.filed.v1, to: [proposers], channels: [inbox], title: t, body: '{{ x'}", "body"),
        (
            "{event: proposalflow.submission.requested.v1, to: [proposers], channels: [inbox], title: t, body: b}",
            "submission.requested",
        ),
    ],
)
def test_a_broken_rules_file_is_refused_naming_what_is_wrong(tmp_path: Path, rule: str, named: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"rules:\n  - {rule}\n", encoding="utf-8")
    with pytest.raises(RulesError, match=named) as refused:
        load_rules(path)
    assert str(path) in str(refused.value)


def test_a_misspelt_template_variable_fails_instead_of_printing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {event: proposalflow.proposal.filed.v1, to: [proposers], channels: [inbox],"
        " title: t, body: '{{ proposal.titel }}'}\n",
        encoding="utf-8",
    )
    filed = next(e for e, _ in lifecycle() if e.TYPE == "proposalflow.proposal.filed.v1")
    with pytest.raises(Exception, match="titel"):
        domain.notices_for(load_rules(path), filed.TYPE, filed, ProposalView(id="p", title="t", signers=("m",)), LINK)


def test_unconfirmed_cosigners_stop_being_told_once_review_starts() -> None:
    walked = walk(RULES)
    asked = next(notices for event, notices, _ in walked if event.TYPE == "proposalflow.proposal.cosign-requested.v1")
    filed = next(notices for event, notices, _ in walked if event.TYPE == "proposalflow.proposal.filed.v1")
    assert "m-3" in {n.recipient for n in asked}
    assert "m-3" not in {n.recipient for n in filed}


def test_local_dates_are_read_in_dongguan_time() -> None:
    assert local_date(date(2026, 6, 1)) == "2026年6月1日"
    assert local_date(datetime(2026, 6, 1, 17, 30, tzinfo=UTC)) == "2026年6月2日 01:30"


def test_personal_data_is_masked_in_logs() -> None:
    assert domain.mask_phone("13812345678") == "138****5678"
    assert domain.mask_email("zhangsan@example.com") == "z***@example.com"
    assert domain.mask_phone("123") == "***"
    assert domain.masked_address(Channel.WEBHOOK, "https://oa.example/hook?token=s3cret") == "https://oa.example/hook"


QUIET = (time(22, 0), time(7, 0))


def test_sms_waits_for_the_end_of_quiet_hours_in_local_time() -> None:
    night = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Dongguan
    assert domain.sms_not_before(night, QUIET, "Asia/Shanghai") == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    early = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 06:30 next day in Dongguan
    assert domain.sms_not_before(early, QUIET, "Asia/Shanghai") == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    day = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00
    assert domain.sms_not_before(day, QUIET, "Asia/Shanghai") == day
    assert domain.sms_not_before(night, None, "Asia/Shanghai") == night


def test_a_notice_goes_out_only_where_the_recipient_can_and_wants_to_be_reached() -> None:
    everything = frozenset(Channel)
    contact = Contact(id="m-1", email="a@example.com", phone="13812345678", channels=frozenset({Channel.EMAIL}))
    assert domain.deliverable_address(Channel.EMAIL, contact, everything) == "a@example.com"
    assert domain.deliverable_address(Channel.SMS, contact, everything) is None  # turned off
    assert domain.deliverable_address(Channel.EMAIL, contact, frozenset({Channel.INBOX})) is None  # no SMTP here
    assert domain.deliverable_address(Channel.WEBHOOK, Contact(id="m-1"), everything) is None  # no address
    assert domain.deliverable_address(Channel.EMAIL, None, everything) is None  # not in the directory


def test_retries_back_off_exponentially_and_stop_after_the_last_attempt() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    delays = []
    for attempts in range(1, 5):
        retry = domain.next_attempt_at(now, attempts, max_attempts=5, base_delay=10, max_delay=60)
        assert retry is not None
        delays.append((retry - now).total_seconds())
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20 and 20 <= delays[2] <= 40 and 30 <= delays[3] <= 60
    assert domain.next_attempt_at(now, 5, max_attempts=5, base_delay=10, max_delay=60) is None


def test_the_webhook_signature_covers_timestamp_and_body() -> None:
    signature = domain.webhook_signature("secret", "1700000000", b'{"a":1}')
    assert signature.startswith("sha256=") and len(signature) == 71
    assert signature != domain.webhook_signature("secret", "1700000001", b'{"a":1}')
    assert signature != domain.webhook_signature("other", "1700000000", b'{"a":1}')


def test_an_assignment_waits_for_the_filing_and_handling_waits_for_the_assignment() -> None:
    events = {event.TYPE: event for event, _ in lifecycle()}
    submitted_only = ProposalView(id="p-main", title="t", signers=("m-1",))
    filed = ProposalView(id="p-main", title="t", signers=("m-1",), filing_number="2026-0001")
    assigned_view = domain.updated_view(filed, events["proposalflow.assignment.assigned.v1"])
    approaching = events["proposalflow.deadline.approaching.v1"]
    assert "not filed" in (
        domain.missing_prerequisite(events["proposalflow.assignment.assigned.v1"], submitted_only) or ""
    )
    assert domain.missing_prerequisite(events["proposalflow.assignment.assigned.v1"], filed) is None
    assert "not assigned" in (domain.missing_prerequisite(approaching, filed) or "")
    assert domain.missing_prerequisite(approaching, assigned_view) is None
    assert domain.missing_prerequisite(events["proposalflow.proposal.filed.v1"], submitted_only) is None
