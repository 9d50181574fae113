"""An export of 50,000 shoppers from a real server streams in bounded memory."""

from __future__ import annotations

import threading
import time

import httpx
import psutil
from fastapi.testclient import TestClient

from app.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.server import ServerProcess

SHOPPERS = 50_000


def test_fifty_thousand_rows_stream_in_bounded_memory(built: TestClient, settings: Settings) -> None:
    server = ServerProcess(settings.database_url or "", settings.redis_url or "", settings.redis_prefix)
    server.start()
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    body = {"audience": {"user_ids": [f"c-{k}" for k in range(SHOPPERS)]}, "n_items": 5}
    rows, size, baseline = 0, 0, 0
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        with httpx.stream("POST", f"{server.base_url}/v1/campaigns/export", json=body, timeout=600,
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                rows += 1
                size += len(line) + 1
                if rows == 2_000:  # past the first pages: the process has warmed its caches
                    baseline = process.memory_info().rss
                    sampler.start()
    finally:
        stop.set()
        server.stop()
    growth = peak[0] - baseline
    print(f"{rows} rows, {size / 1e6:.1f} MB streamed; server RSS {baseline / 1e6:.0f} MB after 2,000 rows, "
          f"peak {peak[0] / 1e6:.0f} MB (+{growth / 1e6:.1f} MB)")
    assert rows == SHOPPERS
    assert growth < 0.5 * size, "the server should not hold what it streams"
