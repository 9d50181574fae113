"""The outside check, against `shopmind serve` as an operator runs it (its dispatcher in a thread beside
the worker): a webhook to a local receiver, a cart_abandoned trigger, an add-to-cart, one signed
delivery; nothing for a shopper who bought in time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.settings import Settings
from app.webhooks import signing
from tests.ops.test_ops_serve_workers import _wait_healthy
from tests.server import free_port
from tests.webhooks.receiver import receiver


def test_serve_fires_a_signed_cart_reminder(settings: Settings) -> None:
    assert settings.database_url and settings.redis_url and settings.admin_key
    port = free_port()
    env = {**os.environ, "SHOPMIND_DATABASE_URL": settings.database_url, "SHOPMIND_REDIS_URL": settings.redis_url,
           "SHOPMIND_REDIS_PREFIX": settings.redis_prefix, "SHOPMIND_ADMIN_KEY": settings.admin_key.get_secret_value(),
           "SHOPMIND_WEBHOOK_ALLOW_PRIVATE": "true", "SHOPMIND_DISPATCHER_POLL_SECONDS": "0.2"}
    cli = shutil.which("shopmind", path=str(Path(sys.executable).parent)) or "shopmind"
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--workers", "2", "--no-demo", "--with-worker"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"}
    try:
        _wait_healthy(port, 60)
        with receiver() as hook:
            made = httpx.post(f"{base}/v1/webhooks", json={"url": hook.url, "events": ["cart_abandoned"]},
                              headers=headers)
            assert made.status_code == 201, made.text
            secret = made.json()["secret"]
            put = httpx.put(f"{base}/v1/triggers/cart", json={"kind": "cart_abandoned", "delay_seconds": 2},
                            headers=headers)
            assert put.status_code == 200, put.text
            for events in ([{"user_id": "ann", "item_id": "i1", "type": "add_to_cart"},
                            {"user_id": "bob", "item_id": "i1", "type": "add_to_cart"}],
                           [{"user_id": "bob", "item_id": "i1", "type": "purchase"}]):
                posted = httpx.post(f"{base}/v1/events", json={"events": events}, headers=headers)
                assert posted.status_code == 200 and posted.json()["accepted"] == len(events)
            assert hook.wait_for(lambda: len(hook.delivered()) >= 1, 60)
            time.sleep(3)
            assert [r.json["user"]["user_id"] for r in hook.delivered()] == ["ann"]
            got = hook.delivered()[0]
            assert signing.verify(secret, got.headers["shopmind-signature"], got.body, time.time())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
