"""The database holding what a server records (the answer log and the arena's votes), as its threads share it: one
connection, one lock, its tables created at open. It is the project's SQLite file, or the PostgreSQL database of the
knowledge base when storage.url names one, so every replica of a server records into one place.

Subclasses write their SQL once, with `?` placeholders and types both engines read (TEXT, INTEGER, DOUBLE
PRECISION). Each kind of records carries a schema version (table `record_schemas`): records written by a newer
ragtune are refused at open instead of being misread."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

from ragtune.errors import RagtuneError

_VERSIONS_SCHEMA = "CREATE TABLE IF NOT EXISTS record_schemas (name TEXT PRIMARY KEY, version INTEGER NOT NULL);\n"


class _SqliteRecords:
    error = sqlite3.Error

    def __init__(self, path: Path):
        self.raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.where = str(path)

    def create(self, schema: str) -> None:
        self.raw.executescript(schema)

    def execute(self, sql: str, params=()):
        return self.raw.execute(sql, params)

    @staticmethod
    def is_duplicate(error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError) and ("UNIQUE" in str(error) or "PRIMARY KEY" in str(error))

    def transaction(self):
        from ragtune.knowledge.store import immediate_transaction

        return immediate_transaction(self.raw)

    def close(self) -> None:
        self.raw.close()


class _PostgresRecords:
    def __init__(self, url: str):
        import psycopg

        from ragtune.knowledge.postgres_connection import PostgresConnection, masked

        self.error = psycopg.Error
        self._unique_violation = psycopg.errors.UniqueViolation
        self.connection = PostgresConnection(url)
        self.where = masked(url)

    def create(self, schema: str) -> None:
        """The schema's tables unless they all exist (then a user who may only read and write them is enough),
        created once however many replicas start together."""
        from ragtune.knowledge.postgres_connection import SCHEMA_NAME, WRITE_LOCK

        tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema)
        with self.connection.transaction():
            self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            if all(self.connection.execute(f"SELECT to_regclass('{SCHEMA_NAME}.{table}') IS NOT NULL").fetchone()[0]
                   for table in tables):
                return
            self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA_NAME}")
            self.connection.execute(schema)

    def execute(self, sql: str, params=()):
        return self.connection.execute(sql.replace("?", "%s"), params)

    def is_duplicate(self, error: Exception) -> bool:
        return isinstance(error, self._unique_violation)

    def transaction(self):
        return self.connection.transaction()

    def close(self) -> None:
        self.connection.close()


def connect(location: Path | str) -> _SqliteRecords | _PostgresRecords:
    """A SQLite file's path, or a PostgreSQL URL."""
    if isinstance(location, str) and "://" in location:
        return _PostgresRecords(location)
    return _SqliteRecords(Path(location))


class LockedDatabase:
    """Subclasses set RECORDS (their name), SCHEMA (CREATE ... IF NOT EXISTS statements) and SCHEMA_VERSION (raised
    with each change to SCHEMA, which then brings its migration), and use `self._db` under `self._lock`:
    `execute(sql, params)` returns a DB-API cursor, `transaction()` is a context manager, `error` is the engine's
    base exception and `is_duplicate(error)` tells a primary-key or unique violation."""

    RECORDS = ""
    SCHEMA = ""
    SCHEMA_VERSION = 1

    def __init__(self, location: Path | str):
        self._db = connect(location)
        self._lock = threading.Lock()
        with self._lock:
            try:
                self._db.create(_VERSIONS_SCHEMA + self.SCHEMA)
                self._check_version()
            except BaseException:
                self._db.close()
                raise

    def _check_version(self) -> None:
        """Record this schema's version at first open; refuse records a newer ragtune wrote."""
        with self._db.transaction():
            self._db.execute("INSERT INTO record_schemas (name, version) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                             (self.RECORDS, self.SCHEMA_VERSION))
            stored = self._db.execute("SELECT version FROM record_schemas WHERE name = ?",
                                      (self.RECORDS,)).fetchone()[0]
        if stored > self.SCHEMA_VERSION:
            raise RagtuneError(f"the {self.RECORDS} records in {self._db.where} have schema version {stored}, written "
                               f"by a newer ragtune; this one reads version {self.SCHEMA_VERSION}",
                               "upgrade ragtune here to the version the other servers run")

    def close(self) -> None:
        with self._lock:
            self._db.close()
