"""The recommender and item audiences over user shards on a 2-process Dask cluster equal the in-process ones."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg
import pytest

from app.demo.loader import load_demo_if_empty
from app.distributed import itemitem, recommend, shard_fit, shard_tasks
from app.distributed.cluster import gather, submit
from app.distributed.shards import load_shard, planned
from app.recommend.algo_audience import item_audiences, item_weights
from app.recommend.algo_similarity import CFConfig
from app.recommend.algo_validate import RecommenderConfig, fit
from app.settings import Settings
from app.worker.load import load_snapshot
from app.worker.stage_audience import audience_size, buyers_matrix
from app.worker.stage_recommend import build_recommender
from tests.distributed.compare import assert_same_neighbours

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def shop(settings: Settings) -> Settings:
    load_demo_if_empty(settings, force=True, n_users=600, n_items=150, seed=11)
    return settings


def test_shards_read_the_log_the_whole_load_reads(shop: Settings, dask_client: Any) -> None:
    assert shop.database_url
    now = time.time()
    with psycopg.connect(shop.database_url, autocommit=True) as conn:
        whole = load_snapshot(conn, now)
    with planned(shop.database_url, now, n_shards=3) as plan:
        assert [s.n_users for s in plan.shards] == [200, 200, 200]
        snaps = [submit(dask_client, load_shard, shop.database_url, plan, s) for s in plan.shards]
        merged = shard_tasks.concat(gather(dask_client, [submit(dask_client, shard_tasks.whole, s) for s in snaps]),
                                    plan.item_ids)  # fmt: skip
    log = merged.log
    for name in ("user", "item", "type", "ts"):
        assert np.array_equal(getattr(log, name), getattr(whole.log, name)), name
    for name in ("value", "price"):
        np.testing.assert_array_equal(getattr(log, name), getattr(whole.log, name))
    assert np.array_equal(log.user_ids, whole.log.user_ids)
    assert np.array_equal(log.item_ids, whole.log.item_ids)
    assert merged.attributes == whole.user_attributes
    same_session = (log.session[:, None] == log.session[None, :])[log.session >= 0][:, log.session >= 0]
    reference = (whole.log.session[:, None] == whole.log.session[None, :])[whole.log.session >= 0][
        :, whole.log.session >= 0
    ]
    assert np.array_equal(same_session, reference)  # the same sessions, whatever their codes


def test_the_sample_is_the_same_whatever_the_shards(shop: Settings, dask_client: Any) -> None:
    """Above the sample's size models are chosen on a share of the shoppers drawn by id: the same
    shoppers, events and order on 2 shards as on 3, so the worker count does not change the models."""
    assert shop.database_url
    now = time.time()
    samples = []
    for n_shards in (2, 3):
        with planned(shop.database_url, now, n_shards=n_shards) as plan:
            snaps = [submit(dask_client, load_shard, shop.database_url, plan, s) for s in plan.shards]
            parts = gather(dask_client, [submit(dask_client, shard_tasks.sample, s, 0.3, 0) for s in snaps])
            samples.append(shard_tasks.concat(parts, plan.item_ids).log)
    two, three = samples
    assert 0.15 * 600 < two.n_users < 0.45 * 600  # about the share asked
    assert np.array_equal(two.user_ids, three.user_ids)
    for name in ("user", "item", "type", "ts"):
        assert np.array_equal(getattr(two, name), getattr(three, name)), name


def test_every_orphan_event_is_read_by_exactly_one_shard(shop: Settings, dask_client: Any) -> None:
    """Events whose user row is gone, with ids before the first shard, between two and after the last:
    the shards' ranges tile every id, so the rebuild counts them as the whole load does."""
    assert shop.database_url
    with psycopg.connect(shop.database_url, autocommit=True) as conn:
        (boundary,) = conn.execute("SELECT user_id FROM users ORDER BY user_id OFFSET 199 LIMIT 1").fetchone() or ("",)
        ghosts = ["!before-everyone", f"{boundary}~between", "~after-everyone"]
        for k, ghost in enumerate(ghosts):
            conn.execute("INSERT INTO users (user_id) VALUES (%s)", (ghost,))
            conn.execute("INSERT INTO events (event_id, user_id, item_id, type, ts) SELECT %s, %s, min(item_id),"
                         " 'view', now() - interval '1 day' FROM items", (f"ghost-{k}", ghost))  # fmt: skip
        planned_users = [u for (u,) in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
        conn.execute("DELETE FROM users WHERE user_id = ANY(%s)", (ghosts,))
        now = time.time()
        whole = load_snapshot(conn, now)
    assert planned_users[0] == ghosts[0] and planned_users[-1] == ghosts[2]  # really outside the shop's users
    assert whole.orphan_events == 3
    with planned(shop.database_url, now, n_shards=3) as plan:
        snaps = [submit(dask_client, load_shard, shop.database_url, plan, s) for s in plan.shards]
        orphans = [n for _, n, _, _ in gather(dask_client, [submit(dask_client, shard_tasks.sizes, s) for s in snaps])]
        assert plan.shards[0].low is None and plan.shards[-1].high is None
        assert all(a.high == b.low for a, b in zip(plan.shards, plan.shards[1:], strict=False))
    assert orphans == [2, 0, 1]  # the ghost between shards 0 and 1 sorts before shard 1's first user


def test_recommender_and_audiences_equal_the_in_process_ones(
    shop: Settings, dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shop.database_url
    now = time.time()
    with psycopg.connect(shop.database_url, autocommit=True) as conn:
        snapshot = load_snapshot(conn, now)
    local = build_recommender(snapshot, shop)
    with planned(shop.database_url, now, n_shards=3) as plan:
        snaps = [submit(dask_client, load_shard, shop.database_url, plan, s) for s in plan.shards]
        sample = shard_tasks.concat(gather(dask_client, [submit(dask_client, shard_tasks.whole, s) for s in snaps]),
                                    plan.item_ids)  # fmt: skip
        rec = recommend.build_recommender(dask_client, plan, snaps, sample.log, shop)
        # audiences in 5 blocks of items, the last one short
        rows = plan.n_items // 5 + 1
        monkeypatch.setattr(recommend, "AUDIENCE_BLOCK_ENTRIES", rows * audience_size(plan.n_items, plan.n_users))
        audiences = recommend.build_audiences(dask_client, plan, snaps, rec)

    assert rec.config == local.config  # validation saw the same log
    assert_same_neighbours(rec.cf, local.fitted.cf)
    assert_same_neighbours(rec.content_nn, local.content_nn, atol=0)
    np.testing.assert_allclose(rec.popularity, local.fitted.popularity, rtol=1e-5)
    assert np.array_equal(rec.evidence, local.fitted.evidence)
    assert np.array_equal(rec.user_rows, local.user_rows)
    assert np.array_equal(rec.user_row_ids, snapshot.log.user_ids[local.user_rows])
    assert_same_neighbours(rec.user_nn, local.user_nn)

    # audiences: the in-process computation over the same item-item rows ranks every shopper alike
    n_items = snapshot.log.n_items
    hybrid = rec.config.hybrid
    weights = item_weights(rec.cf.to_csr(n_items), rec.content_nn.to_csr(n_items), rec.evidence, hybrid.alpha,
                           hybrid.evidence_c)  # fmt: skip
    expected = item_audiences(local.fitted.history, weights, buyers_matrix(snapshot),
                              audience_size(n_items, snapshot.log.n_users))  # fmt: skip
    for got, want in ((audiences.others, expected.others), (audiences.buyers, expected.buyers)):
        assert np.array_equal(got.indices, want.indices)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    assert (audiences.others.indices >= 0).sum() > 1000  # the shop's audiences are not empty


@pytest.mark.parametrize("cf", [
    CFConfig(variant="ease", k=20, ease_lambda=30.0, ease_dropout=1.0, sequence_weight=0.0),
    CFConfig(variant="ease", k=20, ease_lambda=30.0, ease_dropout=3.0, ease_zero_diagonal=False, sequence_weight=0.0),
    CFConfig(variant="rp3beta", k=20, sequence_weight=0.5),
])
def test_item_item_rows_over_shards_equal_the_in_process_fit(
    shop: Settings, dask_client: Any, cf: CFConfig
) -> None:
    assert shop.database_url
    now = time.time()
    with psycopg.connect(shop.database_url, autocommit=True) as conn:
        snapshot = load_snapshot(conn, now)
    config = RecommenderConfig(cf=cf)
    local = fit(snapshot.log, config, snapshot.now)
    with planned(shop.database_url, now, n_shards=3) as plan:
        snaps = [submit(dask_client, load_shard, shop.database_url, plan, s) for s in plan.shards]
        fits = [submit(dask_client, shard_fit.fit_shard, s, shard.lo, config)
                for s, shard in zip(snaps, plan.shards, strict=True)]
        sharded = itemitem.cf_neighbours(dask_client, fits, plan.n_items, cf)
    assert_same_neighbours(sharded, local.cf)
    assert (local.cf.indices >= 0).sum() > plan.n_items  # rows with neighbours, not an empty match
