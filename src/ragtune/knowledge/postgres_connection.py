"""One connection to PostgreSQL as ragtune holds it: a clear error when it cannot be made, and made again when the
server drops it (a restart, a failover, an idle timeout), so a long-running server needs no restart of its own.

A read that fails because the connection dropped is retried once on a new connection; a write is not (it may have
committed before the connection went): it fails with the server's error, and the next call connects again."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlsplit

from ragtune.errors import RagtuneError

T = TypeVar("T")
# ragtune's tables live in a schema of their own: another application's `documents` is never ours
SCHEMA_NAME = "ragtune"
CONNECT_TIMEOUT_S = 10
WRITE_LOCK = 7_460_271  # pg_advisory_xact_lock key held by every transaction that writes ragtune's tables


def masked(url: str) -> str:
    """The URL without its password (in the address or as a query parameter), for messages and status."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a malformed URL)"
    if password is not None:
        url = url.replace(f":{password}@", ":***@", 1)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise client_libraries_missing() from None
    return psycopg


def client_libraries_missing() -> RagtuneError:
    return RagtuneError("storage.url names PostgreSQL, but its client libraries are not installed",
                        "pip install 'ragtune[postgres]' (psycopg and pgvector)")


def _is_read(sql: str) -> bool:
    """Whether a statement only reads, by its first word: ragtune's statements starting with SELECT or WITH do
    (none is a data-modifying WITH or calls a function that writes)."""
    return sql.lstrip().upper().startswith(("SELECT", "WITH"))


class PostgresConnection:
    """psycopg's connection in autocommit mode with ragtune's schema first on the search path; `configure` runs on
    every new connection (session settings, type adapters)."""

    def __init__(self, url: str, configure: Callable | None = None):
        self.url = url
        self.where = masked(url)
        self._configure = configure
        self._transactions = 0
        self.raw = self._connect()

    def _connect(self):
        psycopg = _psycopg()
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                  options=f"-c search_path={SCHEMA_NAME},public")
        except psycopg.Error as error:
            reason = masked(str(error).strip().splitlines()[-1])
            if "password authentication failed" in reason or "role" in reason and "does not exist" in reason:
                hint = "check the user name and password in storage.url (or RAGTUNE_STORE_URL)"
            elif "database" in reason and "does not exist" in reason:
                hint = "create the database first (createdb NAME, or CREATE DATABASE NAME)"
            else:
                hint = "check that the server is running and reachable, and the host and port in storage.url"
            raise RagtuneError(f"cannot connect to PostgreSQL at {self.where}: {reason}", hint) from None
        return raw

    def configure(self) -> None:
        """Run the session set-up on the current connection (again after a reconnection)."""
        if self._configure:
            self._configure(self.raw)

    def _reconnect_if_dropped(self) -> None:
        if self._transactions == 0 and self.raw.broken:
            self.raw.close()
            self.raw = self._connect()
            self.configure()

    def execute(self, sql: str, params=None, **options):
        """psycopg's Connection.execute; a dropped connection is made again, and a read outside a transaction
        that it broke is retried once."""
        def run():
            return self.raw.execute(sql, params, **options)

        if _is_read(sql):
            return self.read(run)
        self._reconnect_if_dropped()
        return run()

    def read(self, query: Callable[[], T]) -> T:
        """Run `query` (reads only, of several statements, say in a transaction), and once more on a new connection
        when the connection dropped under it."""
        self._reconnect_if_dropped()
        try:
            return query()
        except _psycopg().OperationalError:
            if self._transactions or not self.raw.broken:
                raise
            self._reconnect_if_dropped()
            return query()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (nested ones are savepoints); the connection is made again first if it dropped."""
        self._reconnect_if_dropped()
        self._transactions += 1
        try:
            with self.raw.transaction():
                yield
        finally:
            self._transactions -= 1

    def cursor(self, **options):
        self._reconnect_if_dropped()
        return self.raw.cursor(**options)

    def close(self) -> None:
        self.raw.close()
