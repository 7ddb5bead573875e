"""Reading Magento's asynchronous bulk answers: the 202 acknowledgement and the operation list.

Pure functions, so the mapping rules are testable without HTTP. The rule that matters: results
are keyed by the index of the item in the submitted array (`request_items[].id`), never by the
order of `operations_list`, which Magento does not guarantee.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pimsync.magento.models import BulkItem, BulkSubmission, OperationResult, OperationStatus

OPEN = 4
_STATUSES: dict[int, OperationStatus] = {
    1: "complete",
    2: "retriable",
    3: "failed",
    4: "open",
    5: "rejected",
}


@dataclass(frozen=True, slots=True)
class Pending:
    """What the client remembers of a submitted bulk until it is waited for."""

    accepted: tuple[int, ...]
    rejected: tuple[BulkItem, ...]


def parse_submission(body: Any, count: int) -> BulkSubmission:
    """Build the submission from the 202 body; an item Magento did not list counts as rejected."""
    if not isinstance(body, dict) or not isinstance(body.get("bulk_uuid"), str):
        raise ValueError("the bulk answer has no bulk_uuid")
    by_index: dict[int, BulkItem] = {}
    for raw in body.get("request_items") or ():
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
            continue
        index = raw["id"]
        if raw.get("status") == "accepted":
            by_index[index] = BulkItem(index=index, status="accepted")
        else:
            message = str(raw.get("error_message") or f"rejected ({raw.get('status')})")
            by_index[index] = BulkItem(index=index, status="rejected", message=message)
    items = [
        by_index.get(i) or BulkItem(index=i, status="rejected", message="not acknowledged")
        for i in range(count)
    ]
    return BulkSubmission(bulk_uuid=body["bulk_uuid"], items=items)


def wait(
    get: Callable[[str], Any],
    sleep: Callable[[float], None],
    base: str,
    pending: Pending | None,
    is_lock_message: Callable[[str], bool],
    *,
    poll_interval: float,
    timeout: float,
) -> list[OperationResult]:
    """Poll `<base>/operation-status/4` until nothing is open or `timeout` passes, then read
    `<base>/detailed-status` once. The bare count keeps polls tiny: the detailed status carries
    the request body of every open operation."""
    if pending is not None and not pending.accepted:
        return collect_results({"operations_list": []}, pending, 0.0, is_lock_message)
    # Time is the larger of the clock and the sleeps asked for, so an injected no-op sleep
    # still reaches the timeout without spinning for real seconds.
    start, slept = time.monotonic(), 0.0
    while True:
        still_open = open_count(get(f"{base}/operation-status/{OPEN}"))
        elapsed = max(time.monotonic() - start, slept)
        if still_open == 0 or elapsed >= timeout:
            break
        step = min(poll_interval, timeout - elapsed)
        sleep(step)
        slept += step
    body = get(f"{base}/detailed-status")
    waited = round(max(time.monotonic() - start, slept), 1)
    return collect_results(body, pending, waited, is_lock_message)


def open_count(body: Any) -> int:
    """`/operation-status/4` answers a bare integer (some proxies send it as a string)."""
    if isinstance(body, bool) or not isinstance(body, int | str):
        raise ValueError(f"unexpected open-operation count {body!r}")
    return int(body)


def collect_results(
    body: Any,
    pending: Pending | None,
    waited: float,
    is_lock_message: Callable[[str], bool],
) -> list[OperationResult]:
    """Turn a `detailed-status` body into one result per request item, sorted by index."""
    if not isinstance(body, dict) or not isinstance(body.get("operations_list"), list):
        raise ValueError("the bulk status has no operations_list")
    operations = [op for op in body["operations_list"] if isinstance(op, dict)]
    indexes = _indexes(operations, pending)
    results: list[OperationResult] = []
    for op, index in zip(operations, indexes, strict=True):
        code = op.get("status")
        status = _STATUSES.get(code, "failed") if isinstance(code, int) else "failed"
        message = str(op.get("result_message") or "")
        # OperationProcessor marks every LocalizedException as 3, including the repository's
        # wrapped deadlock: that one is worth resubmitting, so report it as retriable.
        if status == "failed" and is_lock_message(message):
            status = "retriable"
        if status == "open":
            message = f"bulk operation still open after {waited:g} s"
        results.append(OperationResult(index=index, status=status, message=message))
    if pending is not None:
        results += [
            OperationResult(index=item.index, status="rejected", message=item.message or "")
            for item in pending.rejected
        ]
    return sorted(results, key=lambda result: result.index)


def _indexes(operations: Sequence[dict[str, Any]], pending: Pending | None) -> list[int]:
    """Map each operation to its request index.

    Current versions number operations by request index. Older ones (and the doc examples) use
    global row ids; those grow in request order, so sorting by id and pairing with the accepted
    indexes recovers the mapping.
    """
    ids = [op.get("id") for op in operations]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError("a bulk operation has no numeric id")
    int_ids: list[int] = [i for i in ids if isinstance(i, int)]
    accepted = pending.accepted if pending is not None else tuple(range(len(operations)))
    if set(int_ids) <= set(accepted) and len(set(int_ids)) == len(int_ids):
        return int_ids
    if len(int_ids) != len(accepted):
        raise ValueError(
            f"the bulk lists {len(int_ids)} operations for {len(accepted)} accepted items"
        )
    rank = {op_id: position for position, op_id in enumerate(sorted(int_ids))}
    ordered = sorted(accepted)
    return [ordered[rank[op_id]] for op_id in int_ids]
