"""One proposal through the whole skeleton, with every service a separate process on real Kafka.

Submitted over HTTP → filed by the committee → routed and confirmed by the dispatcher → its timeline
in progress → notifications for proposers and units → every event in the audit log. And the Kafka
door: an allow-listed portal's submission is accepted, an unknown sender's is answered with a rejection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.envelope import Envelope, to_kafka
from shared.events import SUBMISSIONS, Role, SubmitProposal
from tests.e2e.conftest import PORTAL, Suite

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def suite(shared_suite: Suite) -> Suite:
    """Both tests run on the run's shared suite per database: each follows only its own proposal (by id)."""
    return shared_suite


PROPOSAL = {
    "title": "关于推进全域土地综合整治的建议",
    "body": "我市土地利用碎片化问题突出, 建议统筹推进全域土地综合整治, 优化国土空间布局。",
    "category": "经济建设",
    "first_proposer": {"id": "m-zhang", "name": "张委员"},
    "cosigners": [{"id": "m-li", "name": "李委员"}],
    "suggestions": ["编制全域土地综合整治规划", "设立专项资金", "建立镇街联动机制"],
}


async def eventually(check: Callable[[], Awaitable[Any]], what: str, suite: Suite, timeout: float = 60.0) -> Any:
    """Poll until `check` returns something truthy; fail with the services' logs otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}\n{suite.log_tails()}")


async def test_a_proposal_goes_from_submission_to_assignment_through_all_five_services(suite: Suite) -> None:
    member = suite.token(Role.MEMBER, "m-zhang")
    cosigner = suite.token(Role.MEMBER, "m-li")
    committee = suite.token(Role.COMMITTEE, "c-office")
    dispatcher = suite.token(Role.DISPATCHER, "d-office")
    lead_unit = suite.token(Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
    url = suite.urls
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(
            f"{url['intake']}/proposals", json=PROPOSAL, headers={**member, "Idempotency-Key": str(uuid.uuid4())}
        )
        assert created.status_code == 201, created.text
        proposal_id = created.json()["id"]
        # A joint proposal (联名提案) goes to review once its cosigner confirms.
        cosigned = await http.post(f"{url['intake']}/proposals/{proposal_id}/cosign", headers=cosigner)
        assert cosigned.status_code == 200, cosigned.text

        filed = await http.post(
            f"{url['intake']}/proposals/{proposal_id}/review", json={"decision": "file"}, headers=committee
        )
        assert filed.status_code == 200, filed.text
        filing_number = filed.json()["filing_number"]

        async def suggestion() -> dict[str, Any] | None:
            response = await http.get(f"{url['assignment']}/assignments/{proposal_id}", headers=dispatcher)
            return response.json() if response.status_code == 200 else None

        suggested = await eventually(suggestion, "a routing suggestion", suite)
        assert suggested["status"] == "suggested"
        assert suggested["lead_unit"] == "dg-zrzyj"

        confirmed = await http.post(
            f"{url['assignment']}/assignments/{proposal_id}/confirm", json={}, headers=dispatcher
        )
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["status"] == "assigned"
        assert confirmed.json()["reply_due"]

        async def assigned_in_progress() -> dict[str, Any] | None:
            response = await http.get(f"{url['progress']}/proposals/{proposal_id}", headers=committee)
            body = response.json() if response.status_code == 200 else None
            return body if body and body["stage"] == "assigned" else None

        progress = await eventually(assigned_in_progress, "the assigned stage in progress", suite)
        assert progress["filing_number"] == filing_number
        assert progress["lead_unit"] == "dg-zrzyj"
        types = [entry["type"] for entry in progress["timeline"]]
        assert types == [
            "proposalflow.proposal.submitted.v1",
            "proposalflow.proposal.cosign-requested.v1",
            "proposalflow.proposal.cosigned.v1",
            "proposalflow.proposal.review-started.v1",
            "proposalflow.proposal.filed.v1",
            "proposalflow.assignment.suggested.v1",
            "proposalflow.assignment.assigned.v1",
        ]
        unit_view = await http.get(f"{url['progress']}/proposals/{proposal_id}", headers=lead_unit)
        assert unit_view.status_code == 200
        other_unit = suite.token(Role.UNIT, "u-x", unit="dg-jyj")
        assert (await http.get(f"{url['progress']}/proposals/{proposal_id}", headers=other_unit)).status_code == 404

        async def inbox(headers: dict[str, str], title: str) -> list[dict[str, Any]]:
            response = await http.get(f"{url['notify']}/inbox", headers=headers)
            items = response.json()["items"] if response.status_code == 200 else []
            return [item for item in items if item["proposal_id"] == proposal_id and item["title"] == title]

        for headers in (member, cosigner):
            told = await eventually(lambda h=headers: inbox(h, "提案已交办"), "the proposers' notification", suite)
            assert "东莞市自然资源局" in told[0]["body"]
        unit_told = await eventually(lambda: inbox(lead_unit, "新交办提案"), "the lead unit's notification", suite)
        assert len(unit_told) == 1
        co_unit = suite.token(Role.UNIT, "u-nyj", unit="dg-nyj")
        await eventually(lambda: inbox(co_unit, "新会办提案"), "a co-handling unit's notification", suite)

        async def audited() -> list[dict[str, Any]] | None:
            response = await http.get(f"{url['audit']}/audit/proposals/{proposal_id}", headers=committee)
            entries = response.json()["entries"]
            ids = {entry["event_id"] for entry in entries}
            wanted = {entry["event_id"] for entry in progress["timeline"]}
            delivered = [entry for entry in entries if entry["type"] == "proposalflow.notification.delivered.v1"]
            return entries if wanted <= ids and len(delivered) >= 5 else None

        entries = await eventually(audited, "every event in the audit log", suite)
        submitted = next(entry for entry in entries if entry["type"] == "proposalflow.proposal.submitted.v1")
        assert submitted["actor"] == {"id": "m-zhang", "role": "member", "unit": None}
        assert (await http.get(f"{url['audit']}/audit/proposals/{proposal_id}", headers=member)).status_code == 403


async def test_the_kafka_door_accepts_allow_listed_portals_and_answers_everyone_else(
    suite: Suite, kafka_bootstrap: str
) -> None:
    command = SubmitProposal.model_validate({**PROPOSAL, "actor": {"id": "m-zhang", "role": "member"}})
    accepted = Envelope(
        type=SubmitProposal.TYPE,
        source=PORTAL,
        data=command.model_dump(mode="json"),
        extensions={"correlationid": "portal-req-1"},
    )
    stranger = Envelope(type=SubmitProposal.TYPE, source="/somebody/else", data=command.model_dump(mode="json"))
    invalid = Envelope(
        type=SubmitProposal.TYPE, source=PORTAL, data={**command.model_dump(mode="json"), "suggestions": []}
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for envelope in (accepted, stranger, invalid):
            _key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(SUBMISSIONS, value=value, key=envelope.id.encode(), headers=headers)
    finally:
        await producer.stop()

    committee = suite.token(Role.COMMITTEE, "c-office")
    async with httpx.AsyncClient(timeout=10) as http:

        async def found_proposal() -> dict[str, Any] | None:
            response = await http.get(f"{suite.urls['intake']}/proposals", headers=committee, params={"limit": 200})
            mine = [
                item
                for item in response.json()["items"]
                if item["status"] == "awaiting_cosigners"
                and item["title"] == PROPOSAL["title"]
                # the id intake derives from (source, command id): this command's proposal, not another test's
                and item["id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{accepted.source}#{accepted.id}"))
            ]
            return mine[0] if mine else None

        await eventually(found_proposal, "the proposal submitted over Kafka", suite)

        async def rejections() -> list[dict[str, Any]] | None:
            found = []
            for envelope in (stranger, invalid):
                response = await http.get(f"{suite.urls['audit']}/audit/proposals/{envelope.id}", headers=committee)
                found += [
                    entry
                    for entry in response.json()["entries"]
                    if entry["type"] == "proposalflow.submission.rejected.v1"
                ]
            return found if len(found) == 2 else None

        rejected = await eventually(rejections, "rejections for the stranger and the invalid command", suite)
        reasons = {entry["payload"]["command_id"]: entry["payload"]["reason"] for entry in rejected}
        assert "not allowed" in reasons[stranger.id]
        assert "suggestions" in reasons[invalid.id]
