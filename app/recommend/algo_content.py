"""Content item-item similarity: sublinear TF-IDF over item documents, cosine top-k.

Why hashed features instead of `TfidfVectorizer`'s vocabulary: the incremental path (one upserted
item against the catalog, in the API) must vectorise a new document exactly as the batch did. With
`HashingVectorizer` the term -> column map is a pure function, so the only fitted state is the idf
vector (float32[n_features]) and the L2-normalised item matrix, both plain arrays the worker can
publish as bytes (no pickled vocabulary dict). Up to hash collisions (n_features = 2**20 by default)
the result equals TfidfVectorizer(sublinear_tf=True) with its default smooth idf; a test checks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer

from app.recommend.algo_neighbours import DEFAULT_BLOCK_BYTES, Neighbours, blockwise_topk, topk_dense

DEFAULT_N_FEATURES = 2**20
_SLUG = re.compile(r"[\W_]+", re.UNICODE)


def _slug(value: Any) -> str:
    return _SLUG.sub("_", str(value).lower()).strip("_")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def item_document(item: Mapping[str, Any]) -> str:
    """One text document per item: free text plus prefixed structured tokens.

    title and description are kept as words; each category becomes `cat_<slug>` (a path such as
    "Shoes > Running" also yields its parents: `cat_shoes cat_shoes_running`), tags `tag_<slug>`,
    the brand `brand_<slug>`, each attribute value `attr_<key>_<value>`. The prefixes keep structured
    tokens from colliding with title words ("apple" the word vs `brand_apple`).
    """
    parts: list[str] = [str(item.get("title") or ""), str(item.get("description") or "")]
    for cat in _as_list(item.get("categories")):
        path = [_slug(p) for p in re.split(r"[>/|]", str(cat)) if _slug(p)]
        parts.extend("cat_" + "_".join(path[: depth + 1]) for depth in range(len(path)))
    parts.extend("tag_" + _slug(t) for t in _as_list(item.get("tags")) if _slug(t))
    if item.get("brand"):
        parts.append("brand_" + _slug(item["brand"]))
    attributes = item.get("attributes") or {}
    for key, value in attributes.items():
        parts.extend(f"attr_{_slug(key)}_{_slug(v)}" for v in _as_list(value) if _slug(v))
    return " ".join(p for p in parts if p)


def _hasher(n_features: int) -> HashingVectorizer:
    return HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None, dtype=np.float64)


def _tf(docs: Sequence[str], n_features: int) -> sp.csr_matrix:
    counts = sp.csr_matrix(_hasher(n_features).transform(docs))
    counts.data = 1.0 + np.log(counts.data)  # sublinear tf
    return counts


def vectorize(docs: Sequence[str], idf: NDArray[np.floating]) -> sp.csr_matrix:
    """Documents -> L2-normalised TF-IDF rows, csr float32[len(docs), n_features]."""
    x = _tf(docs, idf.shape[0])
    x.data *= idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)
    return x.astype(np.float32)


@dataclass(frozen=True)
class ContentModel:
    """Fitted content state.

    idf:    float32[n_features]         smooth idf, log((1 + n_items) / (1 + df)) + 1
    matrix: csr float32[n_items, n_features]  L2-normalised TF-IDF row per catalog item
    """

    idf: NDArray[np.float32]
    matrix: sp.csr_matrix

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[0])

    @cached_property
    def inverted(self) -> sp.csc_matrix:
        """The same matrix feature-major (an inverted index), built once on first use."""
        return sp.csc_matrix(self.matrix)


def fit_content(docs: Sequence[str], n_features: int = DEFAULT_N_FEATURES) -> ContentModel:
    """Fit idf on the catalog documents (one per item index) and vectorise them."""
    tf = _tf(docs, n_features)
    df = np.bincount(tf.indices, minlength=n_features)
    n = len(docs)
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    return ContentModel(idf=idf, matrix=vectorize(docs, idf))


#: Terms in more than this share of the catalog (and at least _COMMON_MIN_DF items) are "common".
_COMMON_FRACTION = 0.05
_COMMON_MIN_DF = 1000
_MAX_COMMON = 64


def content_neighbours(
    model: ContentModel, k: int = 100, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Neighbours:
    """Cosine top-k over the catalog, block-wise; Neighbours over items, int32[n_items, k].

    Exact, but without the all-pairs product: a term most items carry ("new", a store-wide
    category) makes nearly every pair similar by a sliver, so M M^T would be dense (10^10 entries
    at 100k items). Pairs are scored in full only where they share a rarer term; a pair sharing
    common terms only scores at most bound[i] = sum_t M[i, t] max_j M[j, t] over the common terms,
    so an item whose k-th candidate already reaches that bound has its exact list. The few others
    are recomputed against the whole catalog.
    """
    m = model.matrix
    n = m.shape[0]
    df = np.bincount(m.indices, minlength=m.shape[1])
    common = np.flatnonzero(df > max(_COMMON_MIN_DF, _COMMON_FRACTION * n))
    common = common[np.argsort(-df[common], kind="stable")][:_MAX_COMMON]
    mt = sp.csr_matrix(m.T)
    if len(common) == 0:
        return blockwise_topk(n, n, k, lambda s, e: m[s:e] @ mt, block_bytes=block_bytes)
    slot = np.full(m.shape[1], -1)
    slot[common] = np.arange(len(common))
    entry_slot = slot[m.indices]
    is_common = entry_slot >= 0
    dense_common = np.zeros((len(common), n), dtype=np.float32)  # term-major: one row per common term
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    dense_common[entry_slot[is_common], rows[is_common]] = m.data[is_common]
    rare = sp.csr_matrix((np.where(is_common, 0.0, m.data).astype(np.float32), m.indices.copy(), m.indptr.copy()),
                         shape=m.shape)
    rare.eliminate_zeros()
    rare_t = sp.csr_matrix(rare.T)

    def block(start: int, stop: int) -> sp.csr_matrix:
        cand = sp.csr_matrix(rare[start:stop] @ rare_t)  # pairs sharing a rare term
        r = np.repeat(np.arange(start, stop), np.diff(cand.indptr))
        for term in dense_common:
            cand.data += term[r] * term[cand.indices]
        return cand

    out = blockwise_topk(n, n, k, block, block_bytes=block_bytes)
    bound = dense_common.max(axis=1) @ dense_common
    redo = np.flatnonzero(bound > out.scores[:, k - 1])
    if len(redo):
        exact = blockwise_topk(len(redo), n, k, lambda s, e: m[redo[s:e]] @ mt, block_bytes=block_bytes, row_ids=redo)
        out.indices[redo], out.scores[redo] = exact.indices, exact.scores
    return out


def similar_to_document(
    doc: str, model: ContentModel, k: int = 100, self_index: int | None = None
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Content neighbours of ONE new or updated item against the fitted catalog.

    The item-upsert path: the query's terms are looked up in the inverted index (`model.inverted`)
    and their postings summed per item, so the cost follows the postings of those few terms, not the
    catalog (a few ms for 100k items; the CSC copy is built once per model, ~0.2 s at 100k items).
    `self_index` (the item's own row, when it already exists) is excluded. The idf stays that of the
    last rebuild, and other items' rows learn the new item only at the next rebuild.

    Returns
    -------
    indices int32[k] (-1 padded), scores float32[k] sorted descending, positive only.
    """
    q = vectorize([doc], model.idf)
    inv = model.inverted
    starts, stops = inv.indptr[q.indices], inv.indptr[q.indices + 1]
    lengths = stops - starts
    # gather the postings of the query's terms and add them up per item: cost ~ postings, not catalog
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    postings = offsets + np.arange(int(lengths.sum()))
    weights = inv.data[postings].astype(np.float64) * np.repeat(q.data.astype(np.float64), lengths)
    counts = np.bincount(inv.indices[postings], weights=weights, minlength=model.n_items)
    sims: NDArray[np.float64] = np.asarray(counts, dtype=np.float64).reshape(1, -1)
    ids = None if self_index is None else np.array([self_index])
    idx, sc = topk_dense(sims, k, ids)
    return idx[0], sc[0]
