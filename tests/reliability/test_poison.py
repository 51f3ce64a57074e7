"""Poison messages on every consumed topic: invalid JSON, a known type with the wrong schema, an unknown
type, and a huge payload. Each consumer dead-letters what can never succeed (to
`proposalflow.dlq.<service>`, the error in the `x-dlq-error` header) and moves on: the valid events
behind the poison on the same partition are processed. Decisions the design makes for the other cases:

- an inbound command (submissions, unit-reports, leader-reports) that decodes but is invalid or of an unknown type is
  answered with a `…rejected` event, so the sending system learns why (DESIGN.md §2);
- an event of a type a consumer does not know is skipped, not dead-lettered: producers may add event
  types before every consumer knows them (forward compatibility);
- audit records even an undecodable record in the log (type `invalid-record`) instead of dead-lettering it.

Then `proposalflow dlq replay` once the cause is fixed: progress's database refuses every write (a broken
trigger, 运维失误), so progress dead-letters a proposal's events; the trigger is dropped, the dead letters
are replayed, progress catches up and no other consumer handles them twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.engine import make_url

from shared.dlq import list_dead_letters
from shared.envelope import Envelope, to_kafka
from shared.events import (
    ASSIGNMENTS,
    HANDLING,
    LEADER_REPORTS,
    PROPOSALS,
    SUBMISSIONS,
    UNIT_REPORTS,
    RecordSupervision,
    ReportProgress,
    Role,
    SubmitProposal,
    dlq_topic,
    source_of,
)
from shared.settings import SERVICES, CommonSettings
from tests.procs import ROOT
from tests.reliability.conftest import harness
from tests.reliability.workload import TIMEOUT, content, partitions_of, portal, settled

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(TIMEOUT)]

KNOWN_TYPE = {
    SUBMISSIONS: SubmitProposal.TYPE,
    UNIT_REPORTS: ReportProgress.TYPE,
    LEADER_REPORTS: RecordSupervision.TYPE,
    PROPOSALS: "proposalflow.proposal.submitted.v1",
    ASSIGNMENTS: "proposalflow.assignment.assigned.v1",
    HANDLING: "proposalflow.handling.progress-reported.v1",
}
WRITER = {
    SUBMISSIONS: "",
    UNIT_REPORTS: "",
    LEADER_REPORTS: "",
    PROPOSALS: "intake",
    ASSIGNMENTS: "assignment",
    HANDLING: "progress",
}
"""Who writes each topic: a service, or (empty) the run's member portal."""
CONSUMERS = {
    SUBMISSIONS: ["intake", "progress"],  # progress takes the evaluations (评价, 落实评价)
    UNIT_REPORTS: ["assignment", "progress"],  # assignment takes 签收 and 异议
    LEADER_REPORTS: ["progress"],
    PROPOSALS: ["assignment", "progress", "notify"],
    ASSIGNMENTS: ["progress", "notify"],
    HANDLING: ["notify"],
}
POISON_KINDS = ("invalid JSON", "wrong schema", "unknown type", "huge payload")
HUGE = 900_000
"""Bytes of a huge payload: under the broker's 1 MB message limit, so it arrives and must be dealt with."""


def poisons(topic: str, proposal_id: str, run: str) -> dict[str, tuple[bytes, list[tuple[str, bytes]]]]:
    """The four kinds of poison for one topic, as (value, headers) of binary-mode CloudEvents."""
    source = source_of(WRITER[topic]) if WRITER[topic] else portal(run)

    def event(ce_type: str, data: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
        _key, value, headers = to_kafka(Envelope(type=ce_type, source=source, subject=proposal_id, data=data))
        return value, headers

    _value, headers = event(KNOWN_TYPE[topic], {})
    return {
        "invalid JSON": (b'{"proposal_id": "' + proposal_id.encode() + b'", "title": ', headers),
        "wrong schema": event(KNOWN_TYPE[topic], {"proposal_id": proposal_id, "unexpected": True}),
        "unknown type": event("proposalflow.poison.unknown.v1", {"proposal_id": proposal_id}),
        "huge payload": event(KNOWN_TYPE[topic], {"proposal_id": proposal_id, "title": "x" * HUGE}),
    }


async def ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await partitions_of(consumer, t)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def commit_at(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_poison_is_dead_lettered_the_partition_moves_on_and_replay_works_once_fixed(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    extra = {"PROPOSALFLOW_RETRY_ATTEMPTS": "2", "PROPOSALFLOW_RETRY_MAX_DELAY_S": "0.5"}
    async with harness(tmp_path, kafka_bootstrap, "sqlite", extra_env=extra) as h:
        clerk = asyncio.create_task(h.workload.clerk())
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2_000_000)
        await producer.start()
        committee = h.suite.token(Role.COMMITTEE, "c-reliability")
        try:
            # A proposal coming over Kafka, its id known in advance: every poison rides on its partitions.
            body = content(h.run, 1)
            command = SubmitProposal.model_validate(
                {**body, "actor": {"id": body["first_proposer"]["id"], "role": "member"}}
            )
            envelope = Envelope(type=SubmitProposal.TYPE, source=portal(h.run), data=command.model_dump(mode="json"))
            proposal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}"))
            sent: dict[tuple[str, str], str] = {}
            for topic in CONSUMERS:
                key = envelope.id if topic == SUBMISSIONS else proposal_id
                for kind, (value, headers) in poisons(topic, proposal_id, h.run).items():
                    await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
                    sent[(topic, kind)] = dict(headers).get("ce_id", b"").decode()
            _key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(SUBMISSIONS, value=value, key=envelope.id.encode(), headers=headers)
            forged = frozenset(sent.values())
            result = await settled(h.suite, [proposal_id], h.run, timeout=120, forged=forged)
            assert not result.problems, f"the valid proposal behind the poison: {result}\n{h.suite.log_tails()}"

            # A unit's report behind the poison on unit-reports: progress handles it and says so on handling.
            async with httpx.AsyncClient(timeout=10) as http:
                assignment = (
                    await http.get(f"{h.suite.urls['assignment']}/assignments/{proposal_id}", headers=committee)
                ).json()
                unit = assignment["lead_unit"]
                report = ReportProgress(
                    actor={"id": f"u-{unit}", "role": "unit", "unit": unit},
                    proposal_id=proposal_id,
                    unit=unit,
                    kind="phone",
                    on=date.today(),
                    text="已电话联系提案者, 了解具体诉求。",
                )
                report_envelope = Envelope(
                    type=ReportProgress.TYPE,
                    source=portal(h.run),
                    subject=proposal_id,
                    data=report.model_dump(mode="json"),
                )
                _key, value, headers = to_kafka(report_envelope)
                await producer.send_and_wait(UNIT_REPORTS, value=value, key=proposal_id.encode(), headers=headers)

                async def reported() -> bool:
                    response = await http.get(
                        f"{h.suite.urls['audit']}/audit/entries",
                        params={"type": "proposalflow.handling.progress-reported.v1", "subject": proposal_id},
                        headers=committee,
                    )
                    return any(e["topic"] == HANDLING for e in response.json()["items"])

                await until(reported, "the progress report, processed behind the poison on unit-reports", h)

            # Every consumer got to the end of the proposal's partitions: past the poison, nothing stuck.
            topics = list(CONSUMERS)
            last = await ends(kafka_bootstrap, topics)
            for topic, services in CONSUMERS.items():
                for service in services:
                    group = h.suite.env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"]

                    async def caught_up(group: str = group, topic: str = topic) -> bool:
                        done = await committed_offsets(kafka_bootstrap, group, [topic])
                        return all(done.get(tp, 0) >= end for tp, end in last.items() if tp.topic == topic)

                    await until(caught_up, f"{service} past the poison on {topic}", h)

            # What went where: dead letters, rejections, skips.
            letters = {service: await list_dead_letters(settings, service) for service in SERVICES}
            found: dict[tuple[str, str, str], str] = {}
            for service, items in letters.items():
                for letter in items:
                    ce_id = dict(letter.original_headers).get("ce_id", b"").decode()
                    for (topic, kind), poison_id in sent.items():
                        if ce_id == poison_id and letter.original_topic == topic:
                            found[(service, topic, kind)] = letter.error
            expected_dead = {
                (service, topic, kind)
                for topic, services in CONSUMERS.items()
                for service in services
                for kind in ("invalid JSON", "wrong schema", "huge payload")
                if topic not in (SUBMISSIONS, UNIT_REPORTS, LEADER_REPORTS) or kind == "invalid JSON"
            }
            assert set(found) == expected_dead, (
                f"missing {sorted(expected_dead - set(found))}, unexpected {sorted(set(found) - expected_dead)}"
            )
            assert all(found.values()), f"a dead letter without its error: {found}"

            async with httpx.AsyncClient(timeout=10) as http:
                # The sending systems hear why their malformed commands were refused.
                rejected = []
                answers = (
                    (SUBMISSIONS, "submission"),
                    (UNIT_REPORTS, "unit-report"),
                    (LEADER_REPORTS, "leader-report"),
                )
                for topic, rejection in answers:
                    response = await http.get(
                        f"{h.suite.urls['audit']}/audit/entries",
                        params={"type": f"proposalflow.{rejection}.rejected.v1", "limit": 500},
                        headers=committee,
                    )
                    commands = {e["payload"]["command_id"] for e in response.json()["items"]}
                    rejected += [
                        (topic, kind)
                        for kind in ("wrong schema", "unknown type", "huge payload")
                        if sent[(topic, kind)] in commands
                    ]
                assert len(rejected) == 9, f"rejections found only for {rejected}"

                # Audit keeps even the undecodable records, once each.
                response = await http.get(
                    f"{h.suite.urls['audit']}/audit/entries",
                    params={"type": "invalid-record", "limit": 500},
                    headers=committee,
                )
                invalid = [e for e in response.json()["items"] if e["topic"] in CONSUMERS]
                assert len([e for e in invalid if not e["topic"].startswith("proposalflow.dlq.")]) >= len(CONSUMERS)

            print(
                f"\npoison: {len(sent)} records ({len(CONSUMERS)} topics × {len(POISON_KINDS)} kinds); "
                f"{len(found)} dead letters with their error, {len(rejected)} commands answered with a rejection, "
                f"the valid events behind them all processed"
            )
            # Replay once fixed.
            await replay_after_a_fix(h, settings, producer, kafka_bootstrap, forged)
        finally:
            clerk.cancel()
            await producer.stop()


async def committed_offsets(bootstrap: str, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        for topic in topics:
            for partition in await partitions_of(consumer, topic):
                tp = TopicPartition(topic, partition)
                found[tp] = await consumer.committed(tp) or 0
        return found
    finally:
        await consumer.stop()


async def until(check: Any, what: str, h: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{h.suite.log_tails()}")
        await asyncio.sleep(0.5)


async def replay_after_a_fix(
    h: Any, settings: CommonSettings, producer: AIOKafkaProducer, bootstrap: str, forged: frozenset[str]
) -> None:
    """Progress's database refuses every write; its dead letters are replayed once that is fixed."""
    # Replay only what fails from here on (the poison above can never succeed, so nobody replays it).
    await commit_at(bootstrap, "proposalflow-dlq-replay-progress", await ends(bootstrap, [dlq_topic("progress")]))
    path = make_url(h.database_urls["progress"]).database
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("CREATE TRIGGER broken_by_the_test BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
    try:
        body = content(h.run, 2)
        command = SubmitProposal.model_validate(
            {**body, "actor": {"id": body["first_proposer"]["id"], "role": "member"}}
        )
        envelope = Envelope(type=SubmitProposal.TYPE, source=portal(h.run), data=command.model_dump(mode="json"))
        proposal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}"))
        _key, value, headers = to_kafka(envelope)
        await producer.send_and_wait(SUBMISSIONS, value=value, key=envelope.id.encode(), headers=headers)

        committee = h.suite.token(Role.COMMITTEE, "c-reliability")
        letters: list[Any] = []

        async def all_dead_lettered() -> bool:
            # Every event of the proposal on progress's topics (as audit saw them) is a dead letter of
            # progress, and the proposal got as far as its assignment.
            nonlocal letters
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"{h.suite.urls['audit']}/audit/proposals/{proposal_id}", headers=committee)
            entries = [e for e in response.json()["entries"] if e["topic"] in (PROPOSALS, ASSIGNMENTS)]
            dead = await list_dead_letters(settings, "progress")
            about = [x for x in dead if x.key == proposal_id.encode()]
            # Progress reads proposalflow.submissions too (for 评价): the submission command is its dead letter
            # as well, though it would only have skipped it; replayed, intake drops it as a duplicate.
            command_letters = [x for x in dead if x.key == envelope.id.encode()]
            letters = about + command_letters
            assigned = any(e["type"] == "proposalflow.assignment.assigned.v1" for e in entries)
            return assigned and len(about) == len(entries) and len(command_letters) == 1

        await until(all_dead_lettered, "progress dead-lettering every event of the proposal", h)
    finally:
        db.execute("DROP TRIGGER IF EXISTS broken_by_the_test")
        db.close()

    replayed = subprocess.run(
        [sys.executable, "-m", "proposalflow.cli", "dlq", "replay", "progress"],
        env={**h.suite.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"replayed {len(letters)} dead letter(s)" in replayed.stdout, replayed.stdout + replayed.stderr
    result = await settled(h.suite, [proposal_id], h.run, timeout=120, forged=forged)
    print(f"\nreplayed {json.dumps(replayed.stdout.strip())}: {result}")
    assert not result.problems, f"after the replay: {result}\n{h.suite.log_tails()}"
