"""The hybrid scorer, shared by serving (one user) and validation (all users at once).

For user u with history strengths w_h and candidate item c:

    cf_raw[c]      = sum_h w_h * S_cf[h, c]          S_* = top-k neighbour matrices (rows = history item)
    content_raw[c] = sum_h w_h * S_content[h, c]
    cf, content    = raw / max |raw| over the user's candidates (in [-1, 1]; negative only from EASE)
    pop[c]         = popularity[c] / max(popularity)
    alpha_c        = alpha * n_c / (n_c + evidence_c)   n_c = users with evidence for c; cold -> content
    total[c]       = alpha_c * cf[c] + (1 - alpha_c) * content[c] + pop_weight * pop[c]

Candidates are the items with a non-zero CF or content score plus the `n_popular` most popular
items (so a user with no history still gets popularity). `score_user` (serving) and `score_block` /
`recommend_batch` (validation) compute the same numbers; a test checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

#: The popularity weight of a blend that serves the popularity ranking (the other scores are at most 1
#: apart): validation's fallback and an experiment's `popularity` variant.
POPULARITY_ONLY = 1000.0


@dataclass(frozen=True)
class HybridConfig:
    """Blend settings (see the module docstring for the formula).

    Every field but n_popular is re-chosen per shop by `validate` at every rebuild (`algo_grid`);
    the defaults are the starting point of that search and what a shop too small to validate gets:
    no decay by age, the cheapest history read (the newest `history_limit` = 25 entries, the n-th
    most recent weighing 0.5 ** (n / history_half_life_events)), evidence_c = 1 (an item nobody
    touched yet ranks on content), and pop_weight 0 (popularity only fills the candidate list for
    cold users and short histories, it does not re-rank a warm user's candidates).
    """

    alpha: float = 0.9
    evidence_c: float = 1.0
    pop_weight: float = 0.0
    pop_half_life_days: float = 30.0
    history_half_life_days: float = float("inf")
    history_half_life_events: float = 8.0
    n_popular: int = 200
    history_limit: int = 25


@dataclass(frozen=True)
class UserScores:
    """Scores of one user's candidates, all arrays of length m, sorted by `total` descending.

    items: int32[m] candidate item indices; total, cf, content, popularity: float32[m] (the three
    sources normalised to [0, 1] before blending); reason: int32[m] the history item that contributed
    most to the candidate's total (-1 when it came from popularity alone).
    """

    items: NDArray[np.int32]
    total: NDArray[np.float32]
    cf: NDArray[np.float32]
    content: NDArray[np.float32]
    popularity: NDArray[np.float32]
    reason: NDArray[np.int32]


def top_popular(popularity: NDArray[np.floating], n: int) -> NDArray[np.intp]:
    """Indices of the n most popular items with positive popularity (unordered), intp[<= n]."""
    n = min(n, popularity.shape[0])
    if n <= 0:
        return np.zeros(0, dtype=np.intp)
    idx = np.argpartition(-popularity, n - 1)[:n] if n < popularity.shape[0] else np.arange(n)
    return idx[popularity[idx] > 0]


def _rows(a: NDArray[Any], h: int) -> NDArray[Any]:
    """Neighbour rows as a [h, k] array (k = 0 for an empty history)."""
    arr = np.asarray(a)
    return arr.reshape(h, -1) if h else arr.reshape(0, 0)


def _row_max(raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-row max |score| as a divisor, float64[b, 1]; 1 for rows that are all zero."""
    if not raw.shape[1]:
        return np.ones((raw.shape[0], 1))
    m = np.maximum(raw.max(axis=1, keepdims=True), -raw.min(axis=1, keepdims=True))
    return np.where(m > 0, m, 1.0)


def _alpha(alpha: float, evidence: NDArray[np.floating], c: float) -> NDArray[np.float64]:
    ev = evidence.astype(np.float64)
    return alpha * (ev / (ev + c)) if c > 0 else np.full(ev.shape, alpha)


def score_user(
    history_items: NDArray[np.integer],
    history_weights: NDArray[np.floating],
    cf_indices: NDArray[np.integer],
    cf_scores: NDArray[np.floating],
    content_indices: NDArray[np.integer],
    content_scores: NDArray[np.floating],
    evidence: NDArray[np.floating],
    popularity: NDArray[np.floating],
    config: HybridConfig,
    exclude: NDArray[np.integer] | None = None,
    allowed: NDArray[np.bool_] | None = None,
    n: int | None = None,
    popular: NDArray[np.intp] | None = None,
) -> UserScores:
    """Hybrid scores for one user (the serving path).

    Parameters
    ----------
    history_items : int[h] item indices of the history; history_weights : float[h] their strengths.
    cf_indices, cf_scores : int[h, k], float[h, k] CF neighbour rows of the history items (-1 padded);
        a row lists an item at most once, as top-k rows do (else the reason may not be the largest
        contributor).
    content_indices, content_scores : int[h, k2], float[h, k2] content neighbour rows.
    evidence : float[n_items] users with evidence per item.  popularity : float[n_items].
    exclude : int[e] items never returned (seen/purchased).  allowed : bool[n_items] eligibility mask.
    n : keep the n best (None: all candidates).
    popular : `top_popular(popularity, config.n_popular)` when the caller keeps it (it depends on the
        model version only).
    """
    w = np.asarray(history_weights, dtype=np.float64)[:, None]
    h = len(history_items)
    n_items = len(popularity)
    cf_idx, ct_idx = _rows(cf_indices, h), _rows(content_indices, h)
    cf_val, ct_val = w * _rows(cf_scores, h), w * _rows(content_scores, h)
    # source entries, CF rows then content rows, row by row (the order that breaks ties between
    # reasons), each with its slot: the history row it came from, content rows after the CF ones
    cf_at = np.flatnonzero((cf_idx >= 0) & (cf_val != 0))
    ct_at = np.flatnonzero((ct_idx >= 0) & (ct_val != 0))
    src_idx = np.concatenate([cf_idx.ravel()[cf_at], ct_idx.ravel()[ct_at]]).astype(np.intp)
    src_val = np.concatenate([cf_val.ravel()[cf_at], ct_val.ravel()[ct_at]])
    src_slot = np.concatenate([cf_at // max(cf_idx.shape[1], 1), ct_at // max(ct_idx.shape[1], 1) + h])
    n_cf = len(cf_at)

    pop_items = top_popular(popularity, config.n_popular) if popular is None else popular
    # the candidates (sorted) and each source entry's candidate number, by a mask over the item range
    mask = np.zeros(n_items, dtype=bool)
    mask[src_idx] = True
    mask[pop_items] = True
    items = np.flatnonzero(mask)
    m = len(items)
    lookup = np.empty(n_items, dtype=np.intp)
    lookup[items] = np.arange(m)
    inv_src = lookup[src_idx]
    cf_raw = np.bincount(inv_src[:n_cf], weights=src_val[:n_cf], minlength=m)
    ct_raw = np.bincount(inv_src[n_cf:], weights=src_val[n_cf:], minlength=m)
    cf_max = float(np.abs(cf_raw).max(initial=0.0)) or 1.0
    ct_max = float(np.abs(ct_raw).max(initial=0.0)) or 1.0
    cf, ct = cf_raw / cf_max, ct_raw / ct_max
    pop_max = float(popularity.max()) if popularity.size else 0.0
    pop = popularity[items].astype(np.float64) / pop_max if pop_max > 0 else np.zeros(m)
    a = _alpha(config.alpha, evidence[items], config.evidence_c)
    total = a * cf + (1.0 - a) * ct + config.pop_weight * pop

    keep = (cf_raw != 0) | (ct_raw != 0)
    keep[lookup[pop_items]] = True
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, dtype=np.intp)
        ex = ex[(ex >= 0) & (ex < n_items)]
        keep[lookup[ex[mask[ex]]]] = False
    if allowed is not None:
        keep &= allowed[items]
    rank = np.flatnonzero(keep)
    if n is not None and n < len(rank):
        # only the candidates at least as good as the n-th best (ties included) need sorting
        neg = -total[rank]
        rank = rank[neg <= np.partition(neg, n - 1)[n - 1]]
    rank = rank[np.argsort(-total[rank], kind="stable")][:n]
    return UserScores(
        items=items[rank].astype(np.int32),
        total=total[rank].astype(np.float32),
        cf=cf[rank].astype(np.float32),
        content=ct[rank].astype(np.float32),
        popularity=pop[rank].astype(np.float32),
        reason=_reasons(rank, inv_src, src_val, src_slot, n_cf, a, cf_max, ct_max, np.asarray(history_items)),
    )


def _reasons(
    rank: NDArray[np.intp],
    inv_src: NDArray[np.intp],
    src_val: NDArray[np.float64],
    src_slot: NDArray[np.intp],
    n_cf: int,
    a: NDArray[np.float64],
    cf_max: float,
    ct_max: float,
    history_items: NDArray[np.integer],
) -> NDArray[np.int32]:
    """Per ranked candidate, the history item with the largest blended contribution to its total (the
    first source entry holding it), -1 when nothing contributed positively. Only the returned
    candidates are looked at: the rest of the catalog never needs a reason."""
    h = len(history_items)
    reason = np.full(len(rank), -1, dtype=np.int32)
    if not h or not len(rank):
        return reason
    place = np.full(len(a), -1, dtype=np.intp)
    place[rank] = np.arange(len(rank))
    at = place[inv_src]
    entry = np.flatnonzero(at >= 0)
    cand = inv_src[entry]
    contrib = src_val[entry] * np.where(entry < n_cf, a[cand] / cf_max, (1.0 - a[cand]) / ct_max)
    # A neighbour row holds an item once, so a [candidate, slot] table has one entry per cell, and its
    # row-wise argmax (the first of equal maxima, slots in entry order) keeps the tie-break.
    table = np.full((len(rank), 2 * h), -np.inf)
    table[at[entry], src_slot[entry]] = contrib
    best = table.argmax(axis=1)
    won = table[np.arange(len(rank)), best] > 0
    reason[won] = history_items[best[won] % h]
    return reason


def propagate(history: sp.csr_matrix, s: sp.csr_matrix) -> NDArray[np.float64]:
    """history @ S as a dense float64[b, n_items] (cost ~ nnz(history) x k: both stay sparse)."""
    return np.asarray((history @ s).toarray(), dtype=np.float64)


@dataclass(frozen=True)
class Sources:
    """A block of users' normalised CF and content scores (the `score_user` cf/content arrays).

    cf, content: float32[b, n_items] raw / max |raw| per user; reached: bool[b, n_items] non-zero in
    either; blocked: bool[b, n_items] excluded items. Validation builds this once per CF matrix and
    user block, then `combine`s it for every blend setting (float32 halves the memory traffic of
    that inner loop; scores agree with `score_user` to ~1e-7 relative).
    """

    cf: NDArray[np.float32]
    content: NDArray[np.float32]
    reached: NDArray[np.bool_]
    blocked: NDArray[np.bool_] | None


def sources(
    cf_raw: NDArray[np.float64], ct_raw: NDArray[np.float64], exclude: sp.csr_matrix | None = None
) -> Sources:
    """Normalise raw block scores (float[b, n_items] = history @ S) into `Sources`."""
    cf_raw = np.asarray(cf_raw, dtype=np.float64)
    ct_raw = np.asarray(ct_raw, dtype=np.float64)
    reached = cf_raw != 0
    reached |= ct_raw != 0
    blocked = None
    if exclude is not None:
        blocked = np.zeros(cf_raw.shape, dtype=bool)
        ex = sp.coo_matrix(exclude)
        blocked[ex.row, ex.col] = True
    cf = (cf_raw / _row_max(cf_raw)).astype(np.float32)
    ct = (ct_raw / _row_max(ct_raw)).astype(np.float32)
    return Sources(cf, ct, reached, blocked)


def combine(
    src: Sources, evidence: NDArray[np.floating], popularity: NDArray[np.floating], config: HybridConfig
) -> NDArray[np.float32]:
    """Hybrid totals float32[b, n_items] from normalised sources; -inf = not a candidate / excluded."""
    a = _alpha(config.alpha, evidence, config.evidence_c).astype(np.float32)
    total = src.cf * a
    total += src.content * (1.0 - a)
    pop_max = float(popularity.max()) if popularity.size else 0.0
    if config.pop_weight and pop_max > 0:
        total += (config.pop_weight / pop_max * popularity.astype(np.float64)).astype(np.float32)
    candidate = src.reached.copy()
    candidate[:, top_popular(popularity, config.n_popular)] = True
    if src.blocked is not None:
        candidate &= ~src.blocked
    return np.where(candidate, total, -np.inf)  # faster than masked assignment on scattered masks


def score_block(
    history: sp.csr_matrix,
    cf: sp.csr_matrix,
    content: sp.csr_matrix,
    evidence: NDArray[np.floating],
    popularity: NDArray[np.floating],
    config: HybridConfig,
    exclude: sp.csr_matrix | None = None,
) -> NDArray[np.float32]:
    """Dense hybrid totals for a block of users, float32[b, n_items], -inf for non-candidates/excluded.

    Parameters
    ----------
    history : csr [b, n_items] history strengths (rows of the interaction matrix).
    cf, content : csr [n_items, n_items] neighbour matrices, `Neighbours.to_csr()`.
    exclude : csr [b, n_items], non-zero = never recommend to that user.
    """
    cf_raw = propagate(history, cf)
    ct_raw = propagate(history, content)
    return blend_dense(cf_raw, ct_raw, evidence, popularity, config, exclude)


def blend_dense(
    cf_raw: NDArray[np.float64],
    ct_raw: NDArray[np.float64],
    evidence: NDArray[np.floating],
    popularity: NDArray[np.floating],
    config: HybridConfig,
    exclude: sp.csr_matrix | None = None,
) -> NDArray[np.float32]:
    """`score_block` after the two products: cf_raw, ct_raw float[b, n_items] = history @ S."""
    return combine(sources(cf_raw, ct_raw, exclude), evidence, popularity, config)


def recommend_batch(
    history: sp.csr_matrix,
    cf: sp.csr_matrix,
    content: sp.csr_matrix,
    evidence: NDArray[np.floating],
    popularity: NDArray[np.floating],
    config: HybridConfig,
    n: int,
    exclude: sp.csr_matrix | None = None,
    block_users: int = 2048,
) -> NDArray[np.int32]:
    """Top-n item indices for every user, int32[n_users, n] best first, -1 padded (validation path)."""
    n_users = history.shape[0]
    out = np.full((n_users, n), -1, dtype=np.int32)
    for start in range(0, n_users, block_users):
        stop = min(n_users, start + block_users)
        ex = None if exclude is None else exclude[start:stop]
        total = score_block(history[start:stop], cf, content, evidence, popularity, config, ex)
        out[start:stop] = top_n(total, n)
    return out


#: `rank_keys`: the low 32 bits hold INT32_MAX - item; every key at or below -inf's is not a candidate.
_ITEM_MASK = np.int64(0x7FFFFFFF)
NOT_RANKED = np.int64(-0x7F800000 - 1) << np.int64(32) | _ITEM_MASK  # (-inf's ordered bits << 32) | any item


def rank_keys(scores: NDArray[np.floating], items: NDArray[np.integer]) -> NDArray[np.int64]:
    """int64 keys ordered as (float32 score descending, item ascending), the order of `score_user`'s
    stable sort: one integer partition and sort rank entries with their ties broken, also where ties
    straddle the n-th place (a float partition picks among those by position). A float32's bits,
    sign-flipped for negatives, order as the floats do."""
    bits = (np.asarray(scores, dtype=np.float32) + np.float32(0.0)).view(np.int32)  # -0.0 ranks as 0.0
    ordered = (bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))).astype(np.int64)
    return (ordered << np.int64(32)) | (_ITEM_MASK - np.asarray(items, dtype=np.int64))


def ranked_items(keys: NDArray[np.int64]) -> NDArray[np.int32]:
    """The items of `rank_keys` keys, -1 where the score was -inf (not a candidate) or a key is padding."""
    return np.where(keys > NOT_RANKED, _ITEM_MASK - (keys & _ITEM_MASK), -1).astype(np.int32)


def top_n(total: NDArray[np.floating], n: int) -> NDArray[np.int32]:
    """Top-n column indices per row of a dense score block, best first, -1 where the score is -inf.

    Ties are broken by the lower item index (as `score_user`'s stable sort does), also where they
    straddle the n-th place: a float partition keeps some of those by position, so the rows where it
    did are partitioned again on `rank_keys` (on the whole block, that was 1.5x slower).
    """
    b, n_items = total.shape
    kk = min(n, n_items)
    if kk < n_items:
        part = np.argpartition(total, n_items - kk, axis=1)[:, n_items - kk :]
        sc = np.take_along_axis(total, part, axis=1)
        cut = sc.min(axis=1, keepdims=True)
        straddle = np.flatnonzero(((total == cut).sum(axis=1) > (sc == cut).sum(axis=1)) & (cut[:, 0] > -np.inf))
        if len(straddle):
            keys = np.partition(rank_keys(total[straddle], np.arange(n_items)), n_items - kk, axis=1)
            part[straddle] = ranked_items(keys[:, n_items - kk :])
            sc[straddle] = np.take_along_axis(total[straddle], part[straddle], axis=1)
    else:
        part = np.tile(np.arange(n_items), (b, 1))
        sc = total
    order = np.lexsort((part, -sc), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    idx = np.where(np.isneginf(np.take_along_axis(sc, order, axis=1)), -1, idx)
    out = np.full((b, n), -1, dtype=np.int32)
    out[:, :kk] = idx
    return out
