"""How long to wait before a retry: what the server asked for, else a jittered backoff.

Both clients retry with tenacity; this is the `wait` they share, so a 429's `Retry-After` is
honoured the same way against the PIM and against Magento.
"""

from __future__ import annotations

import logging

from tenacity import RetryCallState, wait_exponential_jitter

from pimsync.errors import RetryableHTTPError

log = logging.getLogger("pimsync.retry")


class RetryAfterWait:
    """A tenacity wait: the answer's `Retry-After` (at most `max_wait` seconds) when it has
    one, otherwise exponential backoff with jitter, capped at `backoff_ceiling`."""

    def __init__(self, max_wait: float, backoff_ceiling: float | None = None) -> None:
        self.max_wait = max_wait
        ceiling = min(backoff_ceiling, max_wait) if backoff_ceiling is not None else max_wait
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=ceiling, jitter=0.5)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableHTTPError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return float(self._backoff(state))


def log_retry(state: RetryCallState) -> None:
    """A tenacity `before_sleep`: one warning per retry, so cron logs show a flaky remote."""
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    log.warning(
        "retrying after %s (attempt %d, waiting %.1f s)",
        reason,
        state.attempt_number,
        wait,
        extra={"attempt": state.attempt_number, "wait_seconds": round(wait, 3)},
    )
