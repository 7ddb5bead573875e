"""Wake-ups between the processes of one push, through PostgreSQL's LISTEN/NOTIFY.

Workers wait for the coordinator to publish the next phase, and the coordinator waits for the
workers to settle the rows they claimed. Polling the staging database for those changes made
every phase change cost every worker up to one poll interval; a notification wakes the waiter
as the change commits. A notification is only a hint, never the change itself: whoever wakes
reads the state it waits on again, and every wait is bounded, so a notification that never
arrives (a dropped connection) costs one timeout, never a hang.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

CHANNEL = "pimsync_push"


def notify(connection: Connection) -> None:
    """Wake whoever listens; PostgreSQL delivers it when this transaction commits, so a waiter
    never wakes before the change it is told about is visible."""
    connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class Listener:
    """A connection of its own that listens on the push channel (PostgreSQL staging only)."""

    def __init__(self, engine: Engine) -> None:
        # A connection taken out of the engine's pool for good: it sits in autocommit mode and
        # listens, which no pooled connection should do once handed back.
        pooled = engine.raw_connection()
        driver: Any = pooled.driver_connection
        pooled.detach()
        if not isinstance(driver, psycopg.Connection):
            pooled.close()
            raise TypeError(f"wake-ups need PostgreSQL through psycopg, not {type(driver)}")
        driver.rollback()
        driver.autocommit = True
        driver.execute(f"LISTEN {CHANNEL}")
        self._connection: psycopg.Connection[Any] = driver
        self._lost = False

    def wait(self, timeout: float) -> bool:
        """Return at the next notification (True), or after `timeout` seconds (False).

        Notifications that arrived since the last wait end it at once: psycopg keeps them
        until read. A listening connection that broke makes every later wait a plain sleep:
        the waiter's own polling is then what notices changes, as it would without us."""
        if not self._lost:
            try:
                for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                    return True
                return False
            except psycopg.OperationalError:
                self._lost = True
        time.sleep(timeout)
        return False

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
