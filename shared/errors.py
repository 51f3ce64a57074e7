"""What a use case refuses, named by the rule that refuses it. Pure (no framework), so every service's
`domain.py` raises these; shared/commands.py turns them into problem+json answers and `…rejected` events."""

from __future__ import annotations


class RuleViolation(Exception):
    """A request that breaks a named rule; the message says which and what to do instead (422)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class StateConflict(RuleViolation):
    """The request is fine but the proposal is not in a state that allows it (409)."""


class NotYours(RuleViolation):
    """The caller's role may do this, but not on this item, e.g. another unit's assignment (403)."""


class NotFound(Exception):
    """No such item, or none the caller may see (404); `args[0]` names what was looked for."""


class NotReady(Exception):
    """The handler needs an event it has not seen yet (no order across topics): park and re-run."""


class PermanentError(Exception):
    """This record can never succeed as it is (bad schema, a rule it breaks): dead-letter it."""
