"""How long to wait before trying again. Pure (no broker, no database), so a domain can use it too."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: never a tight loop, never a thundering herd."""
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 32))
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not security
