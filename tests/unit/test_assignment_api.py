"""Assignment's HTTP door, route by route and role by role, with a fake clock.

The app runs in-process on SQLite (migrated with Alembic); proposals arrive through the service's
own Kafka processor (records built in memory), and outgoing events are read from the outbox.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.assignment import store
from services.assignment.app import build
from shared.auth import issue_token
from shared.events import Actor, ProposalFiled, ProposalSubmitted, Proposer, Role, Suggestion
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from tests.fakes import record_of


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


ADMIN = token(Role.ADMIN, "a-1")
DISPATCHER = token(Role.DISPATCHER, "d-1")
COMMITTEE = token(Role.COMMITTEE, "c-1")
MEMBER = token(Role.MEMBER, "m-1")
ZRZYJ = token(Role.UNIT, "u-1", unit="dg-zrzyj")
NYJ = token(Role.UNIT, "u-2", unit="dg-nyj")
FGJ = token(Role.UNIT, "u-3", unit="dg-fgj")
JYJ = token(Role.UNIT, "u-4", unit="dg-jyj")
LEADER = token(Role.LEADER, "leader-fsz-cj")

# Monday 2026-03-02, 10:00 in Beijing.
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    http: httpx.AsyncClient
    runtime: ServiceRuntime
    clock: FakeClock
    app: Any
    offset: int = 0

    async def deliver(self, *events: Any) -> None:
        for event in events:
            self.offset += 1
            envelope = envelope_for(event, "intake")
            outcome = await self.runtime.processors[0].process(
                record_of(envelope, "proposalflow.proposals", self.offset)
            )
            assert outcome == "handled", outcome

    async def file(
        self, proposal_id: str, title: str = "关于推进全域土地综合整治的建议", series: str | None = None
    ) -> None:
        actor = Actor(id="c-1", role=Role.COMMITTEE)
        proposer = Proposer(id="m-1", name="张委员")
        await self.deliver(
            ProposalSubmitted(
                proposal_id=proposal_id,
                actor=actor,
                title=title,
                body="我市土地利用碎片化问题突出。",
                category="经济建设",
                session_kind="interim",
                first_proposer=proposer,
                suggestions=[Suggestion(number=1, text="编制整治规划")],
                series_id=series,
                submitted_at=START,
            ),
            ProposalFiled(
                proposal_id=proposal_id,
                actor=actor,
                filing_number="2026-0001",
                title=title,
                category="经济建设",
                first_proposer=proposer,
                suggestion_count=1,
                filed_at=START,
            ),
        )

    async def outbox(self) -> list[dict[str, Any]]:
        table = store.metadata.tables["outbox"]
        async with self.runtime.engine.connect() as conn:
            rows = (await conn.execute(select(table.c.type, table.c.payload).order_by(table.c.id))).all()
        return [{"type": row.type, **json.loads(row.payload)} for row in rows]

    async def types(self) -> list[str]:
        return [event["type"] for event in await self.outbox()]


@pytest.fixture
async def harness(db_url: str, monkeypatch) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    """The assignment app in-process, on SQLite and on PostgreSQL."""
    url = db_url
    monkeypatch.setenv("PROPOSALFLOW_ASSIGNMENT_DATABASE_URL", url)
    await upgrade_async("assignment", url)
    clock = FakeClock()
    runtime, app = build(clock=clock)
    async with runtime.transaction() as conn:
        await app.state.seed_and_learn(conn)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://assignment") as http:
        yield Harness(http, runtime, clock, app)
    await runtime.engine.dispose()


async def test_a_filed_proposal_is_suggested_with_reasons_and_confirmed_with_its_deadlines(harness: Harness) -> None:
    await harness.file("p-1")
    suggested = await harness.http.get("/assignments/p-1", headers=DISPATCHER)
    assert suggested.status_code == 200, suggested.text
    body = suggested.json()
    assert (body["status"], body["lead_unit"], body["co_units"]) == ("suggested", "dg-zrzyj", ["dg-nyj", "dg-fgj"])
    assert any(reason.startswith("相似历史提案") for reason in body["reasons"])

    confirmed = await harness.http.post("/assignments/p-1/confirm", json={}, headers=DISPATCHER)
    assert confirmed.status_code == 200, confirmed.text
    view = confirmed.json()
    # Mon 2026-03-02 + 5 working days = Mon 03-09; 1 month = Thu 04-02; 3 months = Tue 06-02.
    assert (view["dispute_until"], view["co_opinion_due"], view["reply_due"]) == (
        "2026-03-09",
        "2026-04-02",
        "2026-06-02",
    )
    assigned = (await harness.outbox())[-1]
    assert assigned["type"] == "proposalflow.assignment.assigned.v1"
    assert assigned["dispute_until"] == "2026-03-09" and assigned["form"] == "lead_co"

    again = await harness.http.post("/assignments/p-1/confirm", json={}, headers=DISPATCHER)
    assert again.status_code == 409
    assert again.json()["errors"][0]["rule"] == "confirm_only_suggested"


async def test_the_dispatcher_may_confirm_as_split_and_each_unit_then_answers(harness: Harness) -> None:
    await harness.file("p-2")
    body = {"lead_unit": "dg-zrzyj", "split_units": ["dg-nyj"], "form": "split"}
    confirmed = await harness.http.post("/assignments/p-2/confirm", json=body, headers=DISPATCHER)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["form"], confirmed.json()["co_opinion_due"]) == ("split", None)
    event = (await harness.outbox())[-1]
    assert [u["id"] for u in event["split_units"]] == ["dg-nyj"] and event["co_units"] == []
    mismatched = await harness.http.post(
        "/assignments/p-2/confirm", json={"lead_unit": "dg-zrzyj", "form": "lead_co"}, headers=DISPATCHER
    )
    assert mismatched.status_code == 422
    assert mismatched.json()["errors"][0]["rule"] == "form_matches_units"
    no_lead = await harness.http.post("/assignments/p-2/confirm", json={"co_units": ["dg-nyj"]}, headers=DISPATCHER)
    assert no_lead.json()["errors"][0]["rule"] == "override_names_lead"


async def test_units_accept_or_dispute_once_within_the_window_and_the_dispatcher_reassigns(harness: Harness) -> None:
    await harness.file("p-3")
    await harness.http.post("/assignments/p-3/confirm", json={}, headers=DISPATCHER)
    assert (await harness.http.post("/assignments/p-3/accept", headers=NYJ)).status_code == 200
    twice = await harness.http.post("/assignments/p-3/accept", headers=NYJ)
    assert twice.status_code == 409 and twice.json()["errors"][0]["rule"] == "unit_responds_once"
    stranger = await harness.http.post("/assignments/p-3/accept", headers=JYJ)
    assert stranger.status_code == 403 and stranger.json()["errors"][0]["rule"] == "unit_acts_on_own_assignment"
    short = await harness.http.post("/assignments/p-3/dispute", json={"reason": "不"}, headers=ZRZYJ)
    assert short.status_code == 422
    disputed = await harness.http.post(
        "/assignments/p-3/dispute", json={"reason": "属农村宅基地管理, 应由市农业农村局主办"}, headers=ZRZYJ
    )
    assert disputed.status_code == 200 and disputed.json()["status"] == "disputed"

    harness.clock.now = START + timedelta(days=3)
    reassigned = await harness.http.post(
        "/assignments/p-3/reassign",
        json={"lead_unit": "dg-nyj", "co_units": ["dg-zrzyj"], "reason": "采纳异议"},
        headers=DISPATCHER,
    )
    assert reassigned.status_code == 200, reassigned.text
    view = reassigned.json()
    # Recomputed from Thu 03-05: 5 working days → Thu 03-12.
    assert (view["lead_unit"], view["status"], view["dispute_until"]) == ("dg-nyj", "assigned", "2026-03-12")
    assert view["previous_assignment_id"] is not None and view["responses"] == []
    event = (await harness.outbox())[-1]
    assert event["type"] == "proposalflow.assignment.reassigned.v1" and event["reply_due"] == "2026-06-05"
    # The superseded assignment's answers do not carry over: the new lead answers afresh.
    assert (await harness.http.post("/assignments/p-3/accept", headers=NYJ)).status_code == 200


async def test_an_upheld_dispute_counts_as_accepted_and_silence_is_accepted_when_the_window_closes(
    harness: Harness,
) -> None:
    await harness.file("p-4")
    await harness.http.post("/assignments/p-4/confirm", json={}, headers=DISPATCHER)
    not_yet = await harness.http.post("/assignments/p-4/uphold", json={}, headers=DISPATCHER)
    assert not_yet.status_code == 409 and not_yet.json()["errors"][0]["rule"] == "uphold_only_disputed"
    await harness.http.post("/assignments/p-4/dispute", json={"reason": "非本单位职责范围"}, headers=FGJ)
    upheld = await harness.http.post("/assignments/p-4/uphold", json={"note": "属会办职责"}, headers=DISPATCHER)
    assert upheld.status_code == 200 and upheld.json()["status"] == "assigned"
    assert (await harness.outbox())[-1]["type"] == "proposalflow.assignment.dispute-upheld.v1"

    harness.clock.now = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # 23:00 on the window's last day
    await harness.app.state.sweep()
    assert (await harness.http.get("/assignments/p-4", headers=DISPATCHER)).json()["status"] == "assigned"
    harness.clock.now = datetime(2026, 3, 9, 16, 30, tzinfo=UTC)  # 00:30 on Tue 03-10 in Beijing
    late = await harness.http.post("/assignments/p-4/accept", headers=ZRZYJ)
    assert late.status_code == 409 and late.json()["errors"][0]["rule"] == "dispute_window_open"
    await harness.app.state.sweep()
    await harness.app.state.sweep()
    view = (await harness.http.get("/assignments/p-4", headers=DISPATCHER)).json()
    assert view["status"] == "accepted"
    deemed = [e for e in await harness.outbox() if e["type"] == "proposalflow.assignment.accepted.v1"]
    assert sorted(e["unit"]["id"] for e in deemed) == ["dg-nyj", "dg-zrzyj"]
    assert all(e["deemed"] and e["actor"]["role"] == "system" for e in deemed)


async def test_assignments_are_visible_by_role_and_unit(harness: Harness) -> None:
    await harness.file("p-5")
    assert (await harness.http.get("/assignments/p-5", headers=ZRZYJ)).status_code == 200
    assert (await harness.http.get("/assignments/p-5", headers=JYJ)).status_code == 404
    assert (await harness.http.get("/assignments/p-5", headers=MEMBER)).status_code == 403
    assert (await harness.http.get("/assignments/nope", headers=DISPATCHER)).status_code == 404
    listed = await harness.http.get("/assignments?status=suggested&limit=10", headers=DISPATCHER)
    assert [item["proposal_id"] for item in listed.json()["items"]] == ["p-5"]
    assert (await harness.http.get("/assignments", headers=JYJ)).json()["items"] == []
    assert len((await harness.http.get("/assignments", headers=NYJ)).json()["items"]) == 1
    for path in ("confirm", "reassign", "uphold"):
        refused = await harness.http.post(f"/assignments/p-5/{path}", json={}, headers=ZRZYJ)
        assert refused.status_code in (403, 422)
    assert (await harness.http.post("/assignments/p-5/accept", headers=DISPATCHER)).status_code == 403
    missing = await harness.http.post("/assignments/nope/confirm", json={}, headers=DISPATCHER)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_confirm_replays_with_the_same_idempotency_key(harness: Harness) -> None:
    await harness.file("p-6")
    headers = {**DISPATCHER, "Idempotency-Key": "k-1"}
    first = await harness.http.post("/assignments/p-6/confirm", json={}, headers=headers)
    second = await harness.http.post("/assignments/p-6/confirm", json={}, headers=headers)
    assert first.json() == second.json() and second.headers["idempotent-replayed"] == "true"
    assert (await harness.types()).count("proposalflow.assignment.assigned.v1") == 1


async def test_admins_manage_units_and_a_referenced_unit_is_deactivated_not_deleted(harness: Harness) -> None:
    unit = {"id": "dg-qingxi", "name": "东莞市清溪镇人民政府", "short_name": "清溪镇", "kind": "town"}
    assert (await harness.http.post("/units", json=unit, headers=DISPATCHER)).status_code == 403
    created = await harness.http.post("/units", json=unit, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert (await harness.http.post("/units", json=unit, headers=ADMIN)).status_code == 409
    bad = await harness.http.post("/units", json={**unit, "id": "x", "kind": "village"}, headers=ADMIN)
    assert bad.status_code == 422
    renamed = await harness.http.patch("/units/dg-qingxi", json={"short_name": "清溪"}, headers=ADMIN)
    assert renamed.json()["short_name"] == "清溪"
    assert (await harness.http.delete("/units/dg-qingxi", headers=ADMIN)).status_code == 204

    await harness.file("p-7")
    await harness.http.post("/assignments/p-7/confirm", json={"lead_unit": "dg-humen"}, headers=DISPATCHER)
    referenced = await harness.http.delete("/units/dg-humen", headers=ADMIN)
    assert referenced.status_code == 409 and "deactivate" in referenced.json()["detail"]
    routed = await harness.http.patch("/units/dg-zrzyj", json={"active": False}, headers=ADMIN)
    assert routed.status_code == 409 and routed.json()["errors"][0]["rule"] == "unit_not_routed_to"
    off = await harness.http.patch("/units/dg-humen", json={"active": False}, headers=ADMIN)
    assert off.status_code == 200 and off.json()["active"] is False
    active = await harness.http.get("/units?active=false", headers=DISPATCHER)
    assert [u["id"] for u in active.json()["items"]] == ["dg-humen"]
    await harness.file("p-8")
    to_inactive = await harness.http.post(
        "/assignments/p-8/confirm", json={"lead_unit": "dg-humen"}, headers=DISPATCHER
    )
    assert to_inactive.status_code == 422 and to_inactive.json()["errors"][0]["rule"] == "unit_active"
    assert (await harness.http.get("/units", headers=MEMBER)).status_code == 403
    assert (await harness.http.patch("/units/nope", json={}, headers=ADMIN)).status_code == 404


async def test_admins_edit_the_routing_rules_and_new_suggestions_follow_them(harness: Harness) -> None:
    rules = (await harness.http.get("/routing-rules", headers=DISPATCHER)).json()
    assert rules["fallback"] == "dg-fgj"
    assert (await harness.http.put("/routing-rules", json=rules, headers=DISPATCHER)).status_code == 403
    bad = {**rules, "fallback": "dg-nope"}
    refused = await harness.http.put("/routing-rules", json=bad, headers=ADMIN)
    assert refused.status_code == 422 and "dg-nope" in refused.json()["detail"]
    rules["rules"].insert(0, {"keywords": ["全域土地"], "lead": "dg-humen", "co": []})
    assert (await harness.http.put("/routing-rules", json=rules, headers=ADMIN)).status_code == 200
    assert (await harness.http.get("/routing-rules", headers=MEMBER)).status_code == 403
    await harness.file("p-9", title="关于全域土地整治的建议")
    assert (await harness.http.get("/assignments/p-9", headers=DISPATCHER)).json()["lead_unit"] in {
        "dg-humen",
        "dg-zrzyj",
    }


async def test_leaders_catalog_and_key_proposals_alone_or_as_a_series(harness: Harness) -> None:
    leaders = await harness.http.get("/leaders", headers=COMMITTEE)
    assert "leader-zxzx" in [leader["id"] for leader in leaders.json()["items"]]
    assert (await harness.http.get("/leaders", headers=MEMBER)).status_code == 403
    new = {"id": "leader-fsz-ny", "title": "副市长(分管农业农村)"}
    assert (await harness.http.post("/leaders", json=new, headers=COMMITTEE)).status_code == 403
    assert (await harness.http.post("/leaders", json=new, headers=ADMIN)).status_code == 201
    off = await harness.http.patch("/leaders/leader-fsz-ny", json={"active": False}, headers=ADMIN)
    assert off.json()["active"] is False

    await harness.file("p-10", series="s-traffic")
    await harness.file("p-11", series="s-traffic")
    await harness.file("p-12")
    body = {"series_id": "s-traffic", "supervising_leader": "leader-fsz-cj", "leading_leader": "leader-zxzx"}
    assert (await harness.http.post("/key-proposals", json=body, headers=DISPATCHER)).status_code == 403
    designated = await harness.http.post("/key-proposals", json=body, headers=COMMITTEE)
    assert designated.status_code == 201, designated.text
    assert sorted(item["proposal_id"] for item in designated.json()["items"]) == ["p-10", "p-11"]
    events = [e for e in await harness.outbox() if e["type"] == "proposalflow.key-proposal.designated.v1"]
    assert [(e["proposal_id"], e["series_id"]) for e in events] == [("p-10", "s-traffic"), ("p-11", "s-traffic")]
    twice = await harness.http.post("/key-proposals", json=body, headers=COMMITTEE)
    assert twice.status_code == 409 and twice.json()["errors"][0]["rule"] == "key_designated_once"
    inactive = {"proposal_ids": ["p-12"], "supervising_leader": "leader-fsz-ny"}
    assert (await harness.http.post("/key-proposals", json=inactive, headers=COMMITTEE)).status_code == 422
    unknown = {"proposal_ids": ["p-99"], "supervising_leader": "leader-zxzx"}
    refused = await harness.http.post("/key-proposals", json=unknown, headers=COMMITTEE)
    assert refused.json()["errors"][0]["rule"] == "key_proposal_filed"
    both = {"proposal_ids": ["p-12"], "series_id": "s-traffic", "supervising_leader": "leader-zxzx"}
    assert (await harness.http.post("/key-proposals", json=both, headers=COMMITTEE)).json()["errors"][0][
        "rule"
    ] == "key_target_one_of"
    alone = {"proposal_ids": ["p-12"], "supervising_leader": "leader-zxzx"}
    assert (await harness.http.post("/key-proposals", json=alone, headers=COMMITTEE)).status_code == 201
    mine = await harness.http.get("/key-proposals", headers=LEADER)
    assert sorted(item["proposal_id"] for item in mine.json()["items"]) == ["p-10", "p-11"]
    assert len((await harness.http.get("/key-proposals", headers=COMMITTEE)).json()["items"]) == 3
    assert (await harness.http.get("/key-proposals", headers=ZRZYJ)).status_code == 403
