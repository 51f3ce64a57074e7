"""The load the reliability tests put on the suite, and the count they make afterwards.

A steady stream of proposals comes in through both doors: HTTP (`POST /proposals` with an
`Idempotency-Key`, retried with the same key while intake is down) and the Kafka command topic
(`proposalflow.submissions`, retried with the same command id, so a resend names the same proposal).
A filing clerk (立案) files what is in review; the policy assigns at once (`assignment_mode: auto`).
Then `Tally` counts what every service holds about each accepted proposal: nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared.envelope import Envelope, to_kafka
from shared.events import SUBMISSIONS, Role, SubmitProposal
from shared.settings import SERVICES, CommonSettings
from shared.topics import all_topic_names, create_topics
from tests.procs import Suite


def portal(run: str) -> str:
    """The member portal of one test run: its own CloudEvents source, the only one its suite allows, so
    suites sharing a broker (tests run side by side) refuse each other's commands instead of taking them."""
    return f"/portal/members-reliability-{run}"


MEMBERS = [f"m-rel-{n}" for n in range(8)]
SOAK = os.environ.get("PROPOSALFLOW_SOAK", "") not in ("", "0")


def _number(name: str, short: float, soak: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else (soak if SOAK else short)


@dataclass(frozen=True)
class Size:
    """How hard a fault test pushes: the short version for `make test`, the long one for `make soak`."""

    interval: float = _number("PROPOSALFLOW_RELIABILITY_INTERVAL_S", 0.6, 0.4)
    """Seconds between two submissions on each door."""
    minimum: int = int(_number("PROPOSALFLOW_RELIABILITY_MIN_PROPOSALS", 30, 300))
    """At least this many proposals per test, however quick the fault."""
    outage: float = _number("PROPOSALFLOW_RELIABILITY_OUTAGE_S", 10, 30)
    """How long the broker or the database stays away."""
    rounds: int = int(_number("PROPOSALFLOW_RELIABILITY_ROUNDS", 1, 2))
    """How many times each service is killed."""
    settle: float = _number("PROPOSALFLOW_RELIABILITY_SETTLE_S", 180, 600)
    """How long the suite may take to catch up after the fault."""


SIZE = Size()
TIMEOUT = 3600 if SOAK else 900
"""Per test: starting brokers and five services on a busy 2-core machine takes its time."""
BACKENDS = ["sqlite", "postgres"] if SOAK else ["postgres"]
"""Where the short version runs a fault on one database only, the soak runs it on both."""

EXPECTED_AUDIT = (
    "proposalflow.proposal.submitted.v1",
    "proposalflow.proposal.filed.v1",
    "proposalflow.assignment.assigned.v1",
)
"""What each (single-signer) proposal leaves in the audit log, exactly once each."""


def reliability_env(tmp_path: Path, bootstrap: str, run: str) -> dict[str, str]:
    """Environment of the services under test: auto assignment, quick retries, own consumer groups."""
    policy = tmp_path / "policy.yaml"
    packaged = (Path(__file__).resolve().parents[2] / "shared" / "policies" / "dongguan.yaml").read_text()
    assert "assignment_mode: confirm" in packaged
    policy.write_text(packaged.replace("assignment_mode: confirm", "assignment_mode: auto"))
    env = {
        **os.environ,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROPOSALFLOW_DATA_DIR": str(tmp_path / "data"),
        "PROPOSALFLOW_ALLOWED_SOURCES": portal(run),
        "PROPOSALFLOW_JWT_SECRET": f"reliability-{run}-0123456789abcdef0123456789",
        "PROPOSALFLOW_POLICY_FILE": str(policy),
        "PROPOSALFLOW_LOG_LEVEL": "INFO",
        # A database or broker outage is waited out with backoff; capped low so recovery is prompt.
        "PROPOSALFLOW_RETRY_MAX_DELAY_S": "2",
        "PYTHONUNBUFFERED": "1",
    }
    for service in SERVICES:
        env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] = f"rel-{run}-{service}"
    return env


async def prepare_topics(bootstrap: str, groups: list[str], *, partitions: int = 6, replication: int = 1) -> None:
    """Create the topics (if missing) and start each consumer group at their current end, so a test's
    services see only its own traffic, not the history other tests left on a shared broker."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap)
    await create_topics(settings, partitions, replication)
    for group in groups:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            by_topic = {topic: await partitions_of(consumer, topic) for topic in all_topic_names()}
            assigned = [TopicPartition(t, p) for t, parts in by_topic.items() for p in parts]
            ends = await consumer.end_offsets(assigned)
            consumer.assign(assigned)
            await consumer.commit({tp: offset for tp, offset in ends.items()})
        finally:
            await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await asyncio.sleep(0.3)
    raise TimeoutError(f"topic {topic} has no partitions")


def content(run: str, number: int) -> dict[str, Any]:
    """A single-signer proposal whose title names it, so a duplicate would show as two with one title."""
    return {
        "title": f"关于推进全域土地综合整治的建议 ({run}-{number})",
        "body": "我市土地利用碎片化问题突出, 建议统筹推进全域土地综合整治, 优化国土空间布局。",
        "category": "经济建设",
        "first_proposer": {"id": MEMBERS[number % len(MEMBERS)], "name": "可靠性测试委员"},
        "cosigners": [],
        "suggestions": ["编制全域土地综合整治规划", "设立专项资金"],
    }


async def retrying(action: Callable[[], Awaitable[Any]], what: str, deadline: float) -> Any:
    """Try until it works or the deadline passes: a client that keeps at it through an outage."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await action()
        except (httpx.HTTPError, KafkaError, OSError, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still failing after {attempt} tries: {exc!r}") from exc
            await asyncio.sleep(min(2.0, 0.2 * attempt))


@dataclass
class Workload:
    """Submits through both doors, files what is in review, and remembers what was accepted."""

    suite: Suite
    bootstrap: str
    run: str
    accepted_http: list[str] = field(default_factory=list)
    accepted_kafka: list[str] = field(default_factory=list)
    filed_by_clerk: int = 0
    _number: int = 0

    @property
    def accepted(self) -> list[str]:
        return self.accepted_http + self.accepted_kafka

    def _next(self) -> int:
        self._number += 1
        return self._number

    async def stream(
        self, until: asyncio.Event, *, minimum: int = SIZE.minimum, interval: float = SIZE.interval
    ) -> None:
        """Both doors at once, until `until` is set and at least `minimum` proposals were accepted."""
        await asyncio.gather(
            self._door(self._submit_http, until, (minimum + 1) // 2, interval),
            self._door(self._submit_kafka, until, minimum // 2, interval),
        )

    async def _door(
        self, submit: Callable[[int], Awaitable[None]], until: asyncio.Event, minimum: int, interval: float
    ) -> None:
        sent = 0
        while not until.is_set() or sent < minimum:
            await submit(self._next())
            sent += 1
            await asyncio.sleep(interval)

    async def _submit_http(self, number: int) -> None:
        body = content(self.run, number)
        headers = {**self.suite.token(Role.MEMBER, body["first_proposer"]["id"]), "Idempotency-Key": str(uuid.uuid4())}
        async with httpx.AsyncClient(timeout=10) as http:

            async def post() -> str:
                response = await http.post(f"{self.suite.urls['intake']}/proposals", json=body, headers=headers)
                if response.status_code >= 500:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
                assert response.status_code == 201, response.text
                return str(response.json()["id"])

            self.accepted_http.append(await retrying(post, f"HTTP submission {number}", time.monotonic() + 120))

    async def _submit_kafka(self, number: int) -> None:
        body = content(self.run, number)
        command = SubmitProposal.model_validate(
            {**body, "actor": {"id": body["first_proposer"]["id"], "role": "member"}}
        )
        envelope = Envelope(type=SubmitProposal.TYPE, source=portal(self.run), data=command.model_dump(mode="json"))
        _key, value, headers = to_kafka(envelope)

        async def send() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10000
            )
            await producer.start()
            try:
                await producer.send_and_wait(SUBMISSIONS, value=value, key=envelope.id.encode(), headers=headers)
            finally:
                await producer.stop()

        await retrying(send, f"Kafka submission {number}", time.monotonic() + 120)
        # Acknowledged by the brokers: intake owes it a proposal, whose id it derives from (source, id).
        self.accepted_kafka.append(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}")))

    async def clerk(self) -> None:
        """The committee files (立案) whatever is in review, until cancelled; errors are retried."""
        committee = self.suite.token(Role.COMMITTEE, "c-reliability")
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    intake = self.suite.urls["intake"]
                    response = await http.get(
                        f"{intake}/proposals", params={"status": "submitted", "limit": 200}, headers=committee
                    )
                    for item in response.json()["items"] if response.status_code == 200 else []:
                        filed = await http.post(
                            f"{intake}/proposals/{item['id']}/review", json={"decision": "file"}, headers=committee
                        )
                        self.filed_by_clerk += filed.status_code == 200
                await asyncio.sleep(0.5)


async def _pages(http: httpx.AsyncClient, url: str, headers: dict[str, str], params: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    offset = 0
    while True:
        response = await http.get(url, params={**params, "limit": 200, "offset": offset}, headers=headers)
        response.raise_for_status()
        page = response.json()["items"]
        items += page
        if len(page) < 200:
            return items
        offset += 200


@dataclass
class Tally:
    """What each service holds about the accepted proposals, and what is missing or doubled."""

    accepted: int
    problems: list[str]
    counts: dict[str, int]

    def __str__(self) -> str:
        lines = [f"accepted {self.accepted}: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        return "\n".join(lines + self.problems[:40])


async def tally(suite: Suite, accepted: list[str], run: str, forged: frozenset[str] = frozenset()) -> Tally:
    """Count, service by service, against the accepted proposals. `forged`: ids of events the test itself
    wrote to the topics (poison), which audit rightly records but which are none of the proposals' own."""
    wanted = set(accepted)
    problems: list[str] = []
    counts: dict[str, int] = {}
    committee = suite.token(Role.COMMITTEE, "c-reliability")
    if len(wanted) != len(accepted):
        problems.append(f"the same proposal accepted twice: {[k for k, n in Counter(accepted).items() if n > 1]}")

    def check(what: str, found: Counter[str]) -> None:
        counts[what] = sum(1 for pid in wanted if found[pid] == 1)
        missing = sorted(wanted - set(found))
        twice = sorted(pid for pid in wanted if found[pid] > 1)
        if missing:
            problems.append(f"{what}: {len(missing)} missing, e.g. {missing[:3]}")
        if twice:
            problems.append(f"{what}: {len(twice)} more than once, e.g. {twice[:3]}")

    async with httpx.AsyncClient(timeout=30) as http:
        proposals = await _pages(http, f"{suite.urls['intake']}/proposals", committee, {})
        ours = [p for p in proposals if f"({run}-" in p["title"]]
        titles = Counter(p["title"] for p in ours)
        if doubled := [t for t, n in titles.items() if n > 1]:
            problems.append(f"intake: {len(doubled)} proposals submitted twice, e.g. {doubled[:2]}")
        check("filed", Counter(p["id"] for p in ours if p["status"] == "filed"))

        assignments = await _pages(http, f"{suite.urls['assignment']}/assignments", committee, {"status": "assigned"})
        check("assigned", Counter(a["proposal_id"] for a in assignments))
        routed = {a["proposal_id"]: a for a in assignments if a["proposal_id"] in wanted}

        in_progress = await _pages(http, f"{suite.urls['progress']}/proposals", committee, {"stage": "assigned"})
        check("in progress", Counter(p["id"] for p in in_progress))

        audited: dict[str, Counter[str]] = {}
        event_ids: Counter[str] = Counter()
        for kind in EXPECTED_AUDIT:
            entries: list[dict[str, Any]] = []
            cursor = 0
            while True:
                response = await http.get(
                    f"{suite.urls['audit']}/audit/entries",
                    params={"type": kind, "limit": 500, "cursor": cursor},
                    headers=committee,
                )
                response.raise_for_status()
                body = response.json()
                # A dead-lettered copy is audited as a fact of its own, on the dead-letter topic.
                entries += [
                    e
                    for e in body["items"]
                    if not e["topic"].startswith("proposalflow.dlq.") and e["event_id"] not in forged
                ]
                if body["next_cursor"] is None:
                    break
                cursor = body["next_cursor"]
            audited[kind] = Counter(e["subject"] for e in entries)
            event_ids.update(e["event_id"] for e in entries if e["subject"] in wanted)
            check(f"audited {kind.split('.', 1)[1]}", audited[kind])
        if doubled_ids := [i for i, n in event_ids.items() if n > 1]:
            problems.append(f"audit: {len(doubled_ids)} events recorded twice, e.g. {doubled_ids[:3]}")

        # 通知: per the rules, each proposer hears 提案已立案 and 提案已交办 once per proposal; the lead
        # unit 新交办提案 once; each co-handling unit 新会办提案 once.
        expected: Counter[tuple[str, str, str]] = Counter()
        recipients: dict[str, dict[str, str]] = {m: suite.token(Role.MEMBER, m) for m in MEMBERS}
        number_of = {p["id"]: int(p["title"].rsplit("-", 1)[-1].rstrip(")")) for p in ours}
        for pid in wanted:
            if pid in number_of:
                member = MEMBERS[number_of[pid] % len(MEMBERS)]
                expected[(member, pid, "提案已立案")] += 1
                expected[(member, pid, "提案已交办")] += 1
            if pid in routed:
                for unit in [routed[pid]["lead_unit"], *routed[pid]["split_units"]]:
                    expected[(unit, pid, "新交办提案")] += 1
                    recipients.setdefault(unit, suite.token(Role.UNIT, f"u-{unit}", unit=unit))
                for unit in routed[pid]["co_units"]:
                    expected[(unit, pid, "新会办提案")] += 1
                    recipients.setdefault(unit, suite.token(Role.UNIT, f"u-{unit}", unit=unit))
        told: Counter[tuple[str, str, str]] = Counter()
        for name, headers in recipients.items():
            for item in await _pages(http, f"{suite.urls['notify']}/inbox", headers, {}):
                if item["proposal_id"] in wanted:
                    told[(name, item["proposal_id"], item["title"])] += 1
        counts["notifications expected"] = sum(expected.values())
        counts["notifications told"] = sum(told.values())
        missing_notes = expected - told
        extra_notes = told - expected
        if missing_notes:
            problems.append(f"notify: {sum(missing_notes.values())} missing, e.g. {list(missing_notes)[:3]}")
        if extra_notes:
            problems.append(f"notify: {sum(extra_notes.values())} extra or doubled, e.g. {list(extra_notes)[:3]}")
    return Tally(accepted=len(accepted), problems=problems, counts=counts)


async def settled(
    suite: Suite, accepted: list[str], run: str, timeout: float = SIZE.settle, forged: frozenset[str] = frozenset()
) -> Tally:
    """Poll the count until nothing is missing or doubled (then it is final), or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await tally(suite, accepted, run, forged)
        except httpx.HTTPError as exc:
            found = Tally(accepted=len(accepted), problems=[f"a service did not answer: {exc!r}"], counts={})
        if not found.problems:
            # Looks complete: count once more a little later, so a late duplicate is still caught.
            await asyncio.sleep(3)
            return await tally(suite, accepted, run, forged)
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(2)
