"""Operator controls: skip and unskip items, ask the running sync to stop."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pimsync.app import App
from pimsync.config import PUSH_FEEDS
from pimsync.errors import UsageError
from pimsync.lock import Holder, current_holder, lease_over, request_stop
from pimsync.pipeline.push_runner import FEED_ENTITIES
from pimsync.staging.tables import ENTITIES


@dataclass
class SkipResult:
    """What `skip`/`unskip` did: rows changed, and the names that matched nothing."""

    skipped: bool
    changed: int = 0
    not_found: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"skipped": self.skipped, "changed": self.changed, "not_found": self.not_found}


def set_skipped(
    app: App,
    skipped: bool,
    *,
    codes: Sequence[str] = (),
    search: str | None = None,
    feed: str | None = None,
) -> SkipResult:
    """Flag items as skipped (KatanaPIM's Skipped): still imported and diffed, so their status
    stays true, but never pushed until unskipped. Items are named by code or SKU, or found by
    a substring of code, SKU or name."""
    if not codes and not search:
        raise UsageError("name items to (un)skip: CODE..., --from-file PATH or --search TEXT")
    if feed is not None and feed not in PUSH_FEEDS:
        raise UsageError(f"unknown feed {feed!r}")
    entities = sorted({entity for entity, _ in FEED_ENTITIES[feed]}) if feed else list(ENTITIES)
    result = SkipResult(skipped)
    found: set[str] = set()
    with app.repository() as repo:
        for entity in entities:
            names, changed = repo.set_skipped(
                entity, skipped, codes=list(codes) or None, search=search
            )
            found |= names
            result.changed += changed
        repo.commit()
    result.not_found = sorted(set(codes) - found)
    return result


def read_codes(text: str) -> list[str]:
    """Codes from a file: one per line; blank lines and `#` comments are ignored."""
    codes = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            codes.append(line)
    return codes


@dataclass(frozen=True, slots=True)
class StopResult:
    holder: Holder | None
    stopped: bool  # the run ended within the wait
    looked_dead: bool = False  # its lease had run out when the stop was asked

    def as_dict(self) -> dict[str, object]:
        holder = self.holder
        return {
            "running": holder is not None,
            "kind": holder.kind if holder else None,
            "run_id": holder.run_id if holder else None,
            "host": holder.host if holder else None,
            "pid": holder.pid if holder else None,
            "looked_dead": self.looked_dead,
            "stopped": self.stopped,
        }


def ask_to_stop(app: App) -> StopResult:
    """Ask the run holding the staging database to stop after its current batch."""
    holder = request_stop(app.engine())
    if holder is None:
        return StopResult(None, stopped=True)
    return StopResult(holder, stopped=False, looked_dead=lease_over(app.engine(), holder))


def wait_for_stop(
    app: App, asked: StopResult, wait: float, sleep: Callable[[float], None] = time.sleep
) -> StopResult:
    """Wait up to `wait` seconds for the asked run to let go of the lock."""
    holder = asked.holder
    if holder is None:
        return asked
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = current_holder(app.engine())
        if current is None or current.acquired_at != holder.acquired_at:
            return dataclasses.replace(asked, stopped=True)
        sleep(0.2)
    return asked
