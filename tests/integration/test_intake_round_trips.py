"""Intake's HTTP doors in a counted number of round trips, on SQLite and PostgreSQL (issue 17).

Every statement intake's routes send to PostgreSQL is a round trip on the loopback socket, and an HTTP
request is a transaction of its own that no batch shares (docs/performance.md, "The seventh round:
intake's HTTP doors"). These tests count the statements of one submission, one cosign (a member's
command) and one review that files (立案, with its 案号), each with an `Idempotency-Key`, so the number
cannot silently grow back; and check that the answer is still the proposal as stored.

What is counted: every statement SQLAlchemy executes on the engine (`before_cursor_execute`, the
asyncpg adapter and sqlite3 alike: one round trip each once the statement is prepared), plus the
transaction's BEGIN and COMMIT (`begin` and `commit` events), which the asyncpg adapter sends as
statements of their own. On SQLite, BEGIN IMMEDIATE is an executed statement already (shared/db.py), so
only the COMMIT is added. asyncpg prepares a statement the first time a connection sends it and keeps it
(SQLAlchemy's prepared-statement cache), so each door is counted on a warm connection: a first request of
each kind is sent before counting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake import store
from services.intake.app import build
from services.intake.domain import ProposalStatus
from services.intake.unit_of_work import SqlUnitOfWork
from shared.auth import issue_token
from shared.errors import StateConflict
from shared.events import Actor, Role
from shared.migrate import upgrade_async
from shared.policy import load_policy
from shared.settings import CommonSettings

PROPOSAL = {
    "title": "关于推进全域土地综合整治的建议",
    "body": "我市土地利用碎片化, 建议统筹推进全域土地综合整治。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "cosigners": [{"id": "m-2", "name": "李四"}],
    "suggestions": ["编制整治规划", "设立专项资金"],
}


def token(role: Role, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role)}"}


MEMBER = token(Role.MEMBER, "m-1")
COSIGNER = token(Role.MEMBER, "m-2")
COMMITTEE = token(Role.COMMITTEE, "c-1")

ROUND_TRIPS = {
    # BEGIN, the Idempotency-Key look, the proposal, its signers, the outbox row, the Idempotency-Key
    # answer, COMMIT. The id is drawn here (no look for it); the answer is the proposal as saved.
    ("submit", "sqlite"): 7,
    # The same; the proposal and its signers in one statement (a data-modifying CTE).
    ("submit", "postgresql"): 6,
    # BEGIN, the Idempotency-Key look, the proposal with its signers (one join), the proposal's update
    # (compare-and-set), the signer's confirmation, the outbox rows, the answer, COMMIT.
    ("cosign", "sqlite"): 8,
    # The same; the compare-and-set and the signer's confirmation in one statement (CTEs).
    ("cosign", "postgresql"): 7,
    # BEGIN, the Idempotency-Key look, the proposal with its signers (and whether any proposal is
    # merged into it: none here, so no statement lists them), the 案号 counter (one upsert returning
    # the number), the update, the outbox row, the answer, COMMIT.
    ("file", "sqlite"): 8,
    # The same; the 案号 taken by the load's statement (the counter's upsert as a CTE).
    ("file", "postgresql"): 7,
}


class Counter:
    """The round trips an engine makes while `counting()`; the statements, to say which in a failure."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.dialect = engine.dialect.name
        self.statements: list[str] = []
        self.on = False
        sync = engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def _statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            self._note(statement.split("\n")[0][:80])

        @event.listens_for(sync, "begin")
        def _begin(_conn: Any) -> None:
            if self.dialect == "postgresql":  # SQLite's BEGIN IMMEDIATE is executed, counted above
                self._note("BEGIN")

        @event.listens_for(sync, "commit")
        def _commit(_conn: Any) -> None:
            self._note("COMMIT")

    def _note(self, statement: str) -> None:
        if self.on:
            self.statements.append(statement)

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        self.on = True
        try:
            yield self.statements
        finally:
            self.on = False


@pytest.fixture
async def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", db_url)
    await upgrade_async("intake", db_url)
    runtime, app = build()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def through_the_doors(client: httpx.AsyncClient, n: int) -> dict[str, httpx.Response]:
    """Submit a joint proposal, have its cosigner confirm, and file it; each with its own key."""
    submitted = await client.post("/proposals", json=PROPOSAL, headers={**MEMBER, "Idempotency-Key": f"s-{n}"})
    assert submitted.status_code == 201, submitted.text
    proposal_id = submitted.json()["id"]
    cosigned = await client.post(f"/proposals/{proposal_id}/cosign", headers={**COSIGNER, "Idempotency-Key": f"c-{n}"})
    assert cosigned.status_code == 200, cosigned.text
    filed = await client.post(
        f"/proposals/{proposal_id}/review",
        json={"decision": "file"},
        headers={**COMMITTEE, "Idempotency-Key": f"f-{n}"},
    )
    assert filed.status_code == 200, filed.text
    return {"submit": submitted, "cosign": cosigned, "file": filed}


async def test_each_door_takes_a_counted_number_of_round_trips(client: httpx.AsyncClient) -> None:
    runtime = client.runtime  # type: ignore[attr-defined]
    counter = Counter(runtime.engine)
    await through_the_doors(client, 0)  # warm: each statement prepared once on the pooled connection
    proposal_id = None
    counted: dict[str, list[str]] = {}
    for door in ("submit", "cosign", "file"):
        with counter.counting() as statements:
            if door == "submit":
                answer = await client.post("/proposals", json=PROPOSAL, headers={**MEMBER, "Idempotency-Key": "s-1"})
                proposal_id = answer.json()["id"]
            elif door == "cosign":
                answer = await client.post(
                    f"/proposals/{proposal_id}/cosign", headers={**COSIGNER, "Idempotency-Key": "c-1"}
                )
            else:
                answer = await client.post(
                    f"/proposals/{proposal_id}/review",
                    json={"decision": "file"},
                    headers={**COMMITTEE, "Idempotency-Key": "f-1"},
                )
        assert answer.status_code in (200, 201), answer.text
        counted[door] = list(statements)
    expected = {door: ROUND_TRIPS[(door, counter.dialect)] for door in counted}
    assert {door: len(sent) for door, sent in counted.items()} == expected, "\n".join(
        f"{door}: {statement}" for door, sent in counted.items() for statement in sent
    )
    with counter.counting() as statements:
        replayed = await client.post(
            f"/proposals/{proposal_id}/review",
            json={"decision": "file"},
            headers={**COMMITTEE, "Idempotency-Key": "f-1"},
        )
    assert replayed.headers["idempotent-replayed"] == "true"
    assert len(statements) == 3, "\n".join(statements)  # BEGIN, the key's stored answer, COMMIT


async def test_each_door_answers_the_proposal_as_stored(client: httpx.AsyncClient) -> None:
    """The answer is made from what the request saved, not read back: it must be what a later read shows."""
    for n in range(2):
        answers = await through_the_doors(client, n)
        proposal_id = answers["file"].json()["id"]
        stored = await client.get(f"/proposals/{proposal_id}", headers=COMMITTEE)
        assert answers["file"].json() == stored.json()
        assert stored.json()["filing_number"] == f"{stored.json()['submitted_at'][:4]}-{n + 1:04d}"
        assert answers["cosign"].json() == {**stored.json(), **_review_fields(answers["cosign"].json())}
        assert answers["submit"].json()["created_at"] == stored.json()["created_at"]
        assert answers["submit"].json()["suggestions"] == stored.json()["suggestions"]
        again = await client.post(f"/proposals/{proposal_id}/cosign", headers={**COSIGNER, "Idempotency-Key": f"c-{n}"})
        assert again.json() == answers["cosign"].json()  # the replay answers the stored response


def _review_fields(view: dict[str, Any]) -> dict[str, Any]:
    """What filing changed after the cosign answered."""
    keys = ("status", "filing_number", "review_reason", "reviewed_at")
    return {key: view[key] for key in keys}


async def test_a_filing_lists_the_proposals_merged_into_it_with_one_statement_more(client: httpx.AsyncClient) -> None:
    """并案 then 立案: the load sees a proposal merged into the one filed, so the filing lists it (the
    statement the load spares when there is none) and its event carries it."""
    counter = Counter(client.runtime.engine)  # type: ignore[attr-defined]
    solo = {**PROPOSAL, "cosigners": []}
    target = (await client.post("/proposals", json=solo, headers=MEMBER)).json()["id"]
    other = (await client.post("/proposals", json=solo, headers=MEMBER)).json()["id"]
    merged = await client.post(
        f"/proposals/{other}/review", json={"decision": "merge", "into_proposal_id": target}, headers=COMMITTEE
    )
    assert merged.json()["merged_into"] == target, merged.text
    with counter.counting() as statements:
        filed = await client.post(
            f"/proposals/{target}/review", json={"decision": "file"}, headers={**COMMITTEE, "Idempotency-Key": "f-m"}
        )
    assert filed.json()["status"] == "filed", filed.text
    assert len(statements) == ROUND_TRIPS[("file", counter.dialect)] + 1, "\n".join(statements)
    outbox = store.metadata.tables["outbox"]
    async with client.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        payloads = (await conn.execute(select(outbox.c.payload).where(outbox.c.key == target))).scalars().all()
    filed_events = [json.loads(p) for p in payloads if "filing_number" in json.loads(p)]
    assert [event["merged_proposal_ids"] for event in filed_events] == [[other]]


async def test_concurrent_filings_take_each_number_once_with_no_gap(client: httpx.AsyncClient) -> None:
    """Ten reviews that file at once, one of them sent twice at once with the same key: every proposal is
    filed once, the 案号 run 0001…0010 with no gap and no duplicate, and the duplicate answers either the
    same filing or a conflict, never a second number."""
    solo = {**PROPOSAL, "cosigners": []}
    ids = [(await client.post("/proposals", json=solo, headers=MEMBER)).json()["id"] for _ in range(10)]

    async def file(proposal_id: str, key: str) -> httpx.Response:
        return await client.post(
            f"/proposals/{proposal_id}/review",
            json={"decision": "file"},
            headers={**COMMITTEE, "Idempotency-Key": key},
        )

    answers = await asyncio.gather(
        *(file(proposal_id, f"k-{proposal_id}") for proposal_id in ids), file(ids[0], f"k-{ids[0]}")
    )
    pair = sorted([answers[0], answers[-1]], key=lambda answer: answer.status_code)  # the same key, at once
    assert pair[0].status_code == 200, pair[0].text
    assert pair[1].status_code in (200, 409), pair[1].text  # the stored answer, or the one that lost
    if pair[1].status_code == 200:
        assert pair[1].json()["filing_number"] == pair[0].json()["filing_number"]
    assert all(answer.status_code == 200 for answer in answers[1:-1])
    numbers = []
    for proposal_id in ids:
        stored = (await client.get(f"/proposals/{proposal_id}", headers=COMMITTEE)).json()
        assert stored["status"] == "filed"
        numbers.append(stored["filing_number"])
    year = numbers[0][:4]
    assert sorted(numbers) == [f"{year}-{n:04d}" for n in range(1, 11)]
    outbox = store.metadata.tables["outbox"]
    async with client.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        types = (await conn.execute(select(outbox.c.type))).scalars().all()
    assert sum(t == "proposalflow.proposal.filed.v1" for t in types) == 10


async def test_a_cosign_overtaken_by_a_withdrawal_writes_neither_the_proposal_nor_the_confirmation(
    client: httpx.AsyncClient,
) -> None:
    """The compare-and-set guards the signer's write too (on PostgreSQL one statement: the signer's
    `UPDATE` runs only if the proposal's did): a cosign decided on a proposal withdrawn meanwhile is
    refused and leaves no confirmation, no state and no event."""
    proposal_id = (await client.post("/proposals", json=PROPOSAL, headers=MEMBER)).json()["id"]
    runtime = client.runtime  # type: ignore[attr-defined]
    async with runtime.transaction() as conn:
        uow = SqlUnitOfWork(conn)
        async with uow:
            proposal = await uow.get(proposal_id)
            await store.transition(conn, proposal_id, ProposalStatus.AWAITING_COSIGNERS, ProposalStatus.WITHDRAWN)
            proposal.cosign(
                Actor(id="m-2", role=Role.MEMBER), load_policy(), correlation_id=None, now=datetime.now(UTC)
            )
            with pytest.raises(StateConflict):
                await uow.commit()
    stored = (await client.get(f"/proposals/{proposal_id}", headers=MEMBER)).json()
    assert (stored["status"], stored["confirmed_cosigners"]) == ("withdrawn", [])
    outbox = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        types = (await conn.execute(select(outbox.c.type).where(outbox.c.key == proposal_id))).scalars().all()
    assert "proposalflow.proposal.cosigned.v1" not in types
    assert len(types) == 2  # submitted, cosign-requested


async def test_a_draft_edited_then_submitted_and_cosigned_answers_as_stored(client: httpx.AsyncClient) -> None:
    """草稿 → 修改 (a cosigner added) → 提交 → 联名确认 on both databases: each answer is what a read shows
    (the draft's signer written with it, the signers added and confirmed later)."""
    draft = await client.post("/proposals/drafts", json={"title": "草稿"}, headers=MEMBER)
    assert draft.status_code == 201, draft.text
    proposal_id = draft.json()["id"]
    content = {key: value for key, value in PROPOSAL.items() if key != "first_proposer"}
    edited = await client.patch(f"/proposals/{proposal_id}", json=content, headers=MEMBER)
    assert edited.status_code == 200, edited.text
    assert edited.json() == (await client.get(f"/proposals/{proposal_id}", headers=MEMBER)).json()
    submitted = await client.post(f"/proposals/{proposal_id}/submit", headers=MEMBER)
    assert submitted.json()["status"] == "awaiting_cosigners", submitted.text
    assert submitted.json() == (await client.get(f"/proposals/{proposal_id}", headers=MEMBER)).json()
    cosigned = await client.post(f"/proposals/{proposal_id}/cosign", headers=COSIGNER)
    assert (cosigned.json()["status"], cosigned.json()["confirmed_cosigners"]) == ("submitted", ["m-2"])
    assert cosigned.json() == (await client.get(f"/proposals/{proposal_id}", headers=COSIGNER)).json()


async def test_a_refused_filing_gives_its_number_back(client: httpx.AsyncClient) -> None:
    """On PostgreSQL the 案号 is taken with the proposal's load, before the review is judged: a filing
    refused (already filed: 409; no such proposal: 404) rolls it back with the door's transaction, so the
    next filing takes the next number, with no gap."""
    solo = {**PROPOSAL, "cosigners": []}
    first, second = [(await client.post("/proposals", json=solo, headers=MEMBER)).json()["id"] for _ in range(2)]

    async def file(proposal_id: str) -> httpx.Response:
        return await client.post(f"/proposals/{proposal_id}/review", json={"decision": "file"}, headers=COMMITTEE)

    number = (await file(first)).json()["filing_number"]
    assert (await file(first)).status_code == 409
    assert (await file("no-such-proposal")).status_code == 404
    following = (await file(second)).json()["filing_number"]
    assert following == f"{number[:4]}-{int(number[5:]) + 1:04d}"
