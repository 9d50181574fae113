"""Every /v1 route, called with no key, with each wrong scope and with the right one.

ROUTES is the contract: each (method, path) under /v1 and the scope it requires. A route that exists
but is missing from the table fails the test (new routes must be classified); a route in the table
that does not exist yet is simply not walked. Routes outside /v1 (the dashboard, /metrics, the public
pages) are walked with a `track` key in test_rel_track_key.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

SCOPES = ("track", "ingest", "read", "admin")


@dataclass(frozen=True)
class Expect:
    scope: str
    body: dict[str, Any] | None = None
    also: tuple[str, ...] = ()  # narrower scopes let in too (the route then limits what they may do)
    query: dict[str, Any] = field(default_factory=dict)


ROUTES: dict[tuple[str, str], Expect] = {
    # ingest: shop backends feeding events, catalog and users
    ("POST", "/v1/events"): Expect(
        "ingest", {"events": [{"user_id": "rel-u", "item_id": "rel-i", "type": "view"}]}, also=("track",)
    ),
    ("PUT", "/v1/items/{item_id}"): Expect("ingest", {"title": "t"}),
    ("POST", "/v1/items"): Expect("ingest", {"items": [{"item_id": "rel-i2"}]}),
    ("DELETE", "/v1/items/{item_id}"): Expect("ingest"),
    ("PUT", "/v1/users/{user_id}"): Expect("ingest", {"attributes": {}}),
    ("POST", "/v1/users/{user_id}/merge"): Expect("ingest", {"from_user_id": "rel-other"}),
    # read: serving
    ("GET", "/v1/items/{item_id}"): Expect("read"),
    ("GET", "/v1/users/{user_id}"): Expect("read"),
    ("GET", "/v1/users/{user_id}/recommendations"): Expect("read"),
    ("GET", "/v1/items/{item_id}/similar"): Expect("read"),
    ("POST", "/v1/recommendations/session"): Expect("read", {"item_ids": ["rel-i"]}),
    ("GET", "/v1/users/{user_id}/similar"): Expect("read"),
    ("GET", "/v1/users/{user_id}/propensity"): Expect("read"),
    ("POST", "/v1/propensity"): Expect("read", {"user_ids": ["rel-u"]}),
    ("GET", "/v1/users/{user_id}/value"): Expect("read"),
    ("POST", "/v1/value"): Expect("read", {"user_ids": ["rel-u"]}),
    ("GET", "/v1/audiences"): Expect("read"),
    ("GET", "/v1/items/{item_id}/audience"): Expect("read"),
    ("POST", "/v1/audiences/lookalike"): Expect("read", {"user_ids": ["rel-u"]}),
    ("GET", "/v1/models"): Expect("read"),
    ("POST", "/v1/campaigns/export"): Expect("read", {"audience": {"user_ids": ["rel-u"]}}),
    # admin: destructive or personal-data operations
    ("DELETE", "/v1/users/{user_id}"): Expect("admin"),
    ("GET", "/v1/users/{user_id}/export"): Expect("admin"),
    ("POST", "/v1/models/rebuild"): Expect("admin"),
    # admin: merchandising (placements steer what every shopper sees)
    ("PUT", "/v1/placements/{name}"): Expect("admin", {"n": 5}),
    ("GET", "/v1/placements"): Expect("admin"),
    ("GET", "/v1/placements/{name}"): Expect("admin"),
    ("DELETE", "/v1/placements/{name}"): Expect("admin"),
    # admin: experiments (they change what a share of shoppers is served, and read their behaviour)
    ("POST", "/v1/experiments"): Expect("admin", {"name": "rel", "placement": "rel-placement", "variants": []}),
    ("GET", "/v1/experiments"): Expect("admin"),
    ("GET", "/v1/experiments/{experiment_id}"): Expect("admin"),
    ("POST", "/v1/experiments/{experiment_id}/stop"): Expect("admin"),
    ("GET", "/v1/experiments/{experiment_id}/results"): Expect("admin"),
    # admin: campaigns (webhooks carry shoppers' data to other systems; triggers decide who gets one)
    ("POST", "/v1/webhooks"): Expect("admin", {"url": "https://93.184.215.14/hook", "events": ["*"]}),  # never sent
    ("GET", "/v1/webhooks"): Expect("admin"),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Expect("admin"),
    ("POST", "/v1/webhooks/{webhook_id}/enable"): Expect("admin"),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Expect("admin"),
    ("PUT", "/v1/triggers/{name}"): Expect("admin", {"kind": "cart_abandoned", "delay_seconds": 60}),
    ("GET", "/v1/triggers"): Expect("admin"),
    ("GET", "/v1/triggers/{name}"): Expect("admin"),
    ("DELETE", "/v1/triggers/{name}"): Expect("admin"),
}


def v1_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API route under /v1, through included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as a tree
        flat = [(r.methods, r.path) for r in app.routes if isinstance(r, APIRoute)]
    else:
        flat = [
            (rc.methods, rc.path) for rc in iter_route_contexts(app.router.routes)
            if isinstance(rc.original_route, APIRoute)
        ]
    return sorted(
        (method, path) for methods, path in flat if path and path.startswith("/v1/") for method in methods or ()
        if method != "HEAD"
    )


def _url(path: str) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: f"rel-{m.group(1).replace('_id', '')}-1", path)


def _call(client: TestClient, method: str, path: str, expect: Expect, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers, "params": expect.query}
    if expect.body is not None:
        kwargs["json"] = expect.body
    return client.request(method, _url(path), **kwargs).status_code


def test_every_v1_route_is_classified(client: TestClient) -> None:
    unlisted = [route for route in v1_routes(client.app) if route not in ROUTES]  # type: ignore[arg-type]
    assert not unlisted, f"classify these routes in ROUTES (scope they require): {unlisted}"


def test_scopes_on_every_route(client: TestClient, scoped_keys: dict[str, str]) -> None:
    walked = [route for route in v1_routes(client.app) if route in ROUTES]  # type: ignore[arg-type]
    assert walked, "no /v1 routes found"
    failures: list[str] = []
    for method, path in walked:
        expect = ROUTES[(method, path)]
        status = _call(client, method, path, expect, {"Authorization": ""})
        if status != 401:
            failures.append(f"{method} {path} without a key: {status}, expected 401")
        for scope in SCOPES:
            status = _call(client, method, path, expect, {"Authorization": f"Bearer {scoped_keys[scope]}"})
            allowed = scope in (expect.scope, "admin", *expect.also)
            if allowed and status in (401, 403):
                failures.append(f"{method} {path} with `{scope}`: {status}, expected access")
            if not allowed and status != 403:
                failures.append(f"{method} {path} with `{scope}`: {status}, expected 403")
            if status >= 500 and status != 503:
                failures.append(f"{method} {path} with `{scope}`: server error {status}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_revoked_or_unknown_key_is_401_everywhere(client: TestClient, header: str) -> None:
    value = "sm_unknown" if header == "X-API-Key" else "Bearer sm_unknown"
    for method, path in v1_routes(client.app):  # type: ignore[arg-type]
        if (method, path) in ROUTES:
            status = _call(client, method, path, ROUTES[(method, path)], {"Authorization": "", header: value})
            assert status == 401, f"{method} {path}: {status}"
