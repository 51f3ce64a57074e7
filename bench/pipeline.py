"""Load, the two people in the loop, and the observer, for the pipeline under test.

A proposal goes *through* when the audit log holds every record the warm-up proposal produced:
submitted (intake) → filed (intake, on the committee's HTTP review) → assigned (assignment, `auto`
mode) → progress reported (progress, on the unit's command over `proposalflow.unit-reports`) →
notified (notify's deliveries for filing and assignment) → audited (each of those recorded by audit).

- The committee (提案委员会) is a bot that files every submitted proposal over HTTP as soon as it
  reads `proposal.submitted` from `proposalflow.proposals`.
- The lead unit's OA system is a bot that learns of the assignment as a unit does, from its
  notification: on the first `notification.delivered` caused by `assignment.assigned` it sends a progress
  report (办理进展) to `proposalflow.unit-reports`, for the lead unit named in the `assigned` event. If
  progress answers that it does not know the assignment yet (it reads `assigned` concurrently with
  notify), the bot sends again after a backoff (100 ms, doubling to 2 s), as a unit system would; those
  resends are counted.
- The observer tails audit's `GET /audit/entries` by sequence number. A proposal's end-to-end latency
  is from the moment the bench sent it to the `recorded_at` of the audit entry that completed it (the
  same clock: every process runs on this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.auth import issue_token
from shared.envelope import Envelope, from_kafka, to_kafka
from shared.events import (
    ASSIGNMENTS,
    HANDLING,
    NOTIFICATIONS,
    PROPOSALS,
    SUBMISSIONS,
    Actor,
    ReportProgress,
    Role,
    SubmitProposal,
)
from shared.settings import CommonSettings

PORTAL = "/bench/member-portal"
UNIT_OA = "/bench/unit-oa"
MEMBER = "m-zhang"

STAGES = {
    "submitted": "proposalflow.proposal.submitted.v1",
    "filed": "proposalflow.proposal.filed.v1",
    "assigned": "proposalflow.assignment.assigned.v1",
    "progress": "proposalflow.handling.progress-reported.v1",
    "notified": "proposalflow.notification.delivered.v1",
}
REJECTIONS = ("proposalflow.unit-report.rejected.v1", "proposalflow.submission.rejected.v1")
COMMANDS = ("proposalflow.submission.requested.v1", "proposalflow.unit-report.progress-submitted.v1")


def proposal_content(n: int) -> dict[str, Any]:
    """A proposal like the end-to-end tests' (it routes to 自然资源局 with a co-handling unit), sole proposer."""
    return {
        "title": f"关于推进全域土地综合整治的建议（第{n}号）",
        "body": "我市土地利用碎片化问题突出, 建议统筹推进全域土地综合整治, 优化国土空间布局。" * 4,
        "category": "经济建设",
        "first_proposer": {"id": MEMBER, "name": "张委员"},
        "suggestions": ["编制全域土地综合整治规划", "设立专项资金", "建立镇街联动机制"],
    }


def submission(proposal_id: str, n: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The Kafka door's command (提交提案) as a member portal sends it: key, value, headers."""
    command = SubmitProposal.model_validate(
        {**proposal_content(n), "proposal_id": proposal_id, "actor": {"id": MEMBER, "role": "member"}}
    )
    envelope = Envelope(
        type=SubmitProposal.TYPE,
        source=PORTAL,
        subject=proposal_id,
        data=command.model_dump(mode="json"),
        extensions={"correlationid": f"bench-{proposal_id}"},
    )
    _key, value, headers = to_kafka(envelope)
    return proposal_id.encode(), value, headers


def progress_report(proposal_id: str, unit: str) -> Envelope:
    """The lead unit's OA system reports 办理进展 (a phone call with the proposer) on the Kafka door."""
    command = ReportProgress(
        proposal_id=proposal_id,
        unit=unit,
        kind="phone",
        on=datetime.now(UTC).date(),
        text="已与提案者电话沟通, 正在研究办理方案。",
        actor=Actor(id=UNIT_OA, role=Role.SYSTEM),
    )
    return Envelope(type=ReportProgress.TYPE, source=UNIT_OA, subject=proposal_id, data=command.model_dump(mode="json"))


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Tracked:
    """What the observer knows of one proposal."""

    sent_at: float | None = None
    door: str = "kafka"
    types: Counter[str] = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    last_recorded: float = 0.0
    done_at: float | None = None


class Observer:
    """Tails the audit log and tells when each proposal has gone all the way through."""

    def __init__(self, audit_url: str, headers: dict[str, str]) -> None:
        self._url = f"{audit_url}/audit/entries"
        self._headers = headers
        self.proposals: dict[str, Tracked] = {}
        self.expected: Counter[str] | None = None
        self._cursor = 0
        self.entries_seen = 0

    def track(self, proposal_id: str, sent_at: float, door: str = "kafka") -> Tracked:
        tracked = self.proposals.setdefault(proposal_id, Tracked())
        tracked.sent_at, tracked.door = sent_at, door
        self._check(tracked)
        return tracked

    def _check(self, tracked: Tracked) -> None:
        if tracked.done_at is not None or self.expected is None or tracked.sent_at is None:
            return
        # Over HTTP there is no command on `proposalflow.submissions` to audit.
        skip = SubmitProposal.TYPE if tracked.door == "http" else None
        if all(tracked.types[t] >= n for t, n in self.expected.items() if t != skip):
            tracked.done_at = tracked.last_recorded

    def _add(self, entry: dict[str, Any]) -> None:
        subject = entry.get("subject")
        if not subject:
            return
        tracked = self.proposals.setdefault(subject, Tracked())
        kind = entry["type"]
        tracked.types[kind] += 1
        at = _parse_time(entry["time"])
        tracked.first.setdefault(kind, at)
        tracked.last[kind] = at
        tracked.last_recorded = max(tracked.last_recorded, _parse_time(entry["recorded_at"]))
        self._check(tracked)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while True:
                try:
                    response = await http.get(
                        self._url, headers=self._headers, params={"cursor": self._cursor, "limit": 500}
                    )
                    response.raise_for_status()
                    page = response.json()["items"]
                except httpx.HTTPError:
                    await asyncio.sleep(0.5)
                    continue
                for entry in page:
                    self._add(entry)
                    self._cursor = entry["seq"]
                self.entries_seen += len(page)
                if len(page) < 500:
                    await asyncio.sleep(0.1)

    def learn(self, proposal_id: str) -> Counter[str]:
        """What one quiet proposal left in the log is what every proposal must leave."""
        seen = self.proposals[proposal_id].types
        expected = Counter({t: n for t, n in seen.items() if t not in REJECTIONS})
        for command in COMMANDS:
            if command in expected:
                expected[command] = 1
        self.expected = expected
        for tracked in self.proposals.values():
            self._check(tracked)
        return expected


class Committee:
    """提案委员会 as a bot: files (立案) every submitted proposal over intake's HTTP review route."""

    def __init__(self, settings: CommonSettings, intake_urls: list[str], token: str, concurrency: int = 16) -> None:
        self._settings = settings
        self._urls = itertools.cycle(intake_urls)
        self._headers = {"Authorization": f"Bearer {token}"}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._concurrency = concurrency
        self.filed = 0
        self.failures = 0

    def use(self, intake_urls: list[str]) -> None:
        self._urls = itertools.cycle(intake_urls)

    async def run(self, group: str) -> None:
        consumer = AIOKafkaConsumer(
            PROPOSALS,
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]
        try:
            async for record in consumer:
                if dict(record.headers).get("ce_type") == STAGES["submitted"].encode() and record.key:
                    self._queue.put_nowait(record.key.decode())
        finally:
            for worker in workers:
                worker.cancel()
            await consumer.stop()

    async def _work(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while True:
                proposal_id = await self._queue.get()
                for attempt in range(10):
                    try:
                        response = await http.post(
                            f"{next(self._urls)}/proposals/{proposal_id}/review",
                            json={"decision": "file"},
                            headers={**self._headers, "Idempotency-Key": f"file-{proposal_id}"},
                        )
                    except httpx.HTTPError:
                        response = None
                    if response is not None and response.status_code < 500:
                        self.filed += response.status_code == 200
                        self.failures += response.status_code != 200
                        break
                    await asyncio.sleep(0.2 * (attempt + 1))


class LeadUnit:
    """The lead unit's OA system as a bot: reports progress (办理进展) on every assigned proposal."""

    def __init__(self, producer: AIOKafkaProducer, settings: CommonSettings) -> None:
        self._producer = producer
        self._settings = settings
        self._sent: dict[str, tuple[str, str]] = {}
        self._attempts: Counter[str] = Counter()
        self.reports = 0
        self.resends = 0
        self.rejections: Counter[str] = Counter()
        """Why progress refused reports, by reason (the proposal id left out)."""

    async def _report(self, proposal_id: str, unit: str) -> None:
        envelope = progress_report(proposal_id, unit)
        self._sent[envelope.id] = (proposal_id, unit)
        _key, value, headers = to_kafka(envelope)
        await self._producer.send(ReportProgress.TOPIC, value=value, key=proposal_id.encode(), headers=headers)
        self.reports += 1

    async def _resend(self, proposal_id: str, unit: str) -> None:
        self._attempts[proposal_id] += 1
        await asyncio.sleep(min(2.0, 0.1 * 2 ** (self._attempts[proposal_id] - 1)))
        self.resends += 1
        await self._report(proposal_id, unit)

    async def run(self, group: str) -> None:
        consumer = AIOKafkaConsumer(
            ASSIGNMENTS,
            HANDLING,
            NOTIFICATIONS,
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=group,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        lead: dict[str, str] = {}
        told: set[str] = set()
        reported: set[str] = set()
        pending: set[asyncio.Task[None]] = set()
        try:
            async for record in consumer:
                kind = dict(record.headers).get("ce_type", b"").decode()
                if kind not in (STAGES["assigned"], STAGES["notified"], "proposalflow.unit-report.rejected.v1"):
                    continue
                envelope = from_kafka(record.value, record.headers)
                proposal_id = str(envelope.data.get("proposal_id", ""))
                if kind == STAGES["assigned"]:
                    lead[proposal_id] = envelope.data["lead_unit"]["id"]
                elif kind == STAGES["notified"]:
                    if envelope.data.get("cause_event_type") == STAGES["assigned"]:
                        told.add(proposal_id)
                else:
                    reason = str(envelope.data.get("reason", "")).replace(proposal_id, "<proposal>")
                    self.rejections[reason[:160]] += 1
                    original = self._sent.pop(envelope.data.get("command_id", ""), None)
                    if original is not None:
                        task = asyncio.create_task(self._resend(*original))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    continue
                if proposal_id in lead and proposal_id in told and proposal_id not in reported:
                    reported.add(proposal_id)
                    await self._report(proposal_id, lead[proposal_id])
        finally:
            # A resend still waiting when the scenario ends would find the producer closed.
            for task in pending:
                task.cancel()
            await consumer.stop()


@dataclass
class Outcome:
    """What one load scenario measured."""

    sent: list[tuple[str, float]]
    tracked: list[Tracked]
    wall_s: float


class Loader:
    """Sends proposals through the Kafka door or over HTTP, at a fixed rate or as fast as it can."""

    def __init__(self, producer: AIOKafkaProducer, observer: Observer, member_token: str) -> None:
        self._producer = producer
        self._observer = observer
        self._headers = {"Authorization": f"Bearer {member_token}"}
        self._counter = itertools.count(1)
        self.http_failures = 0

    async def send_kafka(self) -> tuple[str, float]:
        proposal_id = str(uuid.uuid4())
        key, value, headers = submission(proposal_id, next(self._counter))
        sent_at = time.time()
        self._observer.track(proposal_id, sent_at)
        await self._producer.send(SUBMISSIONS, value=value, key=key, headers=headers)
        return proposal_id, sent_at

    def http_sender(
        self, http: httpx.AsyncClient, urls: list[str]
    ) -> Callable[[], Coroutine[Any, Any, tuple[str, float]]]:
        cycle = itertools.cycle(urls)

        async def send() -> tuple[str, float]:
            sent_at = time.time()
            n = next(self._counter)
            for attempt in range(10):
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.post(
                        f"{next(cycle)}/proposals",
                        json=proposal_content(n),
                        headers={**self._headers, "Idempotency-Key": f"bench-{n}"},
                    )
                    if response.status_code == 201:
                        proposal_id = str(response.json()["id"])
                        self._observer.track(proposal_id, sent_at, "http")
                        return proposal_id, sent_at
                self.http_failures += 1
                await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError("intake refused a submission ten times")

        return send

    async def at_rate(
        self, send: Callable[[], Coroutine[Any, Any, tuple[str, float]]], rate: float, count: int
    ) -> list[Any]:
        """`count` sends, one every 1/rate seconds, each on its own task so a slow one does not delay the next."""
        start = time.monotonic()
        tasks: list[asyncio.Task[tuple[str, float]]] = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send()))
        return list(await asyncio.gather(*tasks))

    async def flat_out(
        self, send: Callable[[], Coroutine[Any, Any, tuple[str, float]]], count: int, concurrency: int
    ) -> list[Any]:
        """`count` sends by `concurrency` senders that never wait between sends."""
        results: list[Any] = []
        remaining = iter(range(count))

        async def sender() -> None:
            for _ in remaining:
                results.append(await send())

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return results


async def wait_through(observer: Observer, ids: list[str], stall_s: float) -> list[Tracked]:
    """Wait until every proposal is through, or until none got through for `stall_s` seconds."""
    last_progress, last_done = time.monotonic(), -1
    while True:
        tracked = [observer.proposals[i] for i in ids]
        done = sum(t.done_at is not None for t in tracked)
        if done == len(ids):
            return tracked
        if done != last_done:
            last_progress, last_done = time.monotonic(), done
        elif time.monotonic() - last_progress > stall_s:
            return tracked
        await asyncio.sleep(0.2)


def tokens(settings: CommonSettings) -> tuple[str, str]:
    """Bearer tokens of the member who submits and of the committee that files and reads the audit log."""
    return (
        issue_token(settings, subject=MEMBER, role=Role.MEMBER),
        issue_token(settings, subject="c-bench", role=Role.COMMITTEE),
    )


def bot_groups(run: str) -> tuple[str, str]:
    """The consumer groups of the committee's and the lead unit's bots in one run."""
    return f"bench-{run}-committee", f"bench-{run}-unit"
