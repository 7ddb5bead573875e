"""What the staging repository's parts share: the connection, and small SQL helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, func, select


class Connected:
    """One connection, held for the repository's lifetime; the caller commits batch by batch."""

    connection: Connection

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()


def utcnow() -> datetime:
    return datetime.now(UTC)


def lease_now(connection: Connection) -> Any:
    """The time for a lease that processes on several machines compare (the run lock, a
    worker's claims), to use in a statement: on PostgreSQL the server's clock, the one clock
    they all share (a machine whose clock runs a minute ahead would otherwise find a live run's
    lease over and take it); on SQLite, which one machine opens, this machine's."""
    if connection.dialect.name == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True))
    return utcnow()


def lease_now_value(connection: Connection) -> datetime:
    """`lease_now` as a value, for a lease compared in Python."""
    now = lease_now(connection)
    return now if isinstance(now, datetime) else aware(connection.execute(select(now)).scalar_one())


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for DateTime(timezone=True); they were stored as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
