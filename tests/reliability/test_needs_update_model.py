"""The needs-update rule of `StagingRepository.upsert_fetched`, checked against a model.

A hypothesis state machine imports batches (repeats and all), pushes, fails, quarantines, flags
deletions and ages hash versions in any order, on SQLite and on PostgreSQL, and after every step
staging must agree with a dictionary that applies the rule as written:

- a new item is `new`;
- a changed item is `needs_update` if it was pushed before, `synced` if it changed back to the
  hash that was pushed, and `new` if it never was;
- an unchanged item is not touched at all (status, data and import time stay);
- a quarantined or deleted item, or one hashed by an older HASH_VERSION, counts as changed.

Related: three hand-picked sequences in tests/unit/test_repository.py::test_needs_update_rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select, update

from pimsync.staging.hashing import HASH_VERSION
from pimsync.staging.repository import StagedItem, StagingRepository, UpsertCounts
from pimsync.staging.tables import Status, entity_tables

TABLE = entity_tables["products"]
CODES = st.sampled_from(["a", "b", "c", "d"])
HASHES = st.sampled_from(["h1", "h2", "h3"])  # few, so items often change back
PUSHABLE = (Status.NEW, Status.NEEDS_UPDATE, Status.SYNCED, Status.ERROR)


@dataclass(frozen=True)
class Expected:
    hash: str
    status: str
    pushed_hash: str | None = None
    current_version: bool = True
    data: str = ""


def expected_upsert(
    model: dict[str, Expected], batch: list[tuple[str, str]]
) -> tuple[dict[str, Expected], UpsertCounts]:
    """The rule, applied to a copy of the model: the new model and the counts it implies."""
    model = dict(model)
    counts = UpsertCounts()
    last = {code: digest for code, digest in batch}  # a repeated item: the last one wins
    for code, digest in last.items():
        data = f'{{"hash": "{digest}"}}'
        before = model.get(code)
        if before is None:
            counts.new += 1
            model[code] = Expected(digest, Status.NEW, data=data)
            continue
        stale = before.status in (Status.QUARANTINED, Status.DELETED_IN_PIM)
        if before.hash == digest and before.current_version and not stale:
            counts.unchanged += 1
            continue
        counts.changed += 1
        if before.pushed_hash is None:
            status = Status.NEW
        elif before.pushed_hash == digest:
            status = Status.SYNCED
        else:
            status = Status.NEEDS_UPDATE
        model[code] = replace(before, hash=digest, status=status, current_version=True, data=data)
    return model, counts


class NeedsUpdateRule(RuleBasedStateMachine):
    """Set `repo` on the class before running (each backend gives its own)."""

    repo: StagingRepository

    @initialize()
    def empty(self) -> None:
        self.repo.connection.execute(delete(TABLE))
        self.repo.commit()
        self.model: dict[str, Expected] = {}

    def _rows(self) -> dict[str, Any]:
        query = select(TABLE.c.code, TABLE.c.imported_at, TABLE.c.data)
        return {row.code: row for row in self.repo.connection.execute(query)}

    @rule(batch=st.lists(st.tuples(CODES, HASHES), min_size=1, max_size=6))
    def fetch(self, batch: list[tuple[str, str]]) -> None:
        before = self._rows()
        items = [StagedItem(code, f'{{"hash": "{h}"}}', h) for code, h in batch]
        counts = self.repo.upsert_fetched("products", items)
        self.repo.commit()
        self.model, expected = expected_upsert(self.model, batch)
        assert (counts.new, counts.changed, counts.unchanged) == (
            expected.new,
            expected.changed,
            expected.unchanged,
        )
        after = self._rows()
        for code in {c for c, _ in batch} - set(counts.changed_codes):
            # Unchanged: not even rewritten.
            assert after[code].imported_at == before[code].imported_at, code
            assert after[code].data == before[code].data, code

    def _codes(self, *statuses: str) -> list[str]:
        return sorted(code for code, row in self.model.items() if row.status in statuses)

    @precondition(lambda self: self._codes(*PUSHABLE))
    @rule(choice=st.data(), pushed_stale=st.booleans(), stale_hash=HASHES)
    def push(self, choice: st.DataObject, pushed_stale: bool, stale_hash: str) -> None:
        """Magento accepted an item; `pushed_stale`: the hash pushed is not the one staged now
        (the item was re-imported while its push was in flight)."""
        code = choice.draw(st.sampled_from(self._codes(*PUSHABLE)))
        pushed = stale_hash if pushed_stale else self.model[code].hash
        result = {"code": code, "hash": pushed, "payload_hash": "p", "payload": None}
        self.repo.mark_pushed("products", [{**result, "magento_id": "1"}])
        self.repo.commit()
        current = self.model[code]
        status = Status.SYNCED if current.hash == pushed else Status.NEEDS_UPDATE
        self.model[code] = replace(current, pushed_hash=pushed, status=status)

    @precondition(lambda self: self._codes(*PUSHABLE))
    @rule(choice=st.data())
    def fail(self, choice: st.DataObject) -> None:
        code = choice.draw(st.sampled_from(self._codes(*PUSHABLE)))
        self.repo.record_item_error("products", code, "Magento said no")
        self.repo.commit()
        self.model[code] = replace(self.model[code], status=Status.ERROR)

    @rule(code=CODES)
    def quarantine(self, code: str) -> None:
        self.repo.quarantine("products", code, b'{"broken": true}', "values: not a map")
        self.repo.commit()
        before = self.model.get(code) or Expected("", Status.QUARANTINED)
        self.model[code] = replace(before, status=Status.QUARANTINED, data='{"broken": true}')

    @precondition(lambda self: self.model)
    @rule(choice=st.data())
    def deleted_in_pim(self, choice: st.DataObject) -> None:
        code = choice.draw(st.sampled_from(sorted(self.model)))
        self.repo.mark_codes("products", [code], Status.DELETED_IN_PIM)
        self.repo.commit()
        self.model[code] = replace(self.model[code], status=Status.DELETED_IN_PIM)

    @precondition(lambda self: self.model)
    @rule(choice=st.data())
    def older_hash_version(self, choice: st.DataObject) -> None:
        code = choice.draw(st.sampled_from(sorted(self.model)))
        self.repo.connection.execute(
            update(TABLE).where(TABLE.c.code == code).values(hash_version=HASH_VERSION - 1)
        )
        self.repo.commit()
        self.model[code] = replace(self.model[code], current_version=False)

    @invariant()
    def staging_agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        query = select(TABLE.c.code, TABLE.c.hash, TABLE.c.status, TABLE.c.pushed_hash)
        staged = {
            row.code: (row.hash, row.status, row.pushed_hash)
            for row in self.repo.connection.execute(query)
        }
        assert staged == {c: (e.hash, e.status, e.pushed_hash) for c, e in self.model.items()}


def test_the_needs_update_rule_holds_for_any_sequence(repo):
    NeedsUpdateRule.repo = repo
    run_state_machine_as_test(
        NeedsUpdateRule,
        settings=settings(max_examples=40, stateful_step_count=12, deadline=None),
    )
