"""The audit log's rules: canonical serialisation, the hash chain, and how verification names the
first broken entry. Pure: no database."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.audit import export
from services.audit.domain import (
    GENESIS_HASH,
    INVALID_RECORD,
    Anchor,
    ChainTip,
    ChainWalk,
    anchor_fault,
    canonical_bytes,
    chain,
    entry_from,
    invalid_record_entry,
)
from shared.envelope import Envelope

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def raw_entry(n: int, subject: str | None = "p-1") -> dict[str, Any]:
    envelope = Envelope(
        type="proposalflow.proposal.filed.v1",
        source="/proposalflow/intake",
        subject=subject,
        id=f"e-{n}",
        time=T0 + timedelta(minutes=n),
        data={
            "proposal_id": subject,
            "title": "关于推进全域土地综合整治的建议",
            "actor": {"id": "c-1", "role": "committee"},
        },
        extensions={"correlationid": f"req-{n}"},
    )
    entry = entry_from(envelope, topic="proposalflow.proposals", partition=3, offset=n)
    return {**entry, "recorded_at": T0 + timedelta(minutes=n, seconds=1), "id": n}


def log_of(subjects: list[str | None], key: bytes | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    tip, tips = ChainTip(), {}
    for n, subject in enumerate(subjects, start=1):
        linked = chain(raw_entry(n, subject), log_tip=tip, subject_tip=tips.get(subject), key=key)
        entries.append(linked)
        tip = ChainTip(linked["seq"], linked["hash"])
        if subject is not None:
            tips[subject] = ChainTip(linked["subject_seq"], linked["hash"])
    return entries


def verify(entries: list[dict[str, Any]], key: bytes | None = None, head: ChainTip | None = None) -> dict[str, Any]:
    walk = ChainWalk(key=key)
    walk.feed(entries)
    walk.close(head if head is not None else ChainTip(entries[-1]["seq"], entries[-1]["hash"]))
    return walk.report()


def test_an_entry_names_the_actor_the_proposal_and_where_it_was_read() -> None:
    entry = raw_entry(1)
    assert (entry["actor_id"], entry["actor_role"], entry["actor_unit"]) == ("c-1", "committee", None)
    assert entry["correlation_id"] == "req-1"
    assert (entry["subject"], entry["topic"], entry["partition"], entry["offset"]) == (
        "p-1",
        "proposalflow.proposals",
        3,
        1,
    )


def test_the_canonical_form_is_sorted_compact_utf8_json_with_utc_microsecond_times() -> None:
    linked = log_of(["p-1"])[0]
    text = canonical_bytes(linked).decode("utf-8")
    assert '"time":"2026-03-01T01:31:00.000000Z"' in text  # +08:00 written as UTC
    assert "关于推进全域土地综合整治的建议" in text  # not \u-escaped
    assert ", " not in text and ": " not in text
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert "id" not in parsed and "hash" not in parsed


def test_the_hash_can_be_recomputed_with_nothing_but_the_documented_rule() -> None:
    """An inspector's tool: drop `id` and `hash`, canonical JSON, SHA-256 (or HMAC-SHA256)."""
    for key in (None, b"inspector-shared-secret"):
        line = json.loads(export.jsonl_line(log_of(["p-1", None], key=key)[1]))
        stored = line.pop("hash")
        line.pop("id")
        data = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        recomputed = hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
        assert recomputed == stored


def test_entries_link_to_the_previous_entry_of_the_log_and_of_their_proposal() -> None:
    first, second, third, unrelated = log_of(["p-1", "p-2", "p-1", None])
    assert (first["seq"], first["prev_hash"], first["subject_seq"], first["subject_prev_hash"]) == (
        1,
        GENESIS_HASH,
        1,
        GENESIS_HASH,
    )
    assert (second["prev_hash"], second["subject_seq"], second["subject_prev_hash"]) == (first["hash"], 1, GENESIS_HASH)
    assert (third["prev_hash"], third["subject_seq"], third["subject_prev_hash"]) == (second["hash"], 2, first["hash"])
    assert (unrelated["subject_seq"], unrelated["subject_prev_hash"]) == (None, None)


def test_an_intact_log_holds_entirely() -> None:
    report = verify(log_of(["p-1", "p-2", "p-1", None, "p-2"]))
    assert report["ok"] is True
    assert report["checked"] == 5
    assert report["head"]["seq"] == 5


def test_an_altered_entry_is_named_with_the_reason() -> None:
    entries = log_of(["p-1", "p-2", "p-1", "p-2"])
    entries[2] = {**entries[2], "actor_id": "someone-else"}
    report = verify(entries)
    assert report["ok"] is False
    assert report["checked"] == 2
    assert report["broken"]["seq"] == 3
    assert report["broken"]["event_id"] == "e-3"
    assert "does not match its hash" in report["broken"]["reason"]


def test_a_deleted_entry_is_named_as_missing() -> None:
    entries = log_of(["p-1", "p-2", "p-1", "p-2"])
    del entries[1]
    report = verify(entries)
    assert report["broken"]["seq"] == 2
    assert "entry 2 is missing" in report["broken"]["reason"]


def test_a_cut_off_tail_is_caught_by_the_chain_head() -> None:
    entries = log_of(["p-1", "p-2", "p-1"])
    head = ChainTip(3, entries[2]["hash"])
    report = verify(entries[:2], head=head)
    assert report["broken"]["seq"] == 3
    assert "chain head records 3 entries" in report["broken"]["reason"]


def test_a_deleted_chain_head_does_not_make_the_log_look_empty() -> None:
    entries = log_of(["p-1", "p-2"])
    walk = ChainWalk(key=None)
    walk.feed(entries)
    walk.close(None)
    report = walk.report()
    assert report["ok"] is False
    assert "chain head is missing" in report["broken"]["reason"]


def test_swapped_positions_break_at_the_first_moved_entry() -> None:
    entries = log_of(["p-1", "p-2", "p-1", "p-2"])
    second, third = entries[1], entries[2]
    entries[1], entries[2] = {**third, "seq": 2}, {**second, "seq": 3}
    report = verify(entries)
    assert report["broken"]["seq"] == 2
    assert report["broken"]["event_id"] == "e-3"


def test_a_whole_rewritten_chain_holds_without_a_key_but_not_with_one() -> None:
    """Why the HMAC key exists: without it, whoever can write the database can recompute every hash."""
    key = b"audit-key"
    genuine = log_of(["p-1", "p-2"], key=key)
    forged = log_of(["p-1", "p-2"])  # recomputed by someone without the key
    assert verify(genuine, key=key)["ok"] is True
    assert verify(forged)["ok"] is True
    report = verify(forged, key=key)
    assert report["broken"]["seq"] == 1
    assert "with the HMAC key" in report["broken"]["reason"]


def test_a_proposal_chain_that_skips_an_entry_is_named() -> None:
    entries = log_of(["p-1", "p-1"])
    # Rewritten consistently for the log chain (no key), but the proposal's own chain skips one.
    rewritten = chain(
        {**entries[1]}, log_tip=ChainTip(1, entries[0]["hash"]), subject_tip=ChainTip(5, "f" * 64), key=None
    )
    report = verify([entries[0], rewritten])
    assert report["broken"]["seq"] == 2
    assert "proposal p-1" in report["broken"]["reason"]


def test_an_invalid_record_keeps_its_raw_bytes_and_the_error() -> None:
    entry = invalid_record_entry(
        topic="proposalflow.submissions",
        partition=1,
        offset=42,
        key=b"k",
        value=b"{not json",
        headers=[("ce_source", b"/portal/x"), ("x-bin", b"\xff")],
        error="event data is not valid JSON",
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert entry["type"] == INVALID_RECORD
    assert entry["event_id"] == "kafka:proposalflow.submissions/1/42"
    assert entry["source"] == "/portal/x"
    assert base64.b64decode(entry["payload"]["value_base64"]) == b"{not json"
    assert entry["payload"]["headers"][1] == ["x-bin", base64.b64encode(b"\xff").decode()]
    assert entry["payload"]["error"] == "event data is not valid JSON"


def test_csv_lines_parse_back_to_the_exported_entry() -> None:
    entries = log_of(["p-1", None])
    text = export.csv_header() + "".join(export.csv_line(entry) for entry in entries)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["hash"] for row in rows] == [entry["hash"] for entry in entries]
    assert json.loads(rows[0]["payload"]) == entries[0]["payload"]
    assert rows[1]["subject"] == "" and rows[1]["subject_seq"] == ""
    assert rows[0]["time"] == "2026-03-01T01:31:00.000000Z"


def test_an_anchor_line_round_trips_and_a_bad_line_is_named() -> None:
    anchor = Anchor(7, "a" * 64, datetime(2026, 3, 1, 1, 0, tzinfo=UTC))
    assert anchor.line() == '{"at":"2026-03-01T01:00:00.000000Z","hash":"' + "a" * 64 + '","seq":7}'
    assert Anchor.parse(anchor.line(), 1) == anchor
    with pytest.raises(ValueError, match="line 3 of the anchor file"):
        Anchor.parse('{"seq": 7}', 3)
    with pytest.raises(ValueError, match="line 2 of the anchor file names entry 0"):
        Anchor.parse('{"seq": 0, "hash": "' + "a" * 64 + '", "at": "2026-03-01T01:00:00Z"}', 2)


def test_an_anchor_names_a_rewritten_history_and_a_cut_off_tail() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    anchors = [Anchor(2, "b" * 64, at), Anchor(4, "d" * 64, at)]
    intact = {2: "b" * 64, 4: "d" * 64}
    assert anchor_fault(anchors, intact, ChainTip(6, "f" * 64)) is None
    rewritten = anchor_fault(anchors, {**intact, 2: "e" * 64}, ChainTip(6, "f" * 64))
    assert rewritten is not None and rewritten.seq == 2 and "rewritten" in rewritten.reason
    cut = anchor_fault(anchors, {2: "b" * 64}, ChainTip(3, "c" * 64))
    assert cut is not None and cut.seq == 4 and "the log ends at entry 3" in cut.reason
