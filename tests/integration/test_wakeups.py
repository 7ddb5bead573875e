"""PostgreSQL wake-ups between the processes of a push (pimsync.staging.wakeups)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from pimsync.staging.database import open_engine
from pimsync.staging.wakeups import Listener, notify

pytestmark = pytest.mark.postgres


def test_a_notification_wakes_the_listener_when_its_transaction_commits(postgres_url: str):
    engine = open_engine(postgres_url)
    try:
        with Listener(engine) as listener, engine.connect() as connection:
            notify(connection)
            # Not delivered before the commit: a waiter never wakes ahead of the change.
            assert listener.wait(0.2) is False
            connection.commit()
            assert listener.wait(10) is True
            assert listener.wait(0.2) is False  # one notification, one wake-up
    finally:
        engine.dispose()


def test_a_wait_ends_as_another_process_notifies(postgres_url: str):
    engine = open_engine(postgres_url)
    woke: list[float] = []
    try:
        with Listener(engine) as listener:

            def waiter() -> None:
                started = time.monotonic()
                if listener.wait(30):
                    woke.append(time.monotonic() - started)

            thread = threading.Thread(target=waiter)
            thread.start()
            with engine.connect() as connection:
                notify(connection)
                connection.commit()
            thread.join(timeout=30)
        # Woken by the notification, not by the 30 s bound (no timing beyond that).
        assert len(woke) == 1 and woke[0] < 30
    finally:
        engine.dispose()


def test_a_lost_listening_connection_makes_waits_plain_sleeps(postgres_url: str):
    engine = open_engine(postgres_url)
    try:
        with Listener(engine) as listener:
            with engine.connect() as connection:
                # The listening session is ended from outside, as a dropped connection would be.
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query LIKE 'LISTEN %' "
                        "AND pid <> pg_backend_pid()"
                    )
                )
                connection.commit()
            started = time.monotonic()
            assert listener.wait(0.3) is False
            assert listener.wait(0.3) is False
            assert time.monotonic() - started >= 0.5  # it slept, rather than failing at once
    finally:
        engine.dispose()
