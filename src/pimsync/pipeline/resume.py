"""Resuming a stopped run where it stopped, with the configuration it started with.

Sales Layer's rule 09: a synchronization that was interrupted resumes "using the same
configuration that was active at the start of that synchronization". So every run stores a
snapshot of its configuration (secrets and the staging URL left out) and the options it was
given; the next run of the same kind finds the newest run of that kind stopped (on request, by a
signal, or abandoned by a process that died) and carries it on, unless `--fresh` is given.
What "where it stopped" means is each stage's business: an import skips the feeds the stopped
run completed; a push needs nothing, because staging is its queue (and a forced resync leaves
out what the stopped run already re-pushed).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from pimsync.config import Config
from pimsync.staging.repository import StagingRepository

# What a snapshot leaves out: secrets, and the URLs (a URL may carry a password). A resumed
# run talks to today's endpoints, on the staging database it was started on by definition.
SNAPSHOT_EXCLUDE: dict[str, Any] = {
    "source_path": True,
    "pim": {"secret", "password", "base_url"},
    "magento": {"token", "base_url"},
    "staging": {"url"},
}


@dataclass(frozen=True, slots=True)
class Resumption:
    """A stopped run to carry on: its id, feeds, options, and the configuration it used."""

    run_id: int
    started_at: datetime
    feeds: list[str]
    options: dict[str, Any]
    watermarks: dict[str, str]
    config: Config
    config_changed: bool  # the configuration on disk differs from the one the run started with

    def note(self, kind: str) -> str:
        changed = (
            "; the configuration changed since, and the run goes on with the one it started with"
            if self.config_changed
            else ""
        )
        return (
            f"resuming run {self.run_id} ({kind}, stopped){changed}; "
            f"`pimsync {kind} --fresh` starts over instead"
        )


def snapshot(config: Config) -> str:
    """The configuration as JSON, without secrets or the staging URL."""
    return orjson.dumps(config.model_dump(mode="json", exclude=SNAPSHOT_EXCLUDE)).decode()


def stopped_run(repo: StagingRepository, kinds: list[str], current: Config) -> Resumption | None:
    """The newest run of `kinds` when it stopped before finishing; None otherwise."""
    run = repo.newest_run(kinds)
    if run is None or run["status"] != "stopped":
        return None
    saved = orjson.loads(run["config_snapshot"] or "{}")
    config = current
    # Runs of older versions stored none; a snapshot whose settings this version no longer
    # has cannot be honoured either: today's configuration it is.
    if saved:
        with suppress(ValidationError):
            config = config_from_snapshot(current, saved)
    return Resumption(
        run_id=int(run["id"]),
        started_at=run["started_at"],
        feeds=list(orjson.loads(run["feeds"] or "[]")),
        options=dict(orjson.loads(run["options"] or "{}")),
        watermarks=dict(orjson.loads(run["watermarks"] or "{}")),
        config=config,
        config_changed=config.fingerprint() != current.fingerprint(),
    )


def config_from_snapshot(current: Config, saved: dict[str, Any]) -> Config:
    """The saved configuration, with today's secrets and URLs put back in."""
    pim, magento = current.pim, current.magento
    data = dict(saved)
    data["pim"] = {
        **saved.get("pim", {}),
        "secret": pim.secret,
        "password": pim.password,
        "base_url": pim.base_url,
    }
    data["magento"] = {**saved.get("magento", {}), "token": magento.token}
    data["magento"]["base_url"] = magento.base_url
    data["staging"] = {**saved.get("staging", {}), "url": current.staging.url}
    return Config.model_validate({**data, "source_path": current.source_path})
