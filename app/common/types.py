"""Validated field types shared by every request schema."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=ID_PATTERN),
]
"""An external id: 1-256 characters, no control characters, not only whitespace."""

MAX_PROPERTIES_BYTES = 8192
MAX_PROPERTIES_DEPTH = 4


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    if _depth(value) > MAX_PROPERTIES_DEPTH:
        raise ValueError(f"nested deeper than {MAX_PROPERTIES_DEPTH} levels")
    try:
        encoded = json.dumps(value, allow_nan=False)
        size = len(encoded)
    except ValueError as exc:
        raise ValueError("must not contain NaN or Infinity") from exc
    if "\\u0000" in encoded:
        raise ValueError("must not contain NUL characters")
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"larger than {MAX_PROPERTIES_BYTES} bytes as JSON")
    return value


BoundedJSON = Annotated[dict[str, Any], AfterValidator(_bounded_json)]
"""A free-form JSON object with a depth and size limit (properties, attributes)."""

NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL
ShortText = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL)]
LongText = Annotated[str, StringConstraints(max_length=20_000, pattern=NO_NUL)]
