"""Asynchronous and bulk web API: accept, queue, consume, report.

``POST /rest/<store>/async/bulk/V1/...`` answers 202 with a ``bulk_uuid`` and one
``request_items`` entry per array item; business validation happens later, in the consumer,
exactly as with ``async.operations.all``. Operation statuses: 1 complete, 2 failed (can retry),
3 failed (change data first), 4 open, 5 rejected.

Magento's ``OperationProcessor`` marks every ``LocalizedException`` as status 3, including the
repository's "Database deadlock found when trying to get lock": a client must retry on that
*message*, not only on status 2 (which only raw database errors produce).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .context import Call, Route
from .errors import SQL_DEADLOCK, ApiError, deadlock
from .faults import Faults
from .search import parse_criteria, search
from .state import CatalogState, now
from .store import Scope

OPEN, COMPLETE, RETRIABLY_FAILED, NOT_RETRIABLY_FAILED, REJECTED = 4, 1, 2, 3, 5
USER_TYPE_ADMIN = 2


@dataclass(slots=True)
class Operation:
    id: int  # the request_items index: map results by it, not by list order
    bulk_uuid: str
    route: Route
    params: dict[str, str]
    body: Any
    topic: str
    serialized_data: str | None
    status: int = OPEN
    result_message: str | None = None
    error_code: int | None = None
    result_serialized_data: str | None = None

    def short(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "result_message": self.result_message,
            "error_code": self.error_code,
        }

    def detailed(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bulk_uuid": self.bulk_uuid,
            "topic_name": self.topic,
            "serialized_data": self.serialized_data,
            "result_serialized_data": self.result_serialized_data,
            "status": self.status,
            "result_message": self.result_message,
            "error_code": self.error_code,
        }


@dataclass(slots=True)
class Bulk:
    uuid: str
    description: str
    start_time: str
    scope: Scope
    base_url: str
    operations: list[Operation]


def sku_of(params: dict[str, str], body: Any) -> str | None:
    """The SKU an operation is about, for per-SKU rejections."""
    if "sku" in params:
        return params["sku"]
    if isinstance(body, dict):
        product = body.get("product")
        if isinstance(product, dict) and product.get("sku"):
            return str(product["sku"])
    return None


class BulkManager:
    """Holds bulks and the operation queue; a daemon thread plays ``async.operations.all``."""

    def __init__(
        self,
        state: CatalogState,
        faults: Faults,
        *,
        consumer: bool = True,
        stuck: bool = False,
        consumer_delay: float = 0.0,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._state = state
        self._faults = faults
        self._auto = consumer
        self._stuck = stuck
        self.consumer_delay = consumer_delay
        self._on_crash = on_crash
        self._bulks: dict[str, Bulk] = {}
        self._queue: deque[Operation] = deque()
        # The condition shares the state lock: an operation is applied atomically with its pop.
        self._wake = threading.Condition(state.lock)
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- switches -------------------------------------------------------------------------

    @property
    def stuck(self) -> bool:
        return self._stuck

    @stuck.setter
    def stuck(self, value: bool) -> None:
        with self._wake:
            self._stuck = value
            self._wake.notify_all()

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    # --- accept ---------------------------------------------------------------------------

    def accept(
        self, route: Route, scope: Scope, items: list[tuple[dict[str, str], Any]], base_url: str
    ) -> dict[str, Any]:
        """Schedule operations; answer the 202 body. Call with the state lock held."""
        assert route.service is not None
        topic = route.service.topic(route.method)
        bulk_uuid = str(uuid.uuid4())
        request_items: list[dict[str, Any]] = []
        operations: list[Operation] = []
        for index, (params, body) in enumerate(items):
            sku = sku_of(params, body)
            rejection = self._state.rejections.get(sku.lower()) if sku else None
            if rejection is not None and rejection[1]:
                request_items.append(
                    {
                        "id": index,
                        "data_hash": None,
                        "status": "rejected",
                        "error_message": rejection[0].rendered,
                        "error_code": 0,
                    }
                )
                continue
            meta = orjson.dumps(body).decode()
            serialized = {"entity_id": None, "entity_link": "", "meta_information": meta}
            operations.append(
                Operation(
                    index, bulk_uuid, route, params, body, topic, orjson.dumps(serialized).decode()
                )
            )
            digest = hashlib.sha256(meta.encode()).hexdigest()
            request_items.append({"id": index, "data_hash": digest, "status": "accepted"})
        self._bulks[bulk_uuid] = Bulk(
            bulk_uuid, f"Topic {topic}", now(), scope, base_url, operations
        )
        with self._wake:
            self._queue.extend(operations)
            self._wake.notify_all()
        if operations and self._auto:
            self._start()
        return {
            "bulk_uuid": bulk_uuid,
            "request_items": request_items,
            "errors": len(operations) != len(items),
        }

    # --- consume --------------------------------------------------------------------------

    def _apply(self, op: Operation) -> None:
        """Run one operation as ``OperationProcessor::executeHandler`` would."""
        bulk = self._bulks[op.bulk_uuid]
        assert op.route.service is not None
        if op.route.saves and self._faults.roll(self._faults.bulk_retry_ratio):
            op.status, op.error_code, op.result_message = RETRIABLY_FAILED, 40001, SQL_DEADLOCK
            return
        call = Call(self._state, bulk.scope, op.params, op.body, base_url=bulk.base_url)
        try:
            if op.route.saves and self._faults.roll(self._faults.deadlock_ratio):
                raise deadlock(op.route.saves)
            result = op.route.handler(call)
        except ApiError as exc:
            op.status, op.error_code, op.result_message = NOT_RETRIABLY_FAILED, 0, exc.rendered
        except Exception as exc:  # a bug in the fake: report it, fail the operation
            op.status, op.error_code, op.result_message = NOT_RETRIABLY_FAILED, 0, str(exc)
            if self._on_crash is not None:
                self._on_crash(exc)
        else:
            op.status, op.error_code = COMPLETE, None
            op.result_message = op.route.service.success_message()
            op.serialized_data = None  # Magento keeps the request only for failed operations
            op.result_serialized_data = orjson.dumps(result).decode()

    def drain(self) -> int:
        """Apply every queued operation now, in order, in this thread (unless stuck)."""
        done = 0
        with self._wake:
            while self._queue and not self._stuck:
                self._apply(self._queue.popleft())
                done += 1
        return done

    def _start(self) -> None:
        with self._wake:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name="fake-magento-consumer", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (self._stuck or not self._queue):
                    self._wake.wait()
                if self._closed:
                    return
                self._apply(self._queue.popleft())
            if self.consumer_delay > 0:
                time.sleep(self.consumer_delay)

    def close(self) -> None:
        """Stop the consumer thread; queued operations stay open."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # --- status endpoints -----------------------------------------------------------------

    def _bulk(self, call: Call) -> Bulk:
        bulk = self._bulks.get(call.params["bulkUuid"])
        if bulk is None:
            raise ApiError(
                404, "Bulk uuid %bulkUuid not exist", {"bulkUuid": call.params["bulkUuid"]}
            )
        return bulk

    def _summary(self, bulk: Bulk, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "operations_list": operations,
            "user_type": USER_TYPE_ADMIN,
            "bulk_id": bulk.uuid,
            "description": bulk.description,
            "start_time": bulk.start_time,
            "user_id": 1,
            "operation_count": len(bulk.operations),
        }

    def status(self, call: Call) -> dict[str, Any]:
        """``GET /V1/bulk/{bulkUuid}/status``."""
        bulk = self._bulk(call)
        return self._summary(bulk, [op.short() for op in bulk.operations])

    def detailed_status(self, call: Call) -> dict[str, Any]:
        """``GET /V1/bulk/{bulkUuid}/detailed-status``."""
        bulk = self._bulk(call)
        return self._summary(bulk, [op.detailed() for op in bulk.operations])

    def count(self, call: Call) -> int:
        """``GET /V1/bulk/{bulkUuid}/operation-status/{status}``: a bare integer (0 if unknown)."""
        bulk = self._bulks.get(call.params["bulkUuid"])
        wanted = call.int_param("status")
        return 0 if bulk is None else sum(op.status == wanted for op in bulk.operations)

    def search(self, call: Call) -> dict[str, Any]:
        """``GET /V1/bulk?searchCriteria...``: operations across bulks."""
        ops = [op for bulk in self._bulks.values() for op in bulk.operations]

        def field(op: Operation, name: str) -> Any:
            if name == "start_time":
                return self._bulks[op.bulk_uuid].start_time
            return op.detailed().get(name)

        return search(ops, parse_criteria(call.query), field, Operation.detailed)

    def bulk_view(self, bulk_uuid: str) -> dict[str, Any] | None:
        bulk = self._bulks.get(bulk_uuid)
        return (
            None if bulk is None else self._summary(bulk, [op.detailed() for op in bulk.operations])
        )

    def uuids(self) -> list[str]:
        return list(self._bulks)
