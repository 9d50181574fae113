"""A real API server process for tests that need one (kill tests, fuzzing, the browser): `uvicorn app.asgi:app`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests import servers
from tests.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self, database_url: str, redis_url: str, redis_prefix: str, access_log: bool = False, **settings: str
    ) -> None:
        self.access_log = access_log
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SHOPMIND_DATABASE_URL": database_url,
            "SHOPMIND_REDIS_URL": redis_url,
            "SHOPMIND_REDIS_PREFIX": redis_prefix,
            "SHOPMIND_REDIS_CLUSTER": "true" if servers.is_cluster(redis_url) else "false",
            "SHOPMIND_ADMIN_KEY": ADMIN_KEY,
            "SHOPMIND_LOG_LEVEL": "WARNING",
            **{f"SHOPMIND_{k.upper()}": v for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="shopmind-uvicorn-", suffix=".log")  # noqa: SIM115

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(self.port),
             *(["--log-level", "info"] if self.access_log else ["--log-level", "warning", "--no-access-log"])],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not answer /healthz in time")

    @property
    def log_path(self) -> Path:
        return Path(self.log.name)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush — as an OOM killer or a pulled plug would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
