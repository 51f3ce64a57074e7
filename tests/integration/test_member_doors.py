"""A member platform and a leader's office do their part by events alone (issue 23), on the real broker
with intake, assignment and progress running (SQLite and PostgreSQL): the platform submits a joint
proposal, its cosigner confirms (联名确认), the first proposer resubmits it after 退回修改, both signers
evaluate the reply (评价) and a second proposal is withdrawn (撤案); the leader's office records 督办 on
`proposalflow.leader-reports`. HTTP is used only for the office's own steps (审查立案, 交办, 办复审查) and the
unit's. Every event a command causes carries the command id as its correlation id; a command resent
with the same id changes nothing; each service ignores the other's commands on the shared topic."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.auth import issue_token
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.events import (
    ASSIGNMENTS,
    HANDLING,
    LEADER_REPORTS,
    PROPOSALS,
    SUBMISSIONS,
    Command,
    CosignProposal,
    EvaluateReply,
    RecordSupervision,
    ResubmitProposal,
    Role,
    SubmitProposal,
    WithdrawProposal,
)
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from tests.conftest import fresh_postgres_database
from tests.reliability.workload import prepare_topics
from tests.security.test_inbound_commands import send

pytestmark = pytest.mark.kafka

PORTAL = "/portal/members-doors"
LEADERS = "/leaders/office-doors"
SERVICES = ("intake", "assignment", "progress")
M1 = {"id": "m-1", "role": "member"}
M2 = {"id": "m-2", "role": "member"}
LEADER = {"id": "leader-sz", "role": "leader"}
PROPOSAL = {
    "title": "关于推进全域土地综合整治的建议",
    "body": "我市土地利用碎片化问题突出, 建议统筹推进全域土地综合整治, 优化国土空间布局。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "suggestions": ["编制全域土地综合整治规划", "设立专项资金"],
}
REPLY = {
    "text": "经研究, 我局已编制全域土地综合整治规划, 并将设立专项资金。",
    "classification": "A",
    "adoptions": [{"number": 1, "adopted": True}, {"number": 2, "adopted": True}],
}


class Services:
    """Intake, assignment and progress in this process, each with its own database, and their HTTP apps."""

    def __init__(self, runtimes: dict[str, ServiceRuntime], apps: dict[str, Any]) -> None:
        self.runtimes, self.apps = runtimes, apps

    def http(self, service: str, role: Role, subject: str, unit: str | None = None) -> httpx.AsyncClient:
        token = issue_token(self.runtimes[service].common, subject=subject, role=role, unit=unit)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.apps[service]),
            base_url=f"http://{service}",
            headers={"authorization": f"Bearer {token}"},
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def services(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str
) -> AsyncIterator[Services]:
    run = uuid.uuid4().hex[:8]
    monkeypatch.setenv("PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{PORTAL}=member,{LEADERS}=leader")
    monkeypatch.setenv("PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S", "0.05")
    # The services' groups start at the topics' current end: on the run's shared broker the earlier tests
    # left their commands and events, and fresh groups read from the earliest would work through all of
    # them (each service on its own database, on a busy machine) before this test's first command, inside
    # the test's 60 s waits. Only this test's traffic is theirs to handle.
    await prepare_topics(kafka_bootstrap, [f"doors-{run}-{service}" for service in SERVICES], partitions=3)
    async with contextlib.AsyncExitStack() as stack:
        runtimes: dict[str, ServiceRuntime] = {}
        apps: dict[str, Any] = {}
        for service in SERVICES:
            if request.param == "postgres":
                url = await stack.enter_async_context(fresh_postgres_database())
            else:
                url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
            monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", url)
            monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP", f"doors-{run}-{service}")
            await upgrade_async(service, url)
            module = __import__(f"services.{service}.app", fromlist=["build"])
            runtimes[service], apps[service] = module.build()
        for runtime in runtimes.values():
            await runtime.start()
            stack.push_async_callback(runtime.stop)
        deadline = asyncio.get_running_loop().time() + 60
        for name, runtime in runtimes.items():
            while (await runtime.readiness()).get("broker") != "ok":
                assert asyncio.get_running_loop().time() < deadline, f"{name} did not connect to Kafka"
                await asyncio.sleep(0.2)
        yield Services(runtimes, apps)


class Watcher:
    """Reads the services' topics in the background and keeps every event about our proposals."""

    def __init__(self, kafka: str, proposal_ids: set[str]) -> None:
        self.kafka, self.proposal_ids = kafka, proposal_ids
        self.seen: list[Envelope] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        consumer = AIOKafkaConsumer(
            PROPOSALS,
            ASSIGNMENTS,
            HANDLING,
            bootstrap_servers=self.kafka,
            group_id=f"doors-watch-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        await consumer.start()

        async def read() -> None:
            try:
                while True:
                    for records in (await consumer.getmany(timeout_ms=300)).values():
                        for record in records:
                            try:
                                envelope = from_kafka(record.value, record.headers)
                            except EnvelopeError:
                                continue  # another test's poison on the shared broker
                            if envelope.data.get("proposal_id") in self.proposal_ids:
                                self.seen.append(envelope)
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def caused_by(self, command: Envelope) -> list[str]:
        """The types of the events that carry the command's id as correlation id or answer it."""
        return [
            e.type
            for e in self.seen
            if e.data.get("correlation_id") == command.id or e.data.get("command_id") == command.id
        ]

    async def until(self, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            assert self._task is not None and not self._task.done(), "the watcher stopped"
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)

    async def answered(self, command: Envelope, *types: str) -> list[str]:
        """Wait until the command has caused at least `types`; returns what it caused."""
        await self.until(lambda: set(types) <= set(self.caused_by(command)), f"{types} from {command.type}")
        return self.caused_by(command)


def command(model: type[Command], source: str, actor: dict[str, Any], proposal_id: str, **data: Any) -> Envelope:
    body = {"actor": actor, "proposal_id": proposal_id, **data}
    return Envelope(type=model.TYPE, source=source, subject=proposal_id, data=body)


async def eventually(read: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await read()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def test_a_member_platform_and_a_leaders_office_do_their_part_by_events(
    services: Services, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    pid, other = f"p-doors-{tag}", f"p-doors-w-{tag}"
    committee = services.http("intake", Role.COMMITTEE, "c-office")
    kafka = kafka_bootstrap
    async with Watcher(kafka, {pid, other}) as watch, committee:
        # 提交 and 联名确认, by events.
        submit = Envelope(
            type=SubmitProposal.TYPE,
            source=PORTAL,
            subject=pid,
            data={**PROPOSAL, "actor": M1, "proposal_id": pid, "cosigners": [{"id": "m-2", "name": "李四"}]},
        )
        await send(kafka, SUBMISSIONS, submit)
        assert "proposalflow.proposal.cosign-requested.v1" in await watch.answered(
            submit, "proposalflow.proposal.submitted.v1", "proposalflow.proposal.cosign-requested.v1"
        )
        cosign = command(CosignProposal, PORTAL, M2, pid)
        await send(kafka, SUBMISSIONS, cosign)
        assert await watch.answered(
            cosign, "proposalflow.proposal.cosigned.v1", "proposalflow.proposal.review-started.v1"
        ) == ["proposalflow.proposal.cosigned.v1", "proposalflow.proposal.review-started.v1"]

        # 退回修改 by the committee (HTTP), then 重新提交 with the revision, by event.
        returned = await committee.post(f"/proposals/{pid}/review", json={"decision": "return", "reason": "请补充数据"})
        assert returned.status_code == 200, returned.text
        resubmit = command(ResubmitProposal, PORTAL, M1, pid, title="关于推进全域土地综合整治的建议(修改稿)")
        await send(kafka, SUBMISSIONS, resubmit)
        assert await watch.answered(
            resubmit, "proposalflow.proposal.resubmitted.v1", "proposalflow.proposal.review-started.v1"
        ) == ["proposalflow.proposal.resubmitted.v1", "proposalflow.proposal.review-started.v1"]
        [resubmitted] = [e for e in watch.seen if e.type == "proposalflow.proposal.resubmitted.v1"]
        assert resubmitted.data["title"].endswith("(修改稿)")

        # The office's own steps over HTTP: 立案, 交办 (单办), 重点提案; the unit's 签收, 答复; 办复审查.
        filed = await committee.post(f"/proposals/{pid}/review", json={"decision": "file"})
        assert filed.status_code == 200, filed.text
        async with (
            services.http("assignment", Role.DISPATCHER, "d-office") as dispatcher,
            services.http("assignment", Role.COMMITTEE, "c-office") as designator,
            services.http("assignment", Role.UNIT, "u-zrzyj", unit="dg-zrzyj") as unit_assignment,
            services.http("progress", Role.UNIT, "u-zrzyj", unit="dg-zrzyj") as unit_progress,
            services.http("progress", Role.COMMITTEE, "c-office") as reviewer,
        ):

            async def suggested() -> bool:
                return (await dispatcher.get(f"/assignments/{pid}")).status_code == 200

            await eventually(suggested, "a routing suggestion")
            confirmed = await dispatcher.post(
                f"/assignments/{pid}/confirm", json={"lead_unit": "dg-zrzyj", "co_units": [], "form": "single"}
            )
            assert confirmed.status_code == 200, confirmed.text
            key = await designator.post(
                "/key-proposals", json={"proposal_ids": [pid], "supervising_leader": "leader-sz"}
            )
            assert key.status_code == 201, key.text

            async def in_progress(stage: str) -> dict[str, Any] | None:
                response = await reviewer.get(f"/proposals/{pid}")
                body = response.json() if response.status_code == 200 else None
                return body if body and body["stage"] == stage and body["key"] else None

            await eventually(lambda: in_progress("assigned"), "the key proposal assigned in progress")
            accepted = await unit_assignment.post(f"/assignments/{pid}/accept", json={})
            assert accepted.status_code == 200, accepted.text
            await eventually(lambda: in_progress("handling"), "handling after 签收")
            drafted = await unit_progress.post(f"/proposals/{pid}/replies", json=REPLY)
            assert drafted.status_code == 200, drafted.text
            reply_id = drafted.json()["replies"][-1]["id"]
            approved = await reviewer.post(f"/proposals/{pid}/replies/{reply_id}/review", json={"decision": "approve"})
            assert approved.status_code == 200, approved.text

            # 督办 by the leader's office, 评价 by both signers: events only.
            supervise = command(RecordSupervision, LEADERS, LEADER, pid, kind="visit", on="2026-12-01", text="实地察看")
            await send(kafka, LEADER_REPORTS, supervise)
            assert await watch.answered(supervise, "proposalflow.supervision.recorded.v1") == [
                "proposalflow.supervision.recorded.v1"
            ]
            grades = {"handling_grade": "satisfied", "result_grade": "satisfied"}
            first = command(EvaluateReply, PORTAL, M1, pid, **grades, comment="满意")
            await send(kafka, SUBMISSIONS, first)
            assert await watch.answered(first, "proposalflow.evaluation.submitted.v1") == [
                "proposalflow.evaluation.submitted.v1"
            ]
            second = command(EvaluateReply, PORTAL, M2, pid, **grades)
            await send(kafka, SUBMISSIONS, second)
            assert await watch.answered(
                second, "proposalflow.evaluation.submitted.v1", "proposalflow.proposal.closed.v1"
            ) == ["proposalflow.evaluation.submitted.v1", "proposalflow.proposal.closed.v1"]

            # The first evaluation resent (same id), then two late commands on the same partition: each
            # service has read the resent one by the time it answers the late one that is its own.
            late_withdraw = command(WithdrawProposal, PORTAL, M1, pid)
            late_evaluation = command(EvaluateReply, PORTAL, M2, pid, **grades)
            await send(kafka, SUBMISSIONS, first, late_withdraw, late_evaluation)
            assert await watch.answered(late_withdraw, "proposalflow.submission.rejected.v1") == [
                "proposalflow.submission.rejected.v1"
            ]
            assert await watch.answered(late_evaluation, "proposalflow.evaluation.rejected.v1") == [
                "proposalflow.evaluation.rejected.v1"
            ]
            [late] = [e for e in watch.seen if e.data.get("command_id") == late_evaluation.id]
            assert late.data["errors"][0]["rule"] == "evaluate_answered"
            assert watch.caused_by(first) == ["proposalflow.evaluation.submitted.v1"]  # once, and not refused
            for intake_command in (submit, cosign, resubmit, late_withdraw):
                assert "proposalflow.evaluation.rejected.v1" not in watch.caused_by(intake_command)
            for evaluation in (first, second):
                assert "proposalflow.submission.rejected.v1" not in watch.caused_by(evaluation)

            view = (await reviewer.get(f"/proposals/{pid}")).json()
            assert view["stage"] == "closed"
            assert sorted(e["signer_id"] for e in view["evaluations"]) == ["m-1", "m-2"]
            assert [t["summary"] for t in view["timeline"] if t["type"] == "proposalflow.supervision.recorded.v1"] == [
                "督办 (visit, 2026-12-01): 实地察看"
            ]

        # 撤案 by event, of a second proposal still in review.
        submit_other = Envelope(type=SubmitProposal.TYPE, source=PORTAL, subject=other, data={**PROPOSAL, "actor": M1})
        submit_other.data["proposal_id"] = other
        await send(kafka, SUBMISSIONS, submit_other)
        await watch.answered(submit_other, "proposalflow.proposal.submitted.v1")
        withdraw = command(WithdrawProposal, PORTAL, M1, other, reason="与另一件提案重复")
        await send(kafka, SUBMISSIONS, withdraw)
        assert await watch.answered(withdraw, "proposalflow.proposal.withdrawn.v1") == [
            "proposalflow.proposal.withdrawn.v1"
        ]
        shown = (await committee.get(f"/proposals/{other}")).json()
        assert (shown["status"], shown["withdraw_reason"]) == ("withdrawn", "与另一件提案重复")
