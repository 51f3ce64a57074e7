"""The contract from the outside: two units' OA systems (examples/unit_oa_system.py, written with
confluent-kafka and the official CloudEvents SDK, nothing of ProposalFlow's code) do every unit step of a
proposal by events alone — 签收, 办理进展, 会办意见, 答复 (drafted again once returned), 举措落实 — while the
CPPCC office's own steps (立案, 交办 confirmation, 办复审查) and the member's (submission, 评价) go over HTTP.
The proposal reaches 办结 and its measure is done (落实). Then every record written during the run, on every
topic, is decoded with the CloudEvents SDK and its data validated against the published docs/schemas/."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from confluent_kafka import Consumer, TopicPartition
from jsonschema import Draft202012Validator

from shared.events import ALL_TOPICS, UNIT_REPORTS, Role
from tests.e2e.conftest import ROOT, UNIT_SYSTEMS, Suite
from tests.e2e.test_handling_lifecycle import PROPOSAL
from tests.e2e.test_lifecycle import eventually
from tests.lifecycle_driver import Walk

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def suite(shared_suite: Suite) -> Suite:
    """The run's shared suite per database: the story follows only its own proposal (by id), and the OA
    systems read only from the story's start (`since_ms`), so they act on no other test's proposal."""
    return shared_suite


EXAMPLE = ROOT / "examples" / "unit_oa_system.py"
SCHEMAS = ROOT / "docs" / "schemas"
UNIT_STEPS = {
    "proposalflow.assignment.accepted.v1": "proposalflow.unit-report.acceptance-submitted.v1",
    "proposalflow.handling.progress-reported.v1": "proposalflow.unit-report.progress-submitted.v1",
    "proposalflow.handling.co-opinion-submitted.v1": "proposalflow.unit-report.co-opinion-submitted.v1",
    "proposalflow.reply.drafted.v1": "proposalflow.unit-report.reply-submitted.v1",
    "proposalflow.measure.updated.v1": "proposalflow.unit-report.measure-update-submitted.v1",
}
"""Each unit step's event, and the command that must have caused it."""


@contextlib.contextmanager
def oa_system(suite: Suite, unit: str, since_ms: int, log: Path) -> Iterator[Path]:
    """The example as its own process, for one unit, reading from `since_ms` on."""
    command = [
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        suite.env["PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS"],
        "--unit",
        unit,
        "--source",
        UNIT_SYSTEMS[unit],
        "--person",
        f"oa-{unit}",
        "--group",
        f"oa-{unit}-{uuid.uuid4().hex[:8]}",
        "--since-ms",
        str(since_ms),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def lines(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            found.append(json.loads(line))
    return found


def records_since(bootstrap: str, since_ms: int) -> list[Any]:
    """Every record on every ProposalFlow topic from `since_ms` to the end as it is now, with confluent-kafka."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"contract-{uuid.uuid4().hex[:8]}"})
    try:
        wanted = []
        for topic in ALL_TOPICS:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            wanted += [TopicPartition(topic, p, since_ms) for p in partitions]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in starts}
        todo = {(tp.topic, tp.partition) for tp in starts if 0 <= tp.offset < ends[(tp.topic, tp.partition)]}
        consumer.assign([tp for tp in starts if (tp.topic, tp.partition) in todo])
        found = []
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            found.append(message)
            where = (message.topic(), message.partition())
            if message.offset() + 1 >= ends[where]:
                todo.discard(where)
        assert not todo, f"could not read to the end of {sorted(todo)}"
        return found
    finally:
        consumer.close()


def decoded_and_validated(messages: list[Any]) -> list[Any]:
    """Each record as a CloudEvent (the official SDK), its data valid against docs/schemas/<type>.json."""
    validators: dict[str, Draft202012Validator] = {}
    events, problems = [], []
    for message in messages:
        headers = {name: value for name, value in (message.headers() or []) if value is not None}
        event = ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers, message.key(), message.value()))
        ce_type = event.get_type()
        if ce_type not in validators:
            schema = SCHEMAS / f"{ce_type}.json"
            if not schema.exists():
                problems.append(f"{ce_type}: no published schema")
                continue
            validators[ce_type] = Draft202012Validator(json.loads(schema.read_text(encoding="utf-8")))
        errors = [
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in validators[ce_type].iter_errors(event.get_data())
        ]
        if errors:
            problems.append(f"{ce_type} {event.get_id()}: {errors[:3]}")
        events.append((message.topic(), event))
    assert not problems, problems
    return events


async def test_unit_oa_systems_do_every_unit_step_by_events_to_closure_and_implementation(
    suite: Suite, tmp_path: Path
) -> None:
    # From now on, not a moment earlier: the suite is shared, and the test before may have sent records
    # (the Kafka door's deliberately invalid command) just before this one started. The records' times are
    # the producers' clocks, this machine's.
    since_ms = int(time.time() * 1000)
    member = suite.token(Role.MEMBER, "m-wang")
    committee = suite.token(Role.COMMITTEE, "c-office")
    dispatcher = suite.token(Role.DISPATCHER, "d-office")
    url = suite.urls
    async with httpx.AsyncClient(timeout=10) as http:
        with (
            oa_system(suite, "dg-zrzyj", since_ms, tmp_path / "oa-zrzyj.log") as lead_log,
            oa_system(suite, "dg-nyj", since_ms, tmp_path / "oa-nyj.log") as co_log,
        ):

            async def oa_ready() -> bool:
                return all(any(line["event"] == "ready" for line in lines(log)) for log in (lead_log, co_log))

            await eventually(oa_ready, "both OA systems reading", suite)

            def oa_logs() -> str:
                return "\n".join(
                    f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}" for log in (lead_log, co_log)
                )

            walk = Walk.of(http, suite)
            await walk.submit(PROPOSAL)
            pid = walk.pid
            await walk.file()
            await walk.suggested()
            routing = {"lead_unit": "dg-zrzyj", "co_units": ["dg-nyj"]}
            confirmed = await http.post(
                f"{url['assignment']}/assignments/{pid}/confirm", json=routing, headers=dispatcher
            )
            assert confirmed.status_code == 200, confirmed.text

            async def proposal(*stages: str) -> dict[str, Any] | None:
                response = await http.get(f"{url['progress']}/proposals/{pid}", headers=committee)
                body = response.json() if response.status_code == 200 else None
                return body if body and body["stage"] in stages else None

            # The OA systems accept, report progress, send the co-opinion and then the reply: all by events.
            view = await eventually(lambda: proposal("reply_review"), f"the OA's reply\n{oa_logs()}", suite, 120)
            # 签收 goes to assignment and 会办意见 to progress, two consumers: the co-unit's acceptance may be
            # recorded a moment after the reply reached review, so it is awaited, not read once.
            both_accepted = {"dg-zrzyj": "accepted", "dg-nyj": "accepted"}

            async def responses() -> dict[str, str] | None:
                answered = await http.get(f"{url['assignment']}/assignments/{pid}", headers=dispatcher)
                found = {r["unit"]: r["response"] for r in answered.json()["responses"]}
                return found if found == both_accepted else None

            assert await eventually(responses, f"both units' 签收\n{oa_logs()}", suite, 30) == both_accepted
            assert [c["unit"] for c in view["co_opinions"]] == ["dg-nyj"]
            first_reply = view["replies"][-1]["id"]
            returned = await http.post(
                f"{url['progress']}/proposals/{pid}/replies/{first_reply}/review",
                json={"decision": "return", "reason": "请补充专项资金的安排"},
                headers=committee,
            )
            assert returned.status_code == 200, returned.text

            async def redrafted() -> dict[str, Any] | None:
                body = await proposal("reply_review")
                return body if body and body["replies"][-1]["id"] != first_reply else None

            view = await eventually(redrafted, f"the OA's reply drafted again\n{oa_logs()}", suite, 90)
            approved = await http.post(
                f"{url['progress']}/proposals/{pid}/replies/{view['replies'][-1]['id']}/review",
                json={"decision": "approve"},
                headers=committee,
            )
            assert approved.status_code == 200, approved.text

            async def measure_started() -> dict[str, Any] | None:
                body = await proposal("answered")
                return body if body and [m["status"] for m in body["measures"]] == ["in_progress"] else None

            await eventually(measure_started, f"the measure under way\n{oa_logs()}", suite, 90)
            evaluated = await http.post(
                f"{url['progress']}/proposals/{pid}/evaluations",
                json={"handling_grade": "satisfied", "result_grade": "satisfied"},
                headers=member,
            )
            assert evaluated.status_code == 200, evaluated.text
            assert evaluated.json()["stage"] == "closed"

            async def implemented() -> dict[str, Any] | None:
                body = await proposal("closed")
                return body if body and body["implemented_at"] is not None else None

            done = await eventually(implemented, f"落实 by the OA's measure update\n{oa_logs()}", suite, 90)
            assert [m["status"] for m in done["measures"]] == ["done"]
            # The same act over HTTP would open the 落实评价 at once: by event it does too, not at a later pass.
            assert done["implementation_evaluation"]["state"] == "open"
            assert done["implementation_evaluation"]["round"] == 1

            async def audited() -> bool:
                response = await http.get(f"{url['audit']}/audit/proposals/{pid}", headers=committee)
                entries = [e["type"] for e in response.json()["entries"]]
                return {
                    "proposalflow.proposal.implemented.v1",
                    "proposalflow.implementation.evaluation-opened.v1",
                } <= set(entries)

            await eventually(audited, "the story in the audit log", suite)
            assert not [line for line in lines(lead_log) + lines(co_log) if line["event"] == "rejected"], oa_logs()

    # Every record of the run, decoded with the SDK and valid against its published schema.
    events = decoded_and_validated(records_since(suite.env["PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS"], since_ms))
    mine = [(topic, event) for topic, event in events if event.get_subject() == pid]
    commands = {
        event.get_id(): event
        for topic, event in mine
        if topic == UNIT_REPORTS and event.get_source() in UNIT_SYSTEMS.values()
    }
    assert sorted(event.get_type() for event in commands.values()) == sorted(
        [
            "proposalflow.unit-report.acceptance-submitted.v1",
            "proposalflow.unit-report.acceptance-submitted.v1",
            "proposalflow.unit-report.co-opinion-submitted.v1",
            "proposalflow.unit-report.measure-update-submitted.v1",
            "proposalflow.unit-report.measure-update-submitted.v1",
            "proposalflow.unit-report.progress-submitted.v1",
            "proposalflow.unit-report.reply-submitted.v1",
            "proposalflow.unit-report.reply-submitted.v1",
        ]
    )
    # Each unit step happened because of one of those commands: its correlation id is the command's id.
    steps = [event for topic, event in mine if event.get_type() in UNIT_STEPS]
    assert len(steps) == len(commands)
    for event in steps:
        cause = commands[event.get_extension("correlationid")]
        assert cause.get_type() == UNIT_STEPS[event.get_type()]
        assert event.get_data()["correlation_id"] == cause.get_id()
    types = {event.get_type() for _, event in mine}
    for expected in (
        "proposalflow.proposal.submitted.v1",
        "proposalflow.assignment.assigned.v1",
        "proposalflow.reply.returned.v1",
        "proposalflow.reply.approved.v1",
        "proposalflow.proposal.closed.v1",
        "proposalflow.proposal.implemented.v1",
        "proposalflow.implementation.evaluation-opened.v1",
    ):
        assert expected in types, expected
    assert not [t for t in types if t.endswith("rejected.v1")]
    print(
        f"\ncontract: {len(events)} records of the run decoded with the CloudEvents SDK and valid against "
        f"{len({event.get_type() for _, event in events})} published schemas; {len(commands)} unit commands "
        f"did every unit step of {pid}"
    )
