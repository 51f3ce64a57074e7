"""The member's and the leader's commands on the real broker (issue 23): 联名确认, 撤案 and 重新提交 on
`proposalflow.submissions` (intake), 评价 on the same topic (progress) and 督办 on
`proposalflow.leader-reports` (progress). Each is refused for a source not on the allow-list, an actor
its source may not act for, a proposal in the wrong state and a malformed body, with a `….rejected`
event carrying the command id, the rule and the reason; and a refused command leaves the proposal as
it was, while the honest command beside it goes through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from services.intake import service as intake_service
from services.intake import store as intake_store
from services.intake.unit_of_work import SqlUnitOfWork as IntakeUnitOfWork
from services.progress import service as progress_service
from services.progress import store as progress_store
from services.progress.domain import DraftReply, Occasion, ReviewReply
from services.progress.unit_of_work import SqlUnitOfWork as ProgressUnitOfWork
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.events import (
    HANDLING,
    LEADER_REPORTS,
    PROPOSALS,
    SUBMISSIONS,
    Actor,
    AssignmentForm,
    Command,
    CosignProposal,
    EvaluateReply,
    ProposalContent,
    RecordSupervision,
    ReplyContent,
    ResubmitProposal,
    Role,
    SuggestionAdoption,
    WithdrawProposal,
)
from shared.policy import WorkingCalendar, default_policy
from shared.runtime import ServiceRuntime
from tests.progress_fixtures import COMMITTEE, feed, lifecycle
from tests.security.test_inbound_commands import running, send

pytestmark = [pytest.mark.security, pytest.mark.kafka]

PORTAL = "/portal/members-door"
LEADERS = "/leaders/office-door"
PLATFORM = "/cppcc/platform-door"
STRANGER = "/portal/not-listed"
SOURCES = f"{PORTAL}=member,{LEADERS}=leader,{PLATFORM}"
POLICY = default_policy()

M1 = {"id": "m-1", "role": "member"}
M2 = {"id": "m-2", "role": "member"}


@pytest.fixture
async def intake(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    from services.intake.app import build

    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", SOURCES)
    runtime = await running("intake", build, tmp_path, monkeypatch, kafka_bootstrap)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def progress(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    from services.progress.app import build

    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", SOURCES)
    runtime = await running("progress", build, tmp_path, monkeypatch, kafka_bootstrap)
    try:
        yield runtime
    finally:
        await runtime.stop()


def command(model: type[Command], source: str, actor: dict[str, Any], proposal_id: str, **data: Any) -> Envelope:
    return Envelope(
        type=model.TYPE, source=source, subject=proposal_id, data={"actor": actor, "proposal_id": proposal_id, **data}
    )


async def everything_about(
    kafka: str, topics: list[str], commands: list[Envelope], *, ignored: Envelope, timeout: float = 60.0
) -> dict[str, list[Envelope]]:
    """Every event on `topics` caused by or answering one of `commands` (by `command_id` or
    `correlation_id`), read until each command has one; and any about `ignored`, which should have none."""
    wanted = {c.id for c in commands}
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka, group_id=f"door-reader-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, list[Envelope]] = {}
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not wanted <= set(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        envelope = from_kafka(record.value, record.headers)
                    except EnvelopeError:
                        continue  # another test's poison on the shared broker
                    cause = envelope.data.get("command_id") or envelope.data.get("correlation_id")
                    if cause in wanted or cause == ignored.id:
                        found.setdefault(cause, []).append(envelope)
    finally:
        await consumer.stop()
    assert set(found) >= wanted, f"no answer to {[c.type for c in commands if c.id not in found]}"
    return found


def refused(found: dict[str, list[Envelope]], envelope: Envelope, rejected_type: str) -> dict[str, Any]:
    """The one rejection answering the command (and nothing else it caused)."""
    [answer] = found[envelope.id]
    assert answer.type == rejected_type, answer.data
    data = answer.data
    assert (data["command_id"], data["command_source"], data["command_type"]) == (
        envelope.id,
        envelope.source,
        envelope.type,
    )
    assert data["proposal_id"] == envelope.data.get("proposal_id", envelope.subject)
    return data


def rule_of(data: dict[str, Any]) -> str:
    return str(data["errors"][0]["rule"])


# Intake: 联名确认, 撤案, 重新提交 ----------------------------------------------------------------------


def content(*cosigners: str, title: str = "关于加快智能制造的建议") -> ProposalContent:
    return ProposalContent.model_validate(
        {
            "title": title,
            "body": "东莞制造业规模大, 需要加快数字化转型。",
            "category": "经济建设",
            "first_proposer": {"id": "m-1", "name": "张三"},
            "cosigners": [{"id": c, "name": f"委员{c}"} for c in cosigners],
            "suggestions": ["设立专项资金"],
        }
    )


async def prepared(runtime: ServiceRuntime, tag: str) -> dict[str, str]:
    """Proposals in each state, made through intake's own use cases: awaiting cosigners (m-2, m-3), in
    withdrawn with its cosigners unconfirmed, in review, returned (twice), filed, and one to withdraw."""
    names = ("joint", "gone", "review", "returned", "returned2", "filed", "withdraw")
    ids = {name: f"{name}-{tag}" for name in names}
    member, now = Actor(id="m-1", role=Role.MEMBER), datetime.now(UTC)
    committee = Actor(id="c-1", role=Role.COMMITTEE)
    async with runtime.transaction() as conn:
        for name, proposal_id in ids.items():
            cosigners = ("m-2", "m-3") if name in ("joint", "gone") else ()
            await intake_service.submit(
                IntakeUnitOfWork(conn),
                content(*cosigners),
                member,
                POLICY,
                via="test",
                correlation_id=None,
                proposal_id=proposal_id,
                now=now,
            )
        await intake_service.withdraw(
            IntakeUnitOfWork(conn), ids["gone"], member, reason="合并到另一件", correlation_id=None, now=now
        )
        for name, decision in (("returned", "return"), ("returned2", "return"), ("filed", "file")):
            await intake_service.review(
                IntakeUnitOfWork(conn),
                ids[name],
                decision=decision,  # type: ignore[arg-type]
                reason="请补充数据",
                actor=committee,
                policy=POLICY,
                correlation_id=None,
                now=now,
            )
    return ids


async def intake_state(runtime: ServiceRuntime, ids: dict[str, str]) -> dict[str, Any]:
    """Each proposal's row and signers, and the types of the events staged about it."""
    outbox = intake_store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.type, outbox.c.payload))).all()
        state = {}
        for name, proposal_id in ids.items():
            proposal = await intake_store.get_proposal(conn, proposal_id)
            signers = await intake_store.get_signers(conn, proposal_id)
            staged = [row.type for row in rows if f'"{proposal_id}"'.encode() in bytes(row.payload)]
            state[name] = (proposal, signers, staged)
    return state


async def test_member_commands_to_intake_are_refused_with_the_rule_and_change_nothing(
    intake: ServiceRuntime, kafka_bootstrap: str
) -> None:
    ids = await prepared(intake, uuid.uuid4().hex[:8])
    before = await intake_state(intake, ids)
    rejected = "proposalflow.submission.rejected.v1"

    cosign = command(CosignProposal, PORTAL, M2, ids["joint"])
    cosign_cases = {
        "stranger": command(CosignProposal, STRANGER, M2, ids["joint"]),
        "forged": command(CosignProposal, LEADERS, M2, ids["joint"]),
        "role": command(CosignProposal, PLATFORM, {"id": "c-1", "role": "committee"}, ids["joint"]),
        "state": command(CosignProposal, PORTAL, M2, ids["gone"]),
        "not_signer": command(CosignProposal, PORTAL, M2, ids["review"]),
        "malformed": command(CosignProposal, PORTAL, M2, ids["joint"], cosigner="m-2"),
        "not_named": command(CosignProposal, PORTAL, {"id": "m-9", "role": "member"}, ids["joint"]),
    }
    withdraw = command(WithdrawProposal, PORTAL, M1, ids["withdraw"], reason="另行提交")
    withdraw_cases = {
        "stranger": command(WithdrawProposal, STRANGER, M1, ids["review"]),
        "forged": command(WithdrawProposal, LEADERS, M1, ids["review"]),
        "role": command(WithdrawProposal, PLATFORM, {"id": PLATFORM, "role": "system"}, ids["review"]),
        "state": command(WithdrawProposal, PORTAL, M1, ids["filed"]),
        "malformed": command(WithdrawProposal, PORTAL, M1, ids["review"], reason="x" * 2001),
        "cosigner": command(WithdrawProposal, PORTAL, M2, ids["joint"]),
    }
    resubmit = command(ResubmitProposal, PORTAL, M1, ids["returned"], title="关于加快智能制造的建议(修改稿)")
    resubmit_cases = {
        "stranger": command(ResubmitProposal, STRANGER, M1, ids["returned2"]),
        "forged": command(ResubmitProposal, LEADERS, M1, ids["returned2"]),
        "role": command(ResubmitProposal, PLATFORM, {"id": "c-1", "role": "committee"}, ids["returned2"]),
        "state": command(ResubmitProposal, PORTAL, M1, ids["review"]),
        "state_revised": command(ResubmitProposal, PORTAL, M1, ids["review"], title="再次修改的标题"),
        "malformed": command(ResubmitProposal, PORTAL, M1, ids["returned2"], title=None),
        # A revision the submission refuses (an unknown category): neither is kept.
        "half": command(ResubmitProposal, PORTAL, M1, ids["returned2"], title="修改后的标题", category="不存在的类别"),
    }
    refusals = [*cosign_cases.values(), *withdraw_cases.values(), *resubmit_cases.values()]
    # Progress's command on the same topic is not intake's to answer (progress is not running here); sent
    # first on its proposal's partition, it is behind intake by the time the refused withdrawal is answered.
    evaluation = command(EvaluateReply, PORTAL, M1, ids["filed"], handling_grade="satisfied", result_grade="x")
    await send(kafka_bootstrap, SUBMISSIONS, evaluation, cosign, withdraw, resubmit, *refusals)

    commands = [cosign, withdraw, resubmit, *refusals]
    found = await everything_about(kafka_bootstrap, [PROPOSALS], commands, ignored=evaluation)
    assert evaluation.id not in found
    assert [e.type for e in found[cosign.id]] == ["proposalflow.proposal.cosigned.v1"]
    assert [e.type for e in found[withdraw.id]] == ["proposalflow.proposal.withdrawn.v1"]
    assert [e.type for e in found[resubmit.id]] == [
        "proposalflow.proposal.resubmitted.v1",
        "proposalflow.proposal.review-started.v1",
    ]
    assert found[resubmit.id][0].data["title"] == "关于加快智能制造的建议(修改稿)"

    for cases in (cosign_cases, withdraw_cases, resubmit_cases):
        reasons = {name: refused(found, envelope, rejected)["reason"] for name, envelope in cases.items()}
        assert reasons["stranger"] == (
            f"source {STRANGER!r} is not allowed to submit proposals; "
            "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
        )
        actor = cases["forged"].data["actor"]["id"]
        assert reasons["forged"] == (
            f"forged actor: source {LEADERS!r} may act for leader only; the command names member {actor!r}"
        )
        assert reasons["malformed"].startswith("invalid submission: ")
    assert refused(found, cosign_cases["role"], rejected)["reason"] == (
        "role committee may not confirm as a cosigner (联名确认); only the member may"
    )
    assert refused(found, withdraw_cases["role"], rejected)["reason"] == (
        "role system may not withdraw a proposal (撤案); only the member may"
    )
    assert refused(found, resubmit_cases["role"], rejected)["reason"] == (
        "role committee may not resubmit a returned proposal (重新提交); only the member may"
    )
    assert rule_of(refused(found, cosign_cases["state"], rejected)) == "cosign_only_while_awaiting"
    assert rule_of(refused(found, cosign_cases["not_named"], rejected)) == "proposal_of_the_member"
    assert rule_of(refused(found, cosign_cases["not_signer"], rejected)) == "proposal_of_the_member"
    assert "cosigner" in refused(found, cosign_cases["malformed"], rejected)["reason"]
    assert rule_of(refused(found, withdraw_cases["state"], rejected)) == "withdraw_only_before_filing"
    assert rule_of(refused(found, withdraw_cases["cosigner"], rejected)) == "only_the_first_proposer"
    assert rule_of(refused(found, resubmit_cases["state"], rejected)) == "submit_only_draft_or_returned"
    assert rule_of(refused(found, resubmit_cases["state_revised"], rejected)) == "edit_only_draft_or_returned"
    assert rule_of(refused(found, resubmit_cases["half"], rejected)) == "category_known"
    assert "title cannot be null" in refused(found, resubmit_cases["malformed"], rejected)["reason"]
    assert "reason" in refused(found, withdraw_cases["malformed"], rejected)["reason"]

    after = await intake_state(intake, ids)
    for name in ("gone", "review", "returned2", "filed"):
        assert after[name][0] == before[name][0], f"{name} changed by a refused command"
        assert after[name][1] == before[name][1], name
        assert set(after[name][2]) - set(before[name][2]) <= {rejected}, name
    joint, signers, _ = after["joint"]
    assert joint["status"] == "awaiting_cosigners"
    assert {s["signer_id"] for s in signers if s["confirmed_at"] is not None and not s["is_first"]} == {"m-2"}
    assert after["returned2"][0]["title"] == "关于加快智能制造的建议"  # the refused revision was not kept
    assert (after["withdraw"][0]["status"], after["withdraw"][0]["withdraw_reason"]) == ("withdrawn", "另行提交")
    assert (after["returned"][0]["status"], after["returned"][0]["title"]) == (
        "submitted",
        "关于加快智能制造的建议(修改稿)",
    )


# Progress: 评价 and 督办 ----------------------------------------------------------------------------


async def answered(runtime: ServiceRuntime, proposal_id: str) -> None:
    """A single-unit proposal of m-1 and m-2 whose reply the committee approved (评价期 open)."""
    await feed(runtime, lifecycle(proposal_id, form=AssignmentForm.SINGLE, co=(), co_opinion_due=None))
    lead, now = Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj"), datetime.now(UTC)
    reply = ReplyContent(
        text="答复全文, 已采纳全部建议。",
        classification="A",
        adoptions=[SuggestionAdoption(number=1, adopted=True), SuggestionAdoption(number=2, adopted=True)],
    )
    calendar = WorkingCalendar.from_policy(POLICY)
    drafted = DraftReply(proposal_id, "dg-zrzyj", reply)
    async with runtime.transaction() as conn:
        await progress_service.carry_out(ProgressUnitOfWork(conn), drafted, Occasion(lead, None, now, POLICY, calendar))
        approved = ReviewReply(proposal_id, drafted.reply_id, approve=True)
        await progress_service.carry_out(
            ProgressUnitOfWork(conn), approved, Occasion(COMMITTEE, None, now, POLICY, calendar)
        )


async def dossier_state(runtime: ServiceRuntime, *proposal_ids: str) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        return {
            pid: (
                await progress_store.get_proposal(conn, pid),
                [entry["type"] for entry in await progress_store.get_timeline(conn, pid)],
            )
            for pid in proposal_ids
        }


async def test_evaluations_and_supervision_are_refused_with_the_rule_and_change_nothing(
    progress: ServiceRuntime, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    done, open_, key = f"answered-{tag}", f"assigned-{tag}", f"key-{tag}"
    await answered(progress, done)
    await feed(progress, lifecycle(open_))
    await feed(progress, lifecycle(key, key_leader="leader-sz"))
    before = await dossier_state(progress, done, open_, key)

    def evaluation(source: str, actor: dict[str, Any], proposal_id: str, **grades: Any) -> Envelope:
        data = {"handling_grade": "satisfied", "result_grade": "satisfied", **grades}
        return command(EvaluateReply, source, actor, proposal_id, **data)

    evaluate = evaluation(PORTAL, M1, done, comment="满意")
    evaluate_cases = {
        "stranger": evaluation(STRANGER, M2, done),
        "forged": evaluation(LEADERS, M2, done),
        "state": evaluation(PORTAL, M1, open_),
        "malformed": evaluation(PORTAL, M2, done, result_grade=5),
        "grade": evaluation(PORTAL, M2, done, result_grade="great"),
        "not_signer": evaluation(PORTAL, {"id": "m-9", "role": "member"}, done),
        "unknown": evaluation(PORTAL, M2, f"nowhere-{tag}"),
    }
    leader = {"id": "leader-sz", "role": "leader"}

    def supervision(source: str, actor: dict[str, Any], proposal_id: str, **data: Any) -> Envelope:
        fields = {"kind": "visit", "on": date(2026, 12, 1).isoformat(), "text": "实地察看整治项目", **data}
        return command(RecordSupervision, source, actor, proposal_id, **fields)

    supervise = supervision(LEADERS, leader, key)
    supervise_cases = {
        "stranger": supervision(STRANGER, leader, key),
        "forged": supervision(PORTAL, leader, key),
        "state": supervision(LEADERS, leader, open_),
        "malformed": supervision(LEADERS, leader, key, kind="lunch"),
        "role": supervision(PLATFORM, M1, key),
    }
    # Intake's command on the shared topic is not progress's to answer (intake is not running here); sent
    # first on its proposal's partition, it is behind progress once the evaluations of it are answered.
    cosign = command(CosignProposal, PORTAL, M2, done)
    await send(kafka_bootstrap, SUBMISSIONS, cosign, evaluate, *evaluate_cases.values())
    await send(kafka_bootstrap, LEADER_REPORTS, supervise, *supervise_cases.values())

    commands = [evaluate, *evaluate_cases.values(), supervise, *supervise_cases.values()]
    found = await everything_about(kafka_bootstrap, [HANDLING], commands, ignored=cosign)
    assert cosign.id not in found
    assert [e.type for e in found[evaluate.id]] == ["proposalflow.evaluation.submitted.v1"]
    assert found[evaluate.id][0].data["signer_id"] == "m-1"
    assert [e.type for e in found[supervise.id]] == ["proposalflow.supervision.recorded.v1"]
    assert found[supervise.id][0].data["leader_id"] == "leader-sz"

    evaluation_rejected, leader_rejected = (
        "proposalflow.evaluation.rejected.v1",
        "proposalflow.leader-report.rejected.v1",
    )
    ev = {name: refused(found, envelope, evaluation_rejected) for name, envelope in evaluate_cases.items()}
    sv = {name: refused(found, envelope, leader_rejected) for name, envelope in supervise_cases.items()}
    assert ev["stranger"]["reason"] == (
        f"source {STRANGER!r} is not allowed to send evaluations; "
        "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
    )
    assert (
        ev["forged"]["reason"]
        == f"forged actor: source {LEADERS!r} may act for leader only; the command names member 'm-2'"
    )
    assert rule_of(ev["state"]) == "evaluate_answered"
    assert ev["malformed"]["reason"].startswith("invalid evaluation: result_grade")
    assert rule_of(ev["grade"]) == "grade_known" and "satisfied" in ev["grade"]["reason"]
    assert rule_of(ev["not_signer"]) == "evaluator_is_signer"
    assert rule_of(ev["unknown"]) == "proposal_known" and "resend" in ev["unknown"]["reason"]
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in sv["stranger"]["reason"]
    assert sv["forged"]["reason"] == (
        f"forged actor: source {PORTAL!r} may act for member only; the command names leader 'leader-sz'"
    )
    assert rule_of(sv["state"]) == "supervision_by_its_leader"
    assert sv["malformed"]["reason"].startswith("invalid supervision record: kind")
    assert sv["role"]["reason"] == "role member may not record supervision (督办); only the supervising leader may"

    after = await dossier_state(progress, done, open_, key)
    done_before, done_after = before[done], after[done]
    assert done_after[1] == [*done_before[1], "proposalflow.evaluation.submitted.v1"]  # m-1's only
    assert after[open_] == before[open_]  # nothing from the refused evaluation or supervision
    assert after[key][1] == [*before[key][1], "proposalflow.supervision.recorded.v1"]
