"""Nothing is acknowledged unless it was committed: a write read back at once is always there.

Since FastAPI 0.118 the code after a yield dependency's `yield` runs after the response is sent; a
session dependency that commits there answers before the write is durable, and a read sent on the
heels of the answer can miss it. Tried against a real uvicorn process, read on another connection.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import httpx
from fastapi import params

import app
from app.db import SessionDep, get_session
from tests.conftest import ADMIN_KEY
from tests.server import ServerProcess

ROUNDS = 500
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_write_is_readable_as_soon_as_it_is_answered(server: ServerProcess, scoped_keys: dict[str, str]) -> None:
    """The shop's own keys, as a shop would write and read (the admin key's rate limit is far lower)."""
    with httpx.Client(base_url=server.base_url, headers=_bearer(scoped_keys["ingest"])) as writer, \
            httpx.Client(base_url=server.base_url, headers=_bearer(scoped_keys["read"])) as reader:
        for k in range(ROUNDS):
            put = writer.put(f"/v1/users/ack-{k}", json={"attributes": {"k": k}})
            assert put.status_code == 200, put.text
            got = reader.get(f"/v1/users/ack-{k}")
            assert got.status_code == 200, f"round {k}: the acknowledged user is not there: {got.text}"
            assert got.json()["attributes"] == {"k": k}


def test_an_item_deletion_is_committed_when_answered(server: ServerProcess) -> None:
    items = [{"item_id": f"ack-item-{k}", "title": f"thing {k}"} for k in range(100)]
    with httpx.Client(base_url=server.base_url, headers=AUTH) as writer, \
            httpx.Client(base_url=server.base_url, headers=AUTH) as reader:
        assert writer.post("/v1/items", json={"items": items}).status_code == 200
        for item in items:
            assert writer.delete(f"/v1/items/{item['item_id']}").status_code == 200
            got = reader.get(f"/v1/items/{item['item_id']}")
            assert got.status_code == 404, f"{item['item_id']} still visible after its deletion was acknowledged"


def test_routes_take_the_session_only_through_the_committing_dependency() -> None:
    """`SessionDep` ends the transaction before the response is sent; any other use of `get_session`
    (`Depends(get_session)` commits after it) is a route that may acknowledge before it commits."""
    (depends,) = [m for m in get_args(SessionDep)[1:] if isinstance(m, params.Depends)]
    assert depends.dependency is get_session and depends.scope == "function"
    app_dir = Path(app.__file__).parent
    others = [
        f"{path.relative_to(app_dir)}:{node.lineno}"
        for path in app_dir.rglob("*.py") if path.name != "db.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name | ast.alias) and "get_session" in (getattr(node, "id", None), getattr(node, "name", None))
    ]
    assert others == [], f"get_session used without SessionDep: {others}"
