"""Scoring the validation users for many trials (CF matrix x blend) -> top-20 lists -> metrics.

Two layouts of the same numbers. Small catalogs: every user against every item in one dense block,
the normalised sources cached across trials (the fastest there is when users x items fits in a few
hundred MB). Large catalogs: each user's candidate items only (`algo_candidates`), so the cost follows
the neighbour lists instead of the catalog (20k users x 100k items could not be scored densely).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_blend import HybridConfig, Sources, combine, propagate, sources, top_n, top_popular
from app.recommend.algo_candidates import Candidates, popular_top_n
from app.recommend.algo_metrics import hits_matrix, ndcg_at_k, ranking_metrics

Trial = tuple[str, sp.csr_matrix | None, bool, HybridConfig]  # name, CF matrix, use content, blend

#: Dense scoring when the validation users x items fit this budget (about six float arrays of it).
DENSE_BYTES = 256 * 1024 * 1024


class Scorer(Protocol):
    per_user: dict[str, NDArray[np.float64]]
    """Each trial of the last run: NDCG@10 per validation user (for paired comparisons)."""

    def run(self, trials: Sequence[Trial]) -> dict[str, dict[str, float]]:
        """trials: (name, CF matrix or None, use content, blend) -> {name: ranking metrics}."""


def make_scorer(history: sp.csr_matrix, seen: sp.csr_matrix, relevant: sp.csr_matrix, content: sp.csr_matrix,
                evidence: NDArray[np.float32], pop: NDArray[np.float32]) -> Scorer:
    """history, seen, relevant: csr [users, n_items] of the validation users; content: csr [n_items,
    n_items] neighbour matrix; evidence, pop: float32[n_items]."""
    if history.shape[0] * history.shape[1] * 8 * 6 <= DENSE_BYTES:
        return DenseScorer(history, seen, relevant, content, evidence, pop)
    return CandidateScorer(history, seen, relevant, content, evidence, pop)


def _metrics(top: NDArray[np.int32], relevant: sp.csr_matrix) -> tuple[dict[str, float], NDArray[np.float64]]:
    """Mean ranking metrics, and NDCG@10 per user (every validation user has a relevant item)."""
    out = ranking_metrics(top, relevant, (10, 20))
    out.pop("users")
    return out, ndcg_at_k(hits_matrix(top, relevant), np.diff(relevant.indptr), 10)


class DenseScorer:
    """All users in one dense block; normalised sources cached per (CF matrix, use content), so the
    alpha and evidence_c stages do not redo the sparse products of the CF stage."""

    def __init__(self, history: sp.csr_matrix, seen: sp.csr_matrix, relevant: sp.csr_matrix,
                 content: sp.csr_matrix, evidence: NDArray[np.float32], pop: NDArray[np.float32]) -> None:
        self.history, self.seen, self.relevant, self.content = history, seen, relevant, content
        self.evidence, self.pop = evidence, pop
        self._cache: dict[tuple[int, bool], tuple[sp.csr_matrix | None, Sources]] = {}
        self._content_raw: NDArray[np.float64] | None = None

    def _sources(self, s_cf: sp.csr_matrix | None, use_content: bool) -> Sources:
        key = (id(s_cf), use_content)
        if key not in self._cache:
            zero = np.zeros(self.history.shape)
            ct_raw = zero
            if use_content:
                if self._content_raw is None:
                    self._content_raw = propagate(self.history, self.content)
                ct_raw = self._content_raw
            cf_raw = zero if s_cf is None else propagate(self.history, s_cf)
            self._cache = {k: v for k, v in self._cache.items() if k[0] == id(None)}  # keep few
            self._cache[key] = (s_cf, sources(cf_raw, ct_raw, self.seen))  # held: its id stays unique
        return self._cache[key][1]

    def run(self, trials: Sequence[Trial]) -> dict[str, dict[str, float]]:
        out, self.per_user = {}, {}
        for name, s_cf, use_content, hyb in sorted(trials, key=lambda t: (id(t[1]), t[2])):
            top = top_n(combine(self._sources(s_cf, use_content), self.evidence, self.pop, hyb), 20)
            out[name], self.per_user[name] = _metrics(top, self.relevant)
        return out


class CandidateScorer:
    """Each user on their candidate items only; the candidates of the last CF matrix and of content
    alone are kept between runs (the alpha and evidence_c stages reuse those of the CF stage)."""

    def __init__(self, history: sp.csr_matrix, seen: sp.csr_matrix, relevant: sp.csr_matrix,
                 content: sp.csr_matrix, evidence: NDArray[np.float32], pop: NDArray[np.float32]) -> None:
        self.history, self.seen, self.relevant, self.content = history, seen, relevant, content
        self.evidence, self.pop = evidence, pop
        self._cache: dict[tuple[int, bool, int], tuple[sp.csr_matrix | None, Candidates]] = {}

    def _candidates(self, s_cf: sp.csr_matrix | None, use_content: bool, n_popular: int) -> Candidates:
        key = (id(s_cf), use_content, n_popular)
        if key not in self._cache:
            empty = sp.csr_matrix(self.history.shape, dtype=np.float64)
            cf_raw = empty if s_cf is None else self.history @ s_cf
            ct_raw = self.history @ self.content if use_content else empty
            built = Candidates.build(cf_raw, ct_raw, top_popular(self.pop, n_popular), self.seen)
            self._cache = {k: v for k, v in self._cache.items() if k[0] == id(None)}  # keep few
            self._cache[key] = (s_cf, built)  # the matrix is held so that its id stays unique
        return self._cache[key][1]

    def run(self, trials: Sequence[Trial]) -> dict[str, dict[str, float]]:
        out, self.per_user = {}, {}
        for name, s_cf, use_content, hyb in sorted(trials, key=lambda t: (id(t[1]), t[2])):
            if s_cf is None and not use_content:
                top = popular_top_n(self.pop, hyb, self.seen, 20)
            else:
                cands = self._candidates(s_cf, use_content, hyb.n_popular)
                top = cands.top_n(cands.totals(self.evidence, self.pop, hyb), 20)
            out[name], self.per_user[name] = _metrics(top, self.relevant)
        return out
