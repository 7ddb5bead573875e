"""Run summaries for cron: a JSON report, and OpenMetrics text for node_exporter.

Both are written whatever the outcome (a failed run is what monitoring most needs to see), and
atomically: a temporary file in the same folder, then a rename, so the collector never reads
half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# Per-feed fields of a run report that are not item counts.
_SKIPPED_FIELDS = frozenset({"feed", "mode", "seconds", "watermark", "note", "completed"})


@dataclass
class RunSummary:
    """What one command did: its outcome and, when it ran one, the run's own report."""

    command: str
    started_at: datetime
    finished_at: datetime
    exit_code: int
    error: str | None = None
    run: Mapping[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": self.duration,
            "exit_code": self.exit_code,
            "error": self.error,
            "run": dict(self.run) if self.run is not None else None,
            **self.extra,
        }


def write_report(path: Path, summary: RunSummary) -> None:
    """The summary as indented JSON."""
    _write_atomically(path, orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")


def write_metrics(path: Path, summary: RunSummary) -> None:
    """The summary as OpenMetrics text (also valid Prometheus text for the textfile collector)."""
    _write_atomically(path, "".join(metrics_lines(summary)).encode())


def metrics_lines(summary: RunSummary) -> Iterator[str]:
    command = _label(summary.command)
    yield "# HELP pimsync_run_exit_code Exit code of the last pimsync run of this command.\n"
    yield "# TYPE pimsync_run_exit_code gauge\n"
    yield f'pimsync_run_exit_code{{command="{command}"}} {summary.exit_code}\n'
    yield "# HELP pimsync_run_duration_seconds Wall time of the last run.\n"
    yield "# TYPE pimsync_run_duration_seconds gauge\n"
    yield f'pimsync_run_duration_seconds{{command="{command}"}} {summary.duration}\n'
    yield "# HELP pimsync_run_finished_timestamp_seconds When the last run ended (Unix time).\n"
    yield "# TYPE pimsync_run_finished_timestamp_seconds gauge\n"
    finished = summary.finished_at.timestamp()
    yield f'pimsync_run_finished_timestamp_seconds{{command="{command}"}} {finished:.3f}\n'
    run = summary.run or {}
    feeds = run.get("feeds") or {}
    rows = [
        (feed, name, value)
        for feed, counts in feeds.items()
        for name, value in counts.items()
        if name not in _SKIPPED_FIELDS and isinstance(value, int) and not isinstance(value, bool)
    ]
    if rows:
        yield "# HELP pimsync_items Items of the last run, per feed and outcome.\n"
        yield "# TYPE pimsync_items gauge\n"
        for feed, name, value in rows:
            labels = f'command="{command}",feed="{_label(feed)}",outcome="{_label(name)}"'
            yield f"pimsync_items{{{labels}}} {value}\n"
        yield "# HELP pimsync_feed_duration_seconds Wall time of each feed of the last run.\n"
        yield "# TYPE pimsync_feed_duration_seconds gauge\n"
        for feed, counts in feeds.items():
            seconds = counts.get("seconds", 0.0)
            labels = f'command="{command}",feed="{_label(feed)}"'
            yield f"pimsync_feed_duration_seconds{{{labels}}} {seconds}\n"
    yield "# EOF\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _write_atomically(path: Path, data: bytes) -> None:
    path = path.resolve()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)  # the collector runs as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def utcnow() -> datetime:
    return datetime.now(UTC)
