"""RunReport: what a run did, per feed, in a shape the CLI renders and `--json` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMPORT_COUNTERS = ("fetched", "new", "changed", "unchanged", "quarantined", "deleted_in_pim")


@dataclass(slots=True)
class FeedReport:
    """The counts of one feed of an import."""

    feed: str
    mode: str = "full"  # "full" or "incremental"
    fetched: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    deleted_in_pim: int = 0
    dependents_marked: int = 0  # items marked because something they depend on changed
    seconds: float = 0.0
    watermark: str | None = None
    note: str | None = None
    completed: bool = False


@dataclass(slots=True)
class RunReport:
    """The outcome of one run. A rejected item is counted here; it does not stop the run."""

    run_id: int
    kind: str
    status: str = "in_progress"
    feeds: dict[str, FeedReport] = field(default_factory=dict)
    message: str | None = None

    @property
    def quarantined(self) -> int:
        return sum(feed.quarantined for feed in self.feeds.values())

    @property
    def exit_code(self) -> int:
        """0 when everything went through, 1 when the run finished but some items were refused."""
        return 1 if self.quarantined else 0

    def counts(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(feed) for name, feed in self.feeds.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "feeds": self.counts(),
        }
