"""Property-based fuzzing of the whole OpenAPI spec (schemathesis) against a real uvicorn process.

Whatever operations the spec has at run time are covered. The shop is seeded and a model built first,
so serving routes run their real code paths rather than answering 503 ModelNotReady. The run fails on
any 5xx, any response whose body does not match its documented schema, and any undocumented status.
Budget: SHOPMIND_FUZZ_SECONDS (default 170) and SHOPMIND_FUZZ_EXAMPLES per operation (default 25).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from app.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.server import ServerProcess

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


def _seed(base_url: str) -> None:
    rng = random.Random(11)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base_url, headers=auth, timeout=60) as http:
        items = [{"item_id": f"sku-{i}", "title": f"thing {i}", "categories": [f"cat{i % 4}"], "tags": ["t"],
                  "brand": f"b{i % 3}", "price": 5.0 + i} for i in range(40)]
        assert http.post("/v1/items", json={"items": items}).status_code == 200
        events = []
        for k in range(3000):
            user = f"user-{k % 60}"
            item = f"sku-{(k % 60 * 3 + rng.randrange(10)) % 40}"
            kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
            events.append({"user_id": user, "item_id": item, "type": kind, "timestamp": 1_750_000_000 + k * 900})
        r = http.post("/v1/events", json={"events": events})
        assert r.status_code == 200 and r.json()["accepted"] == 3000, r.text[:500]


def _build_model(settings: Settings) -> None:
    try:
        from app.worker.pipeline import rebuild
    except ImportError:  # no worker yet: serving routes answer 503 ModelNotReady, still documented
        return
    rebuild(settings, trigger="fuzz")


def test_openapi_fuzz(server: ServerProcess, settings: Settings, tmp_path: Path) -> None:
    _seed(server.base_url)
    _build_model(settings)
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    seconds = os.environ.get("SHOPMIND_FUZZ_SECONDS", "170")
    command = [
        cli, "run", f"{server.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN_KEY}",
        "--checks", CHECKS,
        "--max-examples", os.environ.get("SHOPMIND_FUZZ_EXAMPLES", "25"),
        "--max-time", seconds,
        "--phases", "examples,coverage,fuzzing",
        # one worker: Python 3.11 can raise a spurious "SystemError: AST constructor recursion depth
        # mismatch" when two threads parse source at once (CPython gh-106905), which hypothesis does
        # to describe schemathesis' filters: it failed two of four runs here with two workers
        "--workers", "1",
        "--request-timeout", "20",
        "--seed", os.environ.get("SHOPMIND_FUZZ_SEED", "20240601"),
        "--no-color",
        # Registering a webhook resolves its URL's host name (the SSRF check): fuzzed names would be
        # sent to the machine's resolver, a non-loopback address tests must not reach. That route's
        # validation is tested on IP literals and malformed URLs in tests/webhooks/test_webhook_api.py.
        "--exclude-name", "POST /v1/webhooks",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=float(seconds) + 120)
    output = run.stdout + run.stderr
    tail = "\n".join(output.splitlines()[-200:])
    assert run.returncode == 0, f"schemathesis found problems:\n{tail}\n--- server log ---\n{server.output()[-3000:]}"
