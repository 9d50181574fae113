"""Killing the dispatcher process mid-delivery loses nothing: the delivery is made after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from app.settings import Settings
from tests.webhooks.outbox import enqueue
from tests.webhooks.receiver import Receiver


@contextmanager
def dispatcher_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "SHOPMIND_DATABASE_URL": settings.database_url or "", "SHOPMIND_REDIS_URL": settings.redis_url or "",
        "SHOPMIND_REDIS_PREFIX": settings.redis_prefix, "SHOPMIND_WEBHOOK_ALLOW_PRIVATE": "true",
        "SHOPMIND_WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
        "SHOPMIND_WEBHOOK_BACKOFF_SECONDS": str(settings.webhook_backoff_seconds),
        "SHOPMIND_DISPATCHER_POLL_SECONDS": str(settings.dispatcher_poll_seconds),
    }
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "dispatcher"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_killed_mid_delivery_then_delivered_after_restart(
    client: TestClient, hook: Receiver, settings: Settings
) -> None:
    webhook = client.post("/v1/webhooks", json={"url": hook.url, "events": ["*"]}).json()
    enqueue(settings.database_url or "", "cart_abandoned", "u1", {"event": "cart_abandoned"})
    hook.hold = threading.Event()
    with dispatcher_process(settings) as first:
        assert hook.arrived.wait(30), "the first dispatcher never sent"
        os.kill(first.pid, signal.SIGKILL)  # while the receiver still holds the request
        first.wait(10)
    hook.hold.set()  # the receiver answers a connection nobody reads any more
    [row] = client.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["deliveries"]
    assert row["status"] == "pending" and row["attempts"] == 1
    hook.hold = None
    with dispatcher_process(settings):
        assert hook.wait_for(
            lambda: client.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["deliveries"][0]["status"]
            == "delivered", 40,
        )
    ids = {r.json["delivery_id"] for r in hook.requests}
    assert ids == {row["delivery_id"]} and len(hook.requests) == 2  # the same delivery, sent again
    [done] = client.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["deliveries"]
    assert done["attempts"] == 2 and done["last_status"] == 200
