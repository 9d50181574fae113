"""The recommendation stage of a rebuild: content + CF + user-user neighbours, validated, published."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_content import ContentModel, content_neighbours, fit_content, item_document
from app.recommend.algo_matrix import DEFAULT_WEIGHTS, interactions
from app.recommend.algo_neighbours import Neighbours
from app.recommend.algo_users import pearson_user_neighbours
from app.recommend.algo_validate import FittedModel, RecommenderConfig, fit, validate
from app.settings import Settings
from app.store.versions import VersionWriter
from app.worker.load import Snapshot

log = logging.getLogger(__name__)

MIN_VALIDATION_EVENTS = 50
USER_NN_MAX_USERS = 20_000  # Pearson is quadratic in users: lookalikes for the most active ones


@dataclass(frozen=True)
class RecommenderBuild:
    config: RecommenderConfig
    fitted: FittedModel
    content: ContentModel
    content_nn: Neighbours
    user_nn: Neighbours
    user_rows: NDArray[np.int64]  # user index of each user_nn row
    metrics: dict[str, Any]

    def meta(self) -> dict[str, str]:
        return recommender_meta(self.config)


def recommender_meta(config: RecommenderConfig) -> dict[str, str]:
    return {
        "recommender_config": json.dumps(dataclasses.asdict(config)),
        "alpha": str(config.hybrid.alpha),
        "cf_variant": config.cf.variant,
    }


def build_recommender(snapshot: Snapshot, settings: Settings) -> RecommenderBuild:
    log_ = snapshot.log
    k = settings.neighbours_k
    content = fit_content([item_document(item) for item in snapshot.catalog.items])
    content_nn = content_neighbours(content, k=k)
    config, metrics = choose_config(log_, content_nn, settings)
    fitted = fit(log_, config, snapshot.now)

    # Lookalikes: Pearson over the interaction strengths of the most active users. They need graded
    # strengths of every event type whatever validation chose for CF: Pearson over binary rows (all
    # 1.0) has no variance and finds nobody, and a purchase-only matrix leaves most shoppers rowless.
    x = fitted.interactions
    graded = replace(config.interaction, weights=dict(DEFAULT_WEIGHTS), binary=False)
    if graded != config.interaction:
        x = interactions(log_, graded, snapshot.now)
    activity = np.diff(x.indptr)
    rows = np.flatnonzero(activity >= 2)
    if len(rows) > USER_NN_MAX_USERS:
        rows = np.sort(rows[np.argsort(-activity[rows], kind="stable")[:USER_NN_MAX_USERS]])
    user_nn = pearson_user_neighbours(x[rows], k=min(k, 50)) if len(rows) > 1 else Neighbours.empty(0, 1)
    return RecommenderBuild(config, fitted, content, content_nn, user_nn, rows.astype(np.int64), metrics)


def choose_config(
    log_: EventLog, content_nn: Neighbours, settings: Settings
) -> tuple[RecommenderConfig, dict[str, Any]]:
    """The configuration validation chooses on `log_` (or the defaults on too little data), and its metrics."""
    base = RecommenderConfig()  # the neutral start of the search; validation chooses every constant
    metrics: dict[str, Any] = {}
    if len(log_) < MIN_VALIDATION_EVENTS:
        metrics["validation_skipped"] = f"fewer than {MIN_VALIDATION_EVENTS} events"
        return base, metrics
    try:
        result = validate(log_, content_nn, base, max_history=settings.history_length)
    except ValueError as exc:  # too little data to hold anything out: keep the defaults
        metrics["validation_skipped"] = str(exc)
        return base, metrics
    metrics = dict(result.metrics)
    metrics["timings"] = {name: round(s, 3) for name, s in result.timings.items()}
    return result.config, metrics


def _rows(ids: NDArray[np.object_], nn: Neighbours, row_ids: NDArray[np.int64] | None = None) -> Any:
    """(entity id, `pack_neighbours` bytes) of every non-empty row, built in bulk: each row's valid
    indices and then its scores are laid out contiguously in one buffer, which is sliced per row."""
    width = (nn.indices >= 0).sum(axis=1)  # -1 padding sits at the end of each row
    rows = np.flatnonzero(width)
    width = width[rows]
    keep = np.arange(nn.k)[None, :] < width[:, None]
    ends = np.cumsum(2 * width)
    within = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
    first = np.repeat(ends - 2 * width, width) + within  # where each valid index goes
    flat = np.empty(int(ends[-1]) if len(ends) else 0, dtype="<i4")
    flat[first] = nn.indices[rows][keep]
    flat[first + np.repeat(width, width)] = nn.scores[rows].astype("<f4").view("<i4")[keep]
    buf = flat.tobytes()
    entity = ids[rows if row_ids is None else row_ids[rows]]
    for e, stop, w in zip(entity.tolist(), (4 * ends).tolist(), width.tolist(), strict=True):
        yield str(e), buf[stop - 8 * w : stop]


def publish_recommender(writer: VersionWriter, snapshot: Snapshot, build: RecommenderBuild) -> None:
    log_ = snapshot.log
    publish_models(writer, log_.item_ids, snapshot.catalog.eligible, build.fitted.evidence, build.fitted.popularity,
                   build.fitted.cf, build.content, build.content_nn)  # fmt: skip
    # user-user neighbours point at dense user indices; the id table travels with them
    writer.blob("users", "\n".join(map(str, log_.user_ids)).encode())
    publish_lookalikes(writer, log_.user_ids[build.user_rows], build.user_nn, build.user_rows)


def publish_models(
    writer: VersionWriter, item_ids: NDArray[np.object_], eligible: NDArray[np.bool_], evidence: NDArray[np.float32],
    popularity: NDArray[np.float32], cf: Neighbours, content: ContentModel, content_nn: Neighbours,
) -> None:
    """The item-side parts of the recommender, and the fitted content state, so the API can place a new
    item among the catalog at once."""
    writer.blob("items", "\n".join(map(str, item_ids)).encode())
    writer.blob("evidence", evidence.astype("<f4").tobytes())
    writer.blob("popularity", popularity.astype("<f4").tobytes())
    writer.blob("eligible", eligible.astype(np.uint8).tobytes())
    writer.hash("cf", _rows(item_ids, cf))
    writer.hash("content", _rows(item_ids, content_nn))
    m = content.matrix
    writer.blob("content_idf", content.idf.astype("<f4").tobytes())
    writer.blob("content_indptr", m.indptr.astype("<i8").tobytes())
    writer.blob("content_indices", m.indices.astype("<i4").tobytes())
    writer.blob("content_data", m.data.astype("<f4").tobytes())


def publish_lookalikes(
    writer: VersionWriter, row_ids: NDArray[np.object_], user_nn: Neighbours, user_rows: NDArray[np.int64]
) -> None:
    """Lookalikes: row r (shopper `row_ids[r]`, index `user_rows[r]` in the "users" blob) lists rows."""
    global_nn = Neighbours(
        indices=np.where(user_nn.indices >= 0, user_rows[np.maximum(user_nn.indices, 0)], -1).astype(np.int32),
        scores=user_nn.scores,
    )
    writer.hash("user_nn", _rows(row_ids, global_nn))
