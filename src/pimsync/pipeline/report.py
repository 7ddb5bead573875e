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
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)

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
            "resumed_from": self.resumed_from,
            "notes": self.notes,
            "feeds": self.counts(),
        }


@dataclass(slots=True)
class FeedPush:
    """The counts of one feed of a push."""

    feed: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored: int = 0  # staged rows with no Magento counterpart (identifier, media attributes)
    failed: int = 0
    waiting_new: int = 0  # new items not created because auto_create_new is off
    deleted: int = 0  # PIM deletions exported to Magento (deleted or disabled)
    deletions_refused: int = 0  # deletions held back by the safety threshold
    seconds: float = 0.0


@dataclass
class PushReport:
    run_id: int | None
    kind: str
    dry_run: bool = False
    status: str = "in_progress"
    feeds: dict[str, FeedPush] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)  # the first few, for the summary
    marked_by_mapping: int = 0
    reindex: str | None = None
    message: str | None = None
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(feed.failed for feed in self.feeds.values())

    @property
    def exit_code(self) -> int:
        reindex_failed = self.reindex is not None and self.reindex.startswith("failed")
        refused = any(feed.deletions_refused for feed in self.feeds.values())
        return 1 if self.failed or reindex_failed or refused else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "dry_run": self.dry_run,
            "status": self.status,
            "exit_code": self.exit_code,
            "feeds": {name: asdict(feed) for name, feed in self.feeds.items()},
            "errors": self.errors,
            "marked_by_mapping_change": self.marked_by_mapping,
            "reindex": self.reindex,
            "message": self.message,
            "resumed_from": self.resumed_from,
            "notes": self.notes,
        }
