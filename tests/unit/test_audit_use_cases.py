"""Audit's use cases on the in-memory unit of work and log (tests/audit_fakes.py): recording links every
entry into both chains, and verify finds the first entry that does not hold."""

from __future__ import annotations

from services.audit import service
from services.audit.domain import INVALID_RECORD, Anchor
from shared.envelope import Envelope
from shared.events import Actor, ProposalWithdrawn, Role
from tests.audit_fakes import FakeLog, FakeUnitOfWork
from tests.fakes import FakeRecord, record_of

KEY = b"use-case-key"


def withdrawn(proposal_id: str) -> Envelope:
    event = ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")
    return Envelope(
        type=event.TYPE, source="/proposalflow/intake", subject=proposal_id, data=event.model_dump(mode="json")
    )


async def recorded(log: FakeLog, subjects: list[str]) -> None:
    for n, subject in enumerate(subjects):
        envelope = withdrawn(subject)
        await service.record_event(
            FakeUnitOfWork(log, KEY), envelope, record_of(envelope, topic="proposalflow.proposals", offset=n)
        )


async def test_recorded_entries_chain_through_the_log_and_through_each_proposal() -> None:
    log = FakeLog()
    await recorded(log, ["p-1", "p-2", "p-1"])
    entries = log.entries_written
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:2]]
    assert [(e["subject"], e["subject_seq"]) for e in entries] == [("p-1", 1), ("p-2", 1), ("p-1", 2)]
    assert entries[2]["subject_prev_hash"] == entries[0]["hash"]
    assert entries[0]["actor_id"] == "m-1" and entries[0]["topic"] == "proposalflow.proposals"
    report = await service.verify(log, KEY, page_size=2)
    assert (report["ok"], report["checked"]) == (True, 3), report


async def test_a_record_that_is_not_a_cloudevent_is_recorded_too() -> None:
    log = FakeLog()
    await recorded(log, ["p-1"])
    garbage = FakeRecord(
        topic="proposalflow.proposals", partition=0, offset=7, key=None, value=b"{not json", headers=[]
    )
    await service.record_invalid(FakeUnitOfWork(log, KEY), garbage, "not a CloudEvent")
    invalid = log.entries_written[-1]
    assert (invalid["type"], invalid["seq"], invalid["subject"]) == (INVALID_RECORD, 2, None)
    assert (await service.verify(log, KEY))["ok"] is True


async def test_verify_names_the_first_altered_entry_and_a_wrong_key() -> None:
    log = FakeLog()
    await recorded(log, ["p-1", "p-2", "p-3"])
    log.entries_written[1]["payload"] = {"reason": "改过"}
    report = await service.verify(log, KEY)
    assert (report["ok"], report["checked"], report["broken"]["seq"]) == (False, 1, 2), report
    assert "does not match its hash" in report["broken"]["reason"]
    assert (await service.verify(log, None))["broken"]["seq"] == 1


async def test_the_anchor_is_the_head_and_verify_checks_it_is_still_there() -> None:
    log = FakeLog()
    assert await service.current_anchor(log) is None
    await recorded(log, ["p-1", "p-2"])
    anchor = await service.current_anchor(log)
    assert anchor is not None and (anchor.seq, anchor.hash) == (2, log.entries_written[-1]["hash"])
    assert (await service.verify(log, KEY, anchors=[anchor]))["ok"] is True
    forged = Anchor(anchor.seq, "0" * 64, anchor.at)
    report = await service.verify(log, KEY, anchors=[forged])
    assert report["ok"] is False and report["broken"]["seq"] == 2, report
