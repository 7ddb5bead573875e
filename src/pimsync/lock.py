"""One run at a time per staging database: a lease in the `sync_lock` table.

The holder renews its lease from a heartbeat thread; a run that crashed (or was killed) stops
renewing, so its lease runs out and the next run takes over. On the same machine
(`machine_key`) a holder whose process is gone is taken over at once, without waiting for the
lease. The heartbeat also carries `pimsync stop` to the holder: it sets `stop_requested_at`, the
holder sees it at its next beat.

Taking over uses compare-and-swap on the owner token, so two runs racing for an expired lease
cannot both win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pimsync.errors import LockHeldError, PimsyncError
from pimsync.staging._base import aware, lease_now, lease_now_value
from pimsync.staging.tables import sync_lock, sync_runs

LOCK_NAME = "staging"


class StopRequested(PimsyncError):
    """`pimsync stop`, SIGTERM or a first Ctrl-C asked the run to stop after its batch."""

    exit_code = 130


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, as the operator needs to see it."""

    kind: str
    host: str
    pid: int
    machine: str | None  # `machine_key()` of the holder; None if an older pimsync wrote it
    run_id: int | None
    acquired_at: datetime
    expires_at: datetime
    stop_requested_at: datetime | None

    def describe(self) -> str:
        run = f" (run {self.run_id})" if self.run_id else ""
        return (
            f"{self.kind}{run} on {self.host} pid {self.pid}, since "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
        )


def current_holder(engine: Engine) -> Holder | None:
    """The lock's holder, or None when no run holds it."""
    with engine.connect() as connection:
        row = connection.execute(select(sync_lock).where(sync_lock.c.name == LOCK_NAME)).first()
    return _holder(row._mapping) if row else None


def lease_over(engine: Engine, holder: Holder) -> bool:
    """Whether `holder`'s lease has run out, by the clock leases are stamped with (`lease_now`:
    the PostgreSQL server's), not this machine's, which may run ahead of it."""
    with engine.connect() as connection:
        return holder.expires_at <= lease_now_value(connection)


def request_stop(engine: Engine) -> Holder | None:
    """Ask the holder to stop after its current batch; returns it (None if nothing runs)."""
    with engine.begin() as connection:
        connection.execute(
            update(sync_lock)
            .where(sync_lock.c.name == LOCK_NAME, sync_lock.c.stop_requested_at.is_(None))
            .values(stop_requested_at=lease_now(connection))
        )
        row = connection.execute(select(sync_lock).where(sync_lock.c.name == LOCK_NAME)).first()
    return _holder(row._mapping) if row else None


class RunLock:
    """The lease one run holds while it writes to staging (and to Magento).

    `checkpoint()` is what a run calls between batches: it raises `StopRequested` once a stop
    was asked for, and `LockHeldError` if the lease was lost (the run was presumed dead and
    another took over), so two runs never write at once for longer than one batch.
    """

    def __init__(self, engine: Engine, kind: str, lease_seconds: float = 60.0) -> None:
        self.engine = engine
        self.kind = kind
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.machine = machine_key()
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- acquiring and releasing -----------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock or raise LockHeldError naming its holder."""
        for _attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    now = lease_now_value(connection)
                    values = {
                        "owner": self.owner,
                        "kind": self.kind,
                        "host": self.host,
                        "pid": self.pid,
                        "machine": self.machine,
                        "run_id": None,
                        "acquired_at": now,
                        "expires_at": now + self.lease,
                        "stop_requested_at": None,
                    }
                    row = connection.execute(
                        select(sync_lock).where(sync_lock.c.name == LOCK_NAME)
                    ).first()
                    if row is None:
                        connection.execute(insert(sync_lock).values(name=LOCK_NAME, **values))
                        self._taken(connection)
                        return
                    holder = _holder(row._mapping)
                    # A holder on this machine whose process is gone is taken over at once.
                    expired = holder.expires_at <= now
                    if not (expired or gone_here(holder.machine, holder.pid)):
                        raise LockHeldError(
                            f"another run holds the staging database: {holder.describe()}",
                            hint="wait for it to finish, or ask it to stop with `pimsync stop`",
                        )
                    # Compare-and-swap on the old owner: of two runs taking over, one wins.
                    swapped = connection.execute(
                        update(sync_lock)
                        .where(sync_lock.c.name == LOCK_NAME, sync_lock.c.owner == row.owner)
                        .values(**values)
                    )
                    if swapped.rowcount == 1:
                        self._taken(connection)
                        return
            except IntegrityError:
                pass  # another run inserted the row first: read who holds it, and try again
        raise LockHeldError("another run took the staging database at the same moment")

    def _taken(self, connection: Any) -> None:
        # Runs left in progress by a holder that died are not in progress any more.
        connection.execute(
            update(sync_runs)
            .where(sync_runs.c.status == "in_progress")
            .values(
                status="stopped",
                finished_at=datetime.now(UTC),
                message="abandoned: its process ended without finishing (killed or crashed)",
            )
        )

    def attach_run(self, run_id: int) -> None:
        """Name the run in the lock, so `pimsync status` and a refused run can show it."""
        self._write(update(sync_lock).values(run_id=run_id))

    def release(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with suppress(SQLAlchemyError):  # if the database is gone, the lease runs out alone
            self._write(delete(sync_lock))

    def _write(self, statement: Any) -> int:
        statement = statement.where(sync_lock.c.name == LOCK_NAME, sync_lock.c.owner == self.owner)
        with self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)

    # -- the heartbeat -------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="pimsync-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.lease.total_seconds() / 4, 0.05)
        while not self._done.wait(interval):
            self.renew()

    def renew(self) -> None:
        """Extend the lease and pick up a stop request; notice when the lease was lost."""
        try:
            with self.engine.begin() as connection:
                mine = sync_lock.c.owner == self.owner
                renewed = connection.execute(
                    update(sync_lock)
                    .where(sync_lock.c.name == LOCK_NAME, mine)
                    .values(expires_at=lease_now(connection) + self.lease)
                ).rowcount
                asked = connection.scalar(
                    select(sync_lock.c.stop_requested_at).where(sync_lock.c.name == LOCK_NAME, mine)
                )
        except SQLAlchemyError:
            return  # a busy or briefly unreachable database: the next beat tries again
        if renewed == 0:
            self._lost.set()
        elif asked is not None:
            self.request_stop("`pimsync stop`")

    # -- stopping ------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def checkpoint(self) -> None:
        """Between batches: stop here if asked to, or if another run holds the lease now."""
        if self._lost.is_set():
            raise LockHeldError(
                "this run lost the staging lock (its lease ran out and another run took over); "
                "stopping after the batch it committed"
            )
        if self._stop.is_set():
            raise StopRequested(f"stopped on request ({self.stop_reason})")


@contextmanager
def holding(engine: Engine, kind: str, lease_seconds: float) -> Iterator[RunLock]:
    """Hold the lock for the block, with its heartbeat and stop signals."""
    lock = RunLock(engine, kind, lease_seconds)
    try:
        lock.acquire()
    except SQLAlchemyError as exc:
        from pimsync.staging.repository import staging_failure

        raise staging_failure(exc) from None
    lock.start_heartbeat()
    try:
        with stop_signals(lock):
            yield lock
    finally:
        lock.release()


class Stoppable(Protocol):
    """What a stop signal is delivered to: a run lock, or a worker's flag."""

    @property
    def stop_requested(self) -> bool: ...

    def request_stop(self, reason: str) -> None: ...


class StopFlag:
    """A stop request for a process that holds no lock (`pimsync worker`)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    @property
    def stop_requested(self) -> bool:
        return self.reason is not None

    def request_stop(self, reason: str) -> None:
        self.reason = self.reason or reason


@contextmanager
def stop_signals(target: Stoppable) -> Iterator[None]:
    """SIGTERM and a first Ctrl-C ask `target` to stop after its batch; a second one aborts.

    Only the main thread can install handlers; elsewhere (a scheduler's thread) the run still
    stops through `pimsync stop`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if target.stop_requested:
            raise KeyboardInterrupt
        target.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@functools.cache
def machine_key() -> str:
    """Where a pid names one process: this kernel's boot and this pid namespace, as 12 hex digits.

    A host name is not enough. Two containers on one host with its network share the host name
    but not their pids, and machines cloned from one image can share a name ("ubuntu"): taking
    a pid of one for a process of the other would take over a live run's lock or push the rows
    a live worker holds. Where Linux's /proc does not tell, the host name is all there is.
    """
    parts = []
    with suppress(OSError), open("/proc/sys/kernel/random/boot_id") as boot:
        parts.append(boot.read().strip())
    with suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    if len(parts) < 2:
        parts = [socket.gethostname()]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


def gone_here(machine: str | None, pid: int) -> bool:
    """A process of this machine (`machine_key`) that has ended. One elsewhere, or of unknown
    whereabouts, is never known to be gone, and a pid taken again by another process can only
    make pimsync wait longer."""
    if machine != machine_key() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """An ended process its parent has not reaped yet (a killed local worker, until its
    `create` waits for it), which still answers kill(pid, 0). Linux only: /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _holder(row: Any) -> Holder:
    return Holder(
        kind=row["kind"],
        host=row["host"],
        pid=row["pid"],
        machine=row["machine"],
        run_id=row["run_id"],
        acquired_at=aware(row["acquired_at"]),
        expires_at=aware(row["expires_at"]),
        stop_requested_at=aware(row["stop_requested_at"]) if row["stop_requested_at"] else None,
    )
