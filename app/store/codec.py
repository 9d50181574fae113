"""Byte and JSON encodings of what Shopmind keeps in Redis. No pickle anywhere."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

HISTORY_SEP = "|"


def text(raw: Any) -> str:
    """A Redis reply (bytes, as this client returns them) as str."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def encode_history(ts: float, event_type: str, item_id: str, value: float | None = None) -> str:
    """One history entry "ts|type|value|item". The item id goes last: it may contain the separator."""
    shown = "" if value is None or value != value else f"{value:g}"
    return f"{ts:.3f}{HISTORY_SEP}{event_type}{HISTORY_SEP}{shown}{HISTORY_SEP}{item_id}"


def decode_history(entry: bytes | str) -> tuple[float, str, float | None, str]:
    """(ts, type, value or None, item_id) of one history entry."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    ts, event_type, value, item_id = text.split(HISTORY_SEP, 3)
    return float(ts), event_type, float(value) if value else None, item_id


def item_meta_json(
    categories: list[str], price: float | None, available: bool, title: str | None, brand: str | None = None,
    tags: Sequence[str] = (), attributes: Mapping[str, Any] | None = None,
) -> str:
    """The serving metadata of an item; "g" tags and "x" its scalar attributes (placement rules match
    them) only when there are some, so a plain catalog's entries stay as small as before."""
    meta: dict[str, Any] = {"c": categories, "p": price, "a": available, "t": title, "b": brand}
    if tags:
        meta["g"] = list(tags)
    scalars = {k: v for k, v in (attributes or {}).items() if isinstance(v, str | int | float | bool)}
    if scalars:
        meta["x"] = scalars
    return json.dumps(meta, separators=(",", ":"))


def new_meta_epoch() -> str:
    """A value for `Keys.item_meta_epoch` after a write to `item_meta`: unique, never repeated."""
    return secrets.token_hex(8)


def decode_item_meta(raw: bytes | str | None) -> dict[str, Any] | None:
    return None if raw is None else dict(orjson.loads(raw))


def score_pairs(raw: list[Any]) -> list[tuple[bytes, float]]:
    """(member, score) pairs of a raw `ZREVRANGE ... WITHSCORES` reply, RESP3 ([[m, s], ...]) or RESP2
    ([m, s, ...]).

    redis-py's own reply parsing turns every RESP3 double back into text and then into a float
    again, per member; on the serving path that costs more than the command itself.
    """
    if raw and not isinstance(raw[0], list):
        pairs = iter(raw)
        return [(member, float(score)) for member, score in zip(pairs, pairs, strict=True)]
    return [(member, float(score)) for member, score in raw]


def pack_neighbours(indices: NDArray[np.int32], scores: NDArray[np.float32]) -> bytes:
    """One neighbour row: int32 indices then float32 scores, same length (padding entries are -1)."""
    return np.ascontiguousarray(indices, dtype="<i4").tobytes() + np.ascontiguousarray(
        scores, dtype="<f4"
    ).tobytes()


def unpack_neighbours(raw: bytes | str) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    k = len(raw) // 8
    return (
        np.frombuffer(raw, dtype="<i4", count=k),
        np.frombuffer(raw, dtype="<f4", count=k, offset=4 * k),
    )
