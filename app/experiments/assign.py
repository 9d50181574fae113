"""Deterministic assignment: hash(experiment id, salt, shopper) onto [0, 1), cut by the weights.

No state is stored, so every API process agrees and a shopper keeps their variant for the whole run.
Merging an anonymous id into a known one moves the history to the known id, and requests name the
known id from then on: the hash of the surviving id is the variant the known shopper always had.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate


def unit(experiment_id: int, salt: str, user_id: str) -> float:
    digest = hashlib.blake2b(f"{experiment_id}:{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def bounds(weights: Sequence[float]) -> list[float]:
    """The cumulative shares, the last exactly 1."""
    total = sum(weights)
    cuts = [c / total for c in accumulate(weights)]
    cuts[-1] = 1.0
    return cuts


def variant_index(experiment_id: int, salt: str, user_id: str, cuts: Sequence[float]) -> int:
    return min(bisect_right(cuts, unit(experiment_id, salt, user_id)), len(cuts) - 1)
