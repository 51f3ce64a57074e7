"""How deep a JSON text nests, measured on its bytes before anything parses it.

`json.loads` builds the whole structure (and recurses once per level) before a model can look at
it, so a small body of 100 000 `[` costs a deep recursion and a late, unhelpful error. These checks
run on the raw bytes in linear time and stop at the first level past the limit.
"""

from __future__ import annotations

MAX_EVENT_JSON_DEPTH = 64
"""Deepest nesting accepted in an inbound Kafka event's data; ProposalFlow's own events nest about 5 deep."""

_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_OPEN = frozenset(b"[{")
_QUOTE = ord('"')


def json_depth_exceeds(text: bytes, limit: int) -> bool:
    """Whether `text` nests arrays and objects more than `limit` deep (brackets inside strings do not count).

    An escaped quote does not end a string: escape pairs are removed first, left to right, as a JSON
    parser reads them. On text that is not valid JSON the answer is at least as deep as what a parser
    would reach before it fails, so the check never lets through what the parser would recurse into.
    """
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    # With escape pairs gone no quote is escaped, so quotes alternate opening and closing strings; only
    # brackets and quotes are kept (one copy, in C), then walked.
    skeleton = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth = 0
    in_string = False
    for char in skeleton:
        if char == _QUOTE:
            in_string = not in_string
        elif in_string:
            continue
        elif char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
