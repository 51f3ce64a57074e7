"""Within a role, a caller reaches only its own: another unit's token, another member's, a leader who
does not supervise the proposal. A resource the caller may not see answers 404 (its existence is not
revealed); an action on an assignment the caller can see but that is not its unit's answers 403."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.events import Actor, ProposalFiled, ProposalSubmitted, Proposer, Role, Suggestion
from shared.outbox import envelope_for
from tests.fakes import record_of
from tests.progress_fixtures import feed, lifecycle
from tests.security.conftest import OTHER_UNIT, OWN_UNIT, ServiceFactory, bearer, is_problem, token_for

pytestmark = pytest.mark.security

LEAD = bearer(token_for(Role.UNIT, subject="u-1", unit=OWN_UNIT))
OTHER = bearer(token_for(Role.UNIT, subject="u-9", unit=OTHER_UNIT))
PROGRESS = {"kind": "phone", "on": "2026-03-19", "text": "电话沟通"}


async def test_progress_hides_a_proposal_from_units_members_and_leaders_it_is_not_theirs(
    service_app: ServiceFactory,
) -> None:
    async with service_app("progress") as svc:
        await feed(svc.runtime, lifecycle("p-1"))  # lead dg-zrzyj, co-handling dg-czj, signers m-1 and m-2
        own = await svc.http.get("/proposals/p-1", headers=LEAD)
        reported = await svc.http.post("/proposals/p-1/progress", json=PROGRESS, headers=LEAD)
        refused = {
            "another unit reads": await svc.http.get("/proposals/p-1", headers=OTHER),
            "another unit reports": await svc.http.post("/proposals/p-1/progress", json=PROGRESS, headers=OTHER),
            "another member reads": await svc.http.get(
                "/proposals/p-1", headers=bearer(token_for(Role.MEMBER, subject="m-7"))
            ),
            "a leader not supervising it": await svc.http.get(
                "/proposals/p-1", headers=bearer(token_for(Role.LEADER, subject="l-9"))
            ),
        }
        listed = await svc.http.get("/proposals", headers=OTHER)
    assert own.status_code == 200 and reported.status_code == 200, reported.text
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 404)
    assert all(is_problem(r) for r in refused.values())
    assert listed.json()["items"] == []


async def test_intake_hides_a_member_s_draft_from_other_members(service_app: ServiceFactory) -> None:
    owner = bearer(token_for(Role.MEMBER, subject="m-1"))
    other = bearer(token_for(Role.MEMBER, subject="m-7"))
    async with service_app("intake") as svc:
        draft = (await svc.http.post("/proposals/drafts", json={"title": "关于公交线网的建议"}, headers=owner)).json()
        path = f"/proposals/{draft['id']}"
        refused = [
            await svc.http.get(path, headers=other),
            await svc.http.patch(path, json={"title": "改写"}, headers=other),
            await svc.http.post(f"{path}/submit", headers=other),
            await svc.http.post(f"{path}/withdraw", json={}, headers=other),
        ]
        still = await svc.http.get(path, headers=owner)
    assert [r.status_code for r in refused] == [404, 404, 404, 404]
    assert all(is_problem(r) for r in refused)
    assert still.json()["title"] == "关于公交线网的建议"


async def test_assignment_lets_only_its_units_answer_it(service_app: ServiceFactory) -> None:
    committee = Actor(id="c-1", role=Role.COMMITTEE)
    proposer = Proposer(id="m-1", name="张委员")
    at = datetime(2026, 3, 2, 2, tzinfo=UTC)
    events = [
        ProposalSubmitted(
            proposal_id="p-1",
            actor=committee,
            title="关于推进全域土地综合整治的建议",
            body="我市土地利用碎片化问题突出。",
            category="经济建设",
            session_kind="interim",
            first_proposer=proposer,
            suggestions=[Suggestion(number=1, text="编制整治规划")],
            submitted_at=at,
        ),
        ProposalFiled(
            proposal_id="p-1",
            actor=committee,
            filing_number="2026-0001",
            title="关于推进全域土地综合整治的建议",
            category="经济建设",
            first_proposer=proposer,
            suggestion_count=1,
            filed_at=at,
        ),
    ]
    async with service_app("assignment") as svc:
        for offset, event in enumerate(events):
            outcome = await svc.runtime.processors[0].process(
                record_of(envelope_for(event, "intake"), "proposalflow.proposals", offset)
            )
            assert outcome == "handled"
        dispatcher = bearer(token_for(Role.DISPATCHER))
        confirmed = await svc.http.post("/assignments/p-1/confirm", json={}, headers=dispatcher)
        lead = confirmed.json()["lead_unit"]
        stranger = bearer(token_for(Role.UNIT, subject="u-9", unit=OTHER_UNIT))
        hidden = await svc.http.get("/assignments/p-1", headers=stranger)
        accept = await svc.http.post("/assignments/p-1/accept", headers=stranger)
        dispute = await svc.http.post("/assignments/p-1/dispute", json={"reason": "不属于本单位职责"}, headers=stranger)
        accepted = await svc.http.post("/assignments/p-1/accept", headers=bearer(token_for(Role.UNIT, unit=lead)))
    assert confirmed.status_code == 200, confirmed.text
    assert lead != OTHER_UNIT
    assert hidden.status_code == 404 and is_problem(hidden)
    assert (accept.status_code, dispute.status_code) == (403, 403), (accept.text, dispute.text)
    assert is_problem(accept) and is_problem(dispute)
    assert accepted.status_code == 200, accepted.text
