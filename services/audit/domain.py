"""The audit log's rules (审计日志): what an entry records, how entries are chained, and how a chain is
checked. Pure: no I/O.

Every entry carries the hash of the entry before it in the whole log (`prev_hash`, position `seq`)
and of the entry before it for the same proposal (`subject_prev_hash`, position `subject_seq`).
An entry's `hash` is SHA-256 (or HMAC-SHA256 with the audit key) over its canonical serialisation:
every stored field except the row `id` and the `hash` itself, as JSON with keys sorted, no
whitespace, non-ASCII kept as UTF-8, timestamps as RFC 3339 UTC with microseconds
(`2026-11-26T08:30:00.000000Z`). See docs/decisions.md, "Audit", to re-verify with another tool.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.envelope import Envelope

GENESIS_HASH = "0" * 64
INVALID_RECORD = "invalid-record"
"""The entry type of a Kafka record that is not a CloudEvent: it happened, so it is recorded."""

CHAINED_FIELDS = (
    "seq",
    "prev_hash",
    "subject_seq",
    "subject_prev_hash",
    "event_id",
    "source",
    "type",
    "subject",
    "time",
    "actor_id",
    "actor_role",
    "actor_unit",
    "correlation_id",
    "topic",
    "partition",
    "offset",
    "payload",
    "recorded_at",
)
"""The fields an entry's hash covers, i.e. all but the database's row `id` and the `hash` itself."""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def entry_from(envelope: Envelope, *, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One entry: who did what to which proposal, when, and where it was read."""
    actor = envelope.data.get("actor") if isinstance(envelope.data.get("actor"), dict) else None
    return {
        "event_id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "subject": envelope.subject,
        "time": envelope.time,
        "actor_id": _text(actor.get("id")) if actor else None,
        "actor_role": _text(actor.get("role")) if actor else None,
        "actor_unit": _text(actor.get("unit")) if actor else None,
        "correlation_id": envelope.correlation_id or _text(envelope.data.get("correlation_id")),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": envelope.data,
    }


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def invalid_record_entry(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    error: str,
    received_at: datetime,
) -> dict[str, Any]:
    """An entry for a record that is not a CloudEvent: the raw bytes (base64) and why it was refused.

    It has no CloudEvents id, so its Kafka position names it; a `ce_source` header, if readable,
    says who sent it.
    """
    source = next((raw for name, raw in headers if name.lower() == "ce_source"), None)
    try:
        source_text = source.decode() if source else None
    except UnicodeDecodeError:
        source_text = None
    return {
        "event_id": f"kafka:{topic}/{partition}/{offset}",
        "source": source_text or f"kafka:{topic}",
        "type": INVALID_RECORD,
        "subject": None,
        "time": received_at,
        "actor_id": None,
        "actor_role": None,
        "actor_unit": None,
        "correlation_id": None,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": {
            "error": error,
            "key_base64": _b64(key),
            "value_base64": _b64(value),
            "headers": [[name, _b64(raw)] for name, raw in headers],
        },
    }


# Canonical serialisation and hashing ---------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """A timestamp as the canonical form writes it: UTC, microseconds, `Z`."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: audit timestamps are timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonable(value: Any) -> Any:
    return rfc3339(value) if isinstance(value, datetime) else value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, non-ASCII as is: the same bytes for the same value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash is computed over: its chained fields, canonical JSON, UTF-8."""
    return canonical_json({name: _jsonable(entry[name]) for name in CHAINED_FIELDS}).encode()


def entry_hash(entry: Mapping[str, Any], key: bytes | None) -> str:
    """Hex SHA-256 of the canonical bytes, or HMAC-SHA256 with the audit key when one is set."""
    data = canonical_bytes(entry)
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The last entry of a chain (the whole log, or one proposal): its position and hash."""

    seq: int = 0
    hash: str = GENESIS_HASH


def chain(
    entry: Mapping[str, Any], *, log_tip: ChainTip, subject_tip: ChainTip | None, key: bytes | None
) -> dict[str, Any]:
    """The entry linked after the log's tip and, if it names a proposal, after that proposal's tip."""
    linked = {
        **entry,
        "seq": log_tip.seq + 1,
        "prev_hash": log_tip.hash,
        "subject_seq": None,
        "subject_prev_hash": None,
    }
    if entry.get("subject") is not None:
        tip = subject_tip or ChainTip()
        linked["subject_seq"] = tip.seq + 1
        linked["subject_prev_hash"] = tip.hash
    linked["hash"] = entry_hash(linked, key)
    return linked


# Verification -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokenEntry:
    """The first entry at which the chain does not hold, and why."""

    seq: int
    reason: str
    id: int | None = None
    event_id: str | None = None
    type: str | None = None


@dataclass
class ChainWalk:
    """Walks the log in `seq` order, one entry at a time, and stops at the first broken link.

    Kept small: the whole log's tip and each proposal's tip, never the entries themselves, so a
    year of entries is checked page by page.
    """

    key: bytes | None
    checked: int = 0
    tip: ChainTip = field(default_factory=ChainTip)
    subject_tips: dict[str, ChainTip] = field(default_factory=dict)
    broken: BrokenEntry | None = None
    anchors_checked: int = 0

    def feed(self, entries: Iterable[Mapping[str, Any]]) -> bool:
        """Check the next entries; False once a broken one is found."""
        for entry in entries:
            reason = self._fault(entry)
            if reason is not None:
                missing = entry["seq"] > self.tip.seq + 1
                self.broken = BrokenEntry(
                    seq=self.tip.seq + 1 if missing else entry["seq"],
                    reason=reason,
                    id=None if missing else entry.get("id"),
                    event_id=None if missing else entry["event_id"],
                    type=None if missing else entry["type"],
                )
                return False
            self.checked += 1
            self.tip = ChainTip(entry["seq"], entry["hash"])
            if entry["subject"] is not None:
                self.subject_tips[entry["subject"]] = ChainTip(entry["subject_seq"], entry["hash"])
        return True

    def _fault(self, entry: Mapping[str, Any]) -> str | None:
        expected = self.tip.seq + 1
        if entry["seq"] > expected:
            return f"entry {expected} is missing: the log goes from entry {self.tip.seq} to entry {entry['seq']}"
        if entry["seq"] != expected:
            return f"entry {entry['seq']} is out of order: expected entry {expected}"
        if entry_hash(entry, self.key) != entry["hash"]:
            keyed = "with" if self.key else "without"
            return (
                f"its content does not match its hash (computed {keyed} the HMAC key): "
                "the entry was altered, or the log was written with a different key"
            )
        if entry["prev_hash"] != self.tip.hash:
            return f"its prev_hash does not match the hash of entry {self.tip.seq}: an entry was replaced"
        if entry["subject"] is None:
            if entry["subject_seq"] is not None or entry["subject_prev_hash"] is not None:
                return "it has no proposal but carries a proposal chain link"
            return None
        subject_tip = self.subject_tips.get(entry["subject"], ChainTip())
        if entry["subject_seq"] != subject_tip.seq + 1:
            return (
                f"proposal {entry['subject']}: expected its entry {subject_tip.seq + 1}, "
                f"found its entry {entry['subject_seq']}: an entry of this proposal is missing or moved"
            )
        if entry["subject_prev_hash"] != subject_tip.hash:
            return f"proposal {entry['subject']}: subject_prev_hash does not match its previous entry's hash"
        return None

    def close(self, head: ChainTip | None) -> None:
        """Compare the end of the walk with the recorded chain head: a cut-off tail shows here.
        (The walk stops at the head read when it began; later appends wait for the next run.)"""
        if self.broken is not None:
            return
        if head is None:
            if self.tip.seq:
                self.broken = BrokenEntry(
                    seq=self.tip.seq,
                    reason=f"the chain head is missing, yet the log holds {self.tip.seq} entries: it was deleted",
                )
            return
        if head.seq > self.tip.seq:
            self.broken = BrokenEntry(
                seq=self.tip.seq + 1,
                reason=f"entry {self.tip.seq + 1} is missing: the chain head records {head.seq} entries, "
                f"the log ends at entry {self.tip.seq}",
            )
        elif head.seq == self.tip.seq and head.hash != self.tip.hash:
            self.broken = BrokenEntry(
                seq=self.tip.seq,
                reason=f"the chain head records hash {head.hash} for entry {head.seq}, the entry has {self.tip.hash}",
            )

    def check_anchors(self, anchors: Sequence[Anchor], hashes: Mapping[int, str]) -> None:
        """After the walk: every anchored head must still be in the log, with the hash anchored."""
        if self.broken is None:
            self.broken = anchor_fault(anchors, hashes, self.tip)
            self.anchors_checked = len(anchors)

    def report(self) -> dict[str, Any]:
        """What verify answers: the first broken entry and why, or that all N entries hold."""
        if self.broken is not None:
            return {
                "ok": False,
                "checked": self.checked,
                "broken": {
                    "seq": self.broken.seq,
                    "id": self.broken.id,
                    "event_id": self.broken.event_id,
                    "type": self.broken.type,
                    "reason": self.broken.reason,
                },
            }
        return {
            "ok": True,
            "checked": self.checked,
            "head": {"seq": self.tip.seq, "hash": self.tip.hash},
            "hmac": self.key is not None,
            "anchors_checked": self.anchors_checked,
        }


# Anchoring (锚定) ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """The chain head as it was at a moment, kept outside the database (a write-once store, the
    log platform): whoever can rewrite the database cannot rewrite what was anchored before."""

    seq: int
    hash: str
    at: datetime

    def line(self) -> str:
        """One JSON line of an anchor file."""
        return canonical_json({"seq": self.seq, "hash": self.hash, "at": rfc3339(self.at)})

    @classmethod
    def parse(cls, line: str, number: int) -> Anchor:
        """An anchor from its line; a line that is not one says which and why."""
        try:
            data = json.loads(line)
            seq, digest, at = int(data["seq"]), str(data["hash"]), datetime.fromisoformat(data["at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number} of the anchor file is not an anchor ({exc!r}): {line[:80]!r}") from exc
        if seq < 1 or len(digest) != len(GENESIS_HASH):
            raise ValueError(f"line {number} of the anchor file names entry {seq} with hash {digest!r}")
        return cls(seq, digest, at)


def anchor_fault(anchors: Sequence[Anchor], hashes: Mapping[int, str], walked: ChainTip) -> BrokenEntry | None:
    """The first anchor the log no longer matches, or None. `hashes` holds the log's hash of every
    anchored position it still has; `walked` is where verify's walk ended. An anchored entry that is
    gone means the tail was cut off; a different hash means history was rewritten (and the chain
    recomputed, which the walk alone cannot see without the HMAC key)."""
    for anchor in sorted(anchors, key=lambda a: a.seq):
        found = hashes.get(anchor.seq)
        if found is None or anchor.seq > walked.seq:
            reason = (
                f"entry {anchor.seq}, anchored at {rfc3339(anchor.at)}, is missing: the log ends at entry "
                f"{walked.seq}; entries were cut off"
            )
            return BrokenEntry(seq=anchor.seq, reason=reason)
        if found != anchor.hash:
            reason = (
                f"entry {anchor.seq} has hash {found}, but {anchor.hash} was anchored at {rfc3339(anchor.at)}: "
                "the log was rewritten"
            )
            return BrokenEntry(seq=anchor.seq, reason=reason)
    return None
