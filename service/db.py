"""Database access: one engine, units of work run on threads, SQLite writes group-committed.

Domain code is written as plain synchronous functions ``fn(conn) -> value`` that use
SQLAlchemy Core on the connection they are given and never commit; :class:`Database`
runs each one as a unit of work (one transaction) and commits it:

* ``await db.write(fn)`` — a read-write unit. On SQLite every write of this process
  goes through **one writer connection on one thread** (PERFORMANCE.md: a pool of
  writers showed 4x worse tail latency), and units that queue up while a transaction
  is running are committed together (group commit); if one of them fails, the batch
  is rolled back and its units are run one by one, so each commits or fails alone.
  Units must therefore depend only on the database (they may run twice; only one run
  commits). On PostgreSQL each unit gets its own
  transaction on a pooled connection.
* ``await db.read(fn)`` — a read-only unit on a pooled connection.

Domain code that wants sleeping workers to wake up when its transaction commits calls
:func:`notify` with a channel name; listeners registered with :meth:`Database.listen`
run only after a successful commit (and on PostgreSQL a ``NOTIFY`` reaches other
processes the same way).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Connection], T]

_NOTIFY_KEY = "callboard_notify"


def notify(conn: Connection, channel: str) -> None:
    """Ask for ``channel``'s listeners to run once the current transaction commits."""
    conn.info.setdefault(_NOTIFY_KEY, set()).add(channel)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_notify(:ch, '')"), {"ch": f"callboard_{channel}"})


def _take_notifications(conn: Connection) -> set[str]:
    return conn.info.pop(_NOTIFY_KEY, set())


def create_engine(url: str) -> Engine:
    """An engine configured for Callboard's use of each database.

    SQLite: WAL (readers never block the writer), ``synchronous=NORMAL`` (a committed
    transaction survives a killed process; only an OS crash can lose the last few),
    a busy timeout for other processes' writers, and explicit ``BEGIN`` handling so
    that SAVEPOINTs work and write transactions take the lock up front (``BEGIN
    IMMEDIATE``), which avoids deadlocks between processes upgrading read locks.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("callboard_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine
    return sa.create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def _json_dumps(value: Any) -> str:
    """JSON columns through orjson (PERFORMANCE.md: ~10x the stdlib's speed)."""
    return orjson.dumps(value).decode()


class _GroupWriter:
    """The single SQLite writer thread of this process, committing queued units together."""

    def __init__(self, engine: Engine, on_commit: Callable[[set[str]], None], max_batch: int = 128) -> None:
        self._engine = engine
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Unit[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="callboard-db-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Unit[T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((future, fn))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: Connection | None = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                if conn is None or conn.closed or conn.invalidated:
                    conn = self._engine.connect().execution_options(callboard_write=True)
                self._run_batch(conn, batch)
            except Exception as exc:  # connection-level failure: fail the whole batch, reconnect next time
                log.warning("database writer failed a batch of %d: %s", len(batch), exc)
                for future, _fn in batch:
                    if not future.done():
                        future.set_exception(exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            if stop:
                break
        if conn is not None:
            conn.close()

    def _run_batch(
        self, conn: Connection, batch: list[tuple[concurrent.futures.Future[Any], Unit[Any]]]
    ) -> None:
        """Commit the batch's units in one transaction; if any unit raises, roll the
        whole transaction back and run each unit alone, so every unit still commits or
        fails on its own. (Optimistic: SAVEPOINTs around every unit cost ~40 % of a
        typical unit, while units fail rarely.)"""
        live = [(f, fn) for f, fn in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        if len(live) > 1:
            results: list[Any] = []
            try:
                with conn.begin():
                    for _future, fn in live:
                        results.append(fn(conn))
            except Exception:
                _take_notifications(conn)  # rolled back: fall through to one by one
            else:
                channels = _take_notifications(conn)
                for (future, _fn), result in zip(live, results, strict=True):
                    future.set_result(result)
                self._notify(channels)
                return
        for future, fn in live:
            try:
                with conn.begin():
                    result = fn(conn)
            except BaseException as exc:
                _take_notifications(conn)
                future.set_exception(exc)
                continue
            channels = _take_notifications(conn)
            future.set_result(result)
            self._notify(channels)

    def _notify(self, channels: set[str]) -> None:
        if channels:
            self._on_commit(channels)


class Database:
    """The process's database: engine, writer, reader threads and commit listeners."""

    def __init__(self, url: str, *, read_threads: int = 4, write_threads: int = 8) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.is_sqlite = url.startswith("sqlite")
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._listeners_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            read_threads, thread_name_prefix="callboard-db-read"
        )
        self._writer: _GroupWriter | None = None
        self._writers: concurrent.futures.ThreadPoolExecutor | None = None
        if self.is_sqlite:
            self._writer = _GroupWriter(self.engine, self._fire)
        else:
            self._writers = concurrent.futures.ThreadPoolExecutor(
                write_threads, thread_name_prefix="callboard-db-write"
            )

    # -- commit listeners -------------------------------------------------------------
    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on a database thread: keep it tiny and thread-safe) after
        every commit of this process that called :func:`notify` for ``channel``."""
        with self._listeners_lock:
            self._listeners.setdefault(channel, []).append(callback)

    def _fire(self, channels: set[str]) -> None:
        with self._listeners_lock:
            callbacks = [cb for ch in channels for cb in self._listeners.get(ch, ())]
        for cb in callbacks:
            try:
                cb()
            except Exception:  # pragma: no cover - a listener must not break commits
                log.exception("commit listener failed")

    # -- units of work ----------------------------------------------------------------
    def _write_in_thread(self, fn: Unit[T]) -> T:
        with self.engine.connect() as conn:
            try:
                with conn.begin():
                    result = fn(conn)
            except BaseException:
                _take_notifications(conn)
                raise
            channels = _take_notifications(conn)
        self._fire(channels)
        return result

    def _read_in_thread(self, fn: Unit[T]) -> T:
        with self.engine.connect() as conn:
            try:
                return fn(conn)
            finally:
                if conn.in_transaction():
                    conn.rollback()

    def submit_write(self, fn: Unit[T]) -> concurrent.futures.Future[T]:
        if self._writer is not None:
            return self._writer.submit(fn)
        assert self._writers is not None
        return self._writers.submit(self._write_in_thread, fn)

    async def write(self, fn: Unit[T]) -> T:
        """Run ``fn`` as one read-write transaction; its result once committed."""
        return await asyncio.wrap_future(self.submit_write(fn))

    async def read(self, fn: Unit[T]) -> T:
        """Run ``fn`` on a read-only connection (it must not write)."""
        return await asyncio.wrap_future(self._readers.submit(self._read_in_thread, fn))

    def write_sync(self, fn: Unit[T]) -> T:
        """Blocking :meth:`write`, for the CLI, migrations-adjacent code and tests."""
        return self.submit_write(fn).result()

    def read_sync(self, fn: Unit[T]) -> T:
        return self._read_in_thread(fn)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._writers is not None:
            self._writers.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()
