"""A deterministic synthetic web shop with latent structure every model can find.

Items carry a concentrated topic mixture that drives their categories, brand and words (so TF-IDF
content similarity reflects topics). Users carry a taste over the same topics, an activity level,
an optional churn date and a purchase intent that drifts week by week. Sessions of views are drawn
from `softmax(beta * taste . topics) * popularity`; carts, abandonment and purchases follow affinity
and the user's current intent, so collaborative filtering, content filtering and purchase or churn
propensity all have real signal. Pure numpy, no I/O; one `numpy.random.Generator` seeded once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.demo.vocab import (
    COLORS,
    CONNECTORS,
    COUNTRIES,
    COUNTRY_P,
    FILLER,
    MAX_TOPICS,
    PRICE_MEDIAN,
    TAGS_EXTRA,
    TOPIC_PROFILES,
)
from app.eventlog import EVENT_TYPES, TYPE_CODE, EventLog

DAY = 86400.0
_EVENTS_PER_SESSION = 6.2
_VIEW_EXTRA_MEAN = 2.8  # views per session = 1 + Poisson(this)
_BETA = 7.0  # taste . topics weight in the view softmax
_ZIPF = 0.9  # item popularity ~ rank ** -_ZIPF
_RHO = 0.85  # week-to-week autocorrelation of the intent drift
_RATE_INTENT = 0.4  # session rate ~ exp(_RATE_INTENT * drift)
_CHURN_RAMP_DAYS = 21.0  # churners' session rate falls linearly to zero over this many days
_RATING_DELAY_DAYS = 4.0


@dataclass(frozen=True)
class ShopTruth:
    """The latent facts behind a generated shop. Row k of a user/item array is `users[k]`/`items[k]`.

    item_topics:    float64[n_items, n_topics] topic mixture, rows sum to 1
    item_topic:     int64[n_items] main topic (argmax of item_topics)
    item_popularity: float64[n_items] Zipf popularity weight, sums to 1
    user_taste:     float64[n_users, n_topics] taste over topics, rows sum to 1 (near `now` if it drifts)
    user_activity:  float64[n_users] log-normal activity multiplier, mean ~1
    user_intent:    float64[n_users, n_weeks] purchase-intent logit per week from `start`
    user_signup:    float64[n_users] signup time, epoch seconds
    user_churn:     float64[n_users] time the user stops visiting, epoch seconds; inf for stayers
    start, horizon_start, now: epoch seconds; history spans [start, now], horizon is [horizon_start, now]
    active_before_horizon:  bool[n_users] any event before horizon_start
    purchased_in_horizon:   bool[n_users] a purchase event at or after horizon_start
    inactive_in_horizon:    bool[n_users] no event at all at or after horizon_start
    The last three are computed from the generated events, so they agree with the log exactly.
    """

    item_topics: NDArray[np.float64]
    item_topic: NDArray[np.int64]
    item_popularity: NDArray[np.float64]
    user_taste: NDArray[np.float64]
    user_activity: NDArray[np.float64]
    user_intent: NDArray[np.float64]
    user_signup: NDArray[np.float64]
    user_churn: NDArray[np.float64]
    start: float
    horizon_start: float
    now: float
    active_before_horizon: NDArray[np.bool_]
    purchased_in_horizon: NDArray[np.bool_]
    inactive_in_horizon: NDArray[np.bool_]


@dataclass(frozen=True)
class Shop:
    """Items, users and events in the service's API shape, plus the truth that generated them."""

    items: list[dict[str, Any]]
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]
    truth: ShopTruth


def generate_shop(
    n_users: int = 500,
    n_items: int = 200,
    n_topics: int = 8,
    days: int = 120,
    seed: int = 0,
    now: float | None = None,
    events_per_user_mean: float = 30.0,
    horizon_days: int = 30,
    churn_rate: float = 0.3,
    taste_drift: float = 0.0,
) -> Shop:
    """Generate a shop whose history spans `days` days ending at `now` (default: the wall clock).

    Everything but `now` is a pure function of the arguments: the same seed and `now` give the
    same shop. `churn_rate` is the share of users who stop visiting at a uniform time in the window.
    `taste_drift` in [0, 1]: each user's taste moves linearly over the window from the one drawn at
    signup towards a second one, reaching `(1 - d) * first + d * second` at `now` (0: tastes never
    change, and the shop is the same as without the argument).
    """
    if not 2 <= n_topics <= MAX_TOPICS:
        raise ValueError(f"n_topics must be in [2, {MAX_TOPICS}], got {n_topics}")
    if n_users < 1 or n_items < 1 or days <= horizon_days or horizon_days < 1:
        raise ValueError("need n_users >= 1, n_items >= 1 and days > horizon_days >= 1")
    end = float(time.time() if now is None else now)
    rng = np.random.default_rng(seed)
    items, topics, main, price, available = _make_items(rng, n_items, n_topics)
    rank = rng.permutation(n_items) + 1.0
    popularity = rank**-_ZIPF / np.sum(rank**-_ZIPF)
    users, taste, activity, signup_day, churn_day = _make_users(rng, n_users, n_topics, days, churn_rate)
    if not 0.0 <= taste_drift <= 1.0:
        raise ValueError(f"taste_drift must be in [0, 1], got {taste_drift}")
    if taste_drift > 0:
        taste = _drifting(taste, rng.dirichlet(np.full(n_topics, 0.3), n_users), taste_drift)
    n_weeks = days // 7 + 1
    drift = np.empty((n_users, n_weeks))
    drift[:, 0] = rng.standard_normal(n_users)
    for w in range(1, n_weeks):
        drift[:, w] = _RHO * drift[:, w - 1] + np.sqrt(1 - _RHO**2) * rng.standard_normal(n_users)
    intent = rng.normal(-0.6, 0.8, n_users)[:, None] + drift

    s_user, s_day = _sessions(rng, activity, signup_day, churn_day, drift, days, events_per_user_mean)
    cols = _session_events(rng, s_user, s_day, taste, topics, popularity, price, available, intent, days)
    start = end - days * DAY
    cols["ts"] = np.clip(np.round(start + cols.pop("day") * DAY, 3), start, end)  # ms, inside the window
    order = np.argsort(cols["ts"], kind="stable")
    cols = {name: col[order] for name, col in cols.items()}

    horizon_start = end - horizon_days * DAY
    u, in_h = cols["user"], cols["ts"] >= horizon_start
    active_before = np.bincount(u[~in_h], minlength=n_users) > 0
    purchased = np.bincount(u[in_h & (cols["type"] == TYPE_CODE["purchase"])], minlength=n_users) > 0
    inactive = np.bincount(u[in_h], minlength=n_users) == 0

    events = _event_dicts(users, items, cols)
    truth = ShopTruth(
        item_topics=topics, item_topic=main, item_popularity=popularity,
        user_taste=taste if taste.ndim == 2 else taste[:, -1],
        user_activity=activity, user_intent=intent, user_signup=start + signup_day * DAY,
        user_churn=start + churn_day * DAY, start=start, horizon_start=horizon_start, now=end,
        active_before_horizon=active_before, purchased_in_horizon=purchased, inactive_in_horizon=inactive,
    )
    return Shop(items=items, users=users, events=events, truth=truth)


def _make_items(
    rng: np.random.Generator, n_items: int, n_topics: int
) -> tuple[list[dict[str, Any]], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64],
           NDArray[np.bool_]]:
    """Catalog rows plus (topic mixture, main topic, price, available) arrays."""
    main = rng.integers(0, n_topics, n_items)
    topics = 0.3 * rng.dirichlet(np.full(n_topics, 0.3), n_items)
    topics[np.arange(n_items), main] += 0.7
    profiles = [tuple(p.split() for p in prof) for prof in TOPIC_PROFILES[:n_topics]]
    all_brands = [b for prof in profiles for b in prof[3]]
    price = np.empty(n_items)
    available = rng.random(n_items) < 0.95
    items: list[dict[str, Any]] = []
    for k in range(n_items):
        t = int(main[k])
        cats, mods, nouns, brands, materials = profiles[t]
        # words come from topics drawn by the item's own mixture: mostly its main topic
        word_topics = rng.choice(n_topics, size=4, p=topics[k])
        pairs = [(_pick(rng, profiles[s][1]), _pick(rng, profiles[s][2])) for s in word_topics]
        brand = _pick(rng, brands) if rng.random() < 0.85 else _pick(rng, all_brands)
        title = " ".join(w.capitalize() for w in (_pick(rng, FILLER), _pick(rng, mods), _pick(rng, nouns)))
        clauses = [f"{m} {n}" for m, n in pairs]
        text = "".join(f"{c} {_pick(rng, CONNECTORS)} " for c in clauses[:-1]) + clauses[-1]
        description = f"{title} by {brand}: {_pick(rng, FILLER)} {text}."
        categories = [cats[0]] + ([cats[1]] if len(cats) > 1 and rng.random() < 0.5 else [])
        second = int(np.argsort(topics[k])[-2])
        if topics[k, second] > 0.2 and profiles[second][0][0] not in categories:
            categories.append(profiles[second][0][0])
        price[k] = round(float(PRICE_MEDIAN[categories[0]] * rng.lognormal(0.0, 0.45)), 2)
        tags = sorted({_pick(rng, mods), _pick(rng, nouns), pairs[-1][0]})
        if rng.random() < 0.3:
            tags.append(_pick(rng, TAGS_EXTRA))
        items.append({
            "item_id": f"item-{k + 1:04d}",
            "title": title,
            "description": description,
            "categories": categories,
            "tags": tags,
            "brand": brand,
            "price": float(price[k]),
            "available": bool(available[k]),
            "attributes": {"color": _pick(rng, COLORS), "material": _pick(rng, materials)},
        })
    return items, topics, main.astype(np.int64), price, available


def _pick(rng: np.random.Generator, words: list[str] | tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _make_users(
    rng: np.random.Generator, n_users: int, n_topics: int, days: int, churn_rate: float
) -> tuple[list[dict[str, Any]], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
           NDArray[np.float64]]:
    """User rows plus (taste, activity, signup day, churn day); days count from the window start."""
    taste = rng.dirichlet(np.full(n_topics, 0.3), n_users)
    activity = rng.lognormal(-0.32, 0.8, n_users)  # mean ~1
    signup_ago = np.floor(rng.exponential(365.0, n_users)) + 1.0
    signup_day = days - signup_ago
    churns = rng.random(n_users) < churn_rate
    churn_day = np.where(churns, rng.uniform(0.1 * days, days, n_users), np.inf)
    country = rng.choice(len(COUNTRIES), n_users, p=COUNTRY_P)
    q = np.quantile(activity, [0.5, 0.85])
    segment = np.where(signup_ago <= 30, "new", np.where(activity >= q[1], "loyal",
                                                         np.where(activity >= q[0], "regular", "casual")))
    rows = zip(country.tolist(), segment.tolist(), signup_ago.tolist(), strict=True)
    users = [
        {"user_id": f"user-{k + 1:05d}",
         "attributes": {"country": COUNTRIES[c], "segment": str(s), "signup_days_ago": int(a)}}
        for k, (c, s, a) in enumerate(rows)
    ]
    return users, taste, activity, signup_day, churn_day


_DRIFT_PHASES = 24


def _drifting(first: NDArray[np.float64], second: NDArray[np.float64], drift: float) -> NDArray[np.float64]:
    """Tastes per (user, phase of the window), float64[n_users, _DRIFT_PHASES, n_topics]."""
    share = drift * (np.arange(_DRIFT_PHASES) + 0.5) / _DRIFT_PHASES
    return (1.0 - share)[None, :, None] * first[:, None, :] + share[None, :, None] * second[:, None, :]


def _sessions(
    rng: np.random.Generator,
    activity: NDArray[np.float64],
    signup_day: NDArray[np.float64],
    churn_day: NDArray[np.float64],
    drift: NDArray[np.float64],
    days: int,
    events_per_user_mean: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Session (user, start day) sorted by user then time: a thinned Poisson process per user.

    The rate is zero before signup, falls linearly to zero over the ramp before a churn date and
    scales with exp(_RATE_INTENT * intent drift), so busy weeks coincide with buying weeks.
    """
    span = days - 1.0 / 24  # sessions start at least an hour before `now`
    first = np.maximum(signup_day, 0.0)
    stop = np.minimum(churn_day - _CHURN_RAMP_DAYS / 2, span)
    active_frac = max(float(np.mean(np.clip(stop - first, 0.0, None))) / span, 0.05)
    cap = 2.5
    accept_mean = float(np.exp(_RATE_INTENT**2 / 2 - _RATE_INTENT * cap))
    rate = events_per_user_mean * activity / (_EVENTS_PER_SESSION * span * active_frac * accept_mean)
    n_cand = rng.poisson(rate * span)
    cu = np.repeat(np.arange(len(activity)), n_cand)
    cx = rng.uniform(0.0, span, len(cu))
    churn_factor = np.clip((churn_day[cu] - cx) / _CHURN_RAMP_DAYS, 0.0, 1.0)
    intent_factor = np.exp(_RATE_INTENT * (np.minimum(drift[cu, (cx // 7).astype(np.int64)], cap) - cap))
    keep = (cx >= first[cu]) & (rng.random(len(cu)) < churn_factor * intent_factor)
    cu, cx = cu[keep], cx[keep]
    order = np.lexsort((cx, cu))
    return cu[order], cx[order]


def _sample_items(
    rng: np.random.Generator,
    v_user: NDArray[np.int64],
    taste: NDArray[np.float64],
    topics: NDArray[np.float64],
    popularity: NDArray[np.float64],
) -> NDArray[np.int64]:
    """One item per view from softmax(_BETA * taste . topics + log popularity) of the viewing user.

    Users are processed in chunks: each chunk's CDF rows are offset by their row number so one
    `searchsorted` on the flattened matrix samples every view of the chunk at once.
    """
    n_items = len(popularity)
    out = np.empty(len(v_user), dtype=np.int64)
    order = np.argsort(v_user, kind="stable")
    sorted_users = v_user[order]
    uniq, starts = np.unique(sorted_users, return_index=True)
    bounds = np.append(starts, len(order))
    chunk = max(1, 2_000_000 // n_items)
    for c0 in range(0, len(uniq), chunk):
        us = uniq[c0 : c0 + chunk]
        logits = _BETA * taste[us] @ topics.T + np.log(popularity)
        cdf = np.cumsum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
        cdf = cdf / cdf[:, -1:] + np.arange(len(us))[:, None]
        lo, hi = bounds[c0], bounds[min(c0 + chunk, len(uniq))]
        rows = np.searchsorted(us, sorted_users[lo:hi])
        flat = np.searchsorted(cdf.ravel(), rng.random(hi - lo) + rows, side="right")
        out[order[lo:hi]] = np.minimum(flat - rows * n_items, n_items - 1)
    return out


def _session_events(
    rng: np.random.Generator,
    s_user: NDArray[np.int64],
    s_day: NDArray[np.float64],
    taste: NDArray[np.float64],
    topics: NDArray[np.float64],
    popularity: NDArray[np.float64],
    price: NDArray[np.float64],
    available: NDArray[np.bool_],
    intent: NDArray[np.float64],
    days: int,
) -> dict[str, NDArray[Any]]:
    """Event columns user, item, type (code), day (since the window start), session (-1 for none),
    price and value (NaN when absent); unsorted."""
    n_views = 1 + rng.poisson(_VIEW_EXTRA_MEAN, len(s_user))
    v_sess = np.repeat(np.arange(len(s_user)), n_views)
    v_user = s_user[v_sess]
    gaps = rng.exponential(45.0, len(v_sess)) + 5.0
    cum = np.cumsum(gaps)
    first = np.cumsum(n_views) - n_views
    v_sec = cum - np.repeat(cum[first] - gaps[first], n_views)  # seconds since session start
    v_day = s_day[v_sess] + v_sec / DAY
    if taste.ndim == 3:  # drifting tastes: one pseudo-user per (user, phase of the window)
        phase = np.clip((v_day / days * taste.shape[1]).astype(np.int64), 0, taste.shape[1] - 1)
        v_taste_row = v_user * taste.shape[1] + phase
        taste = taste.reshape(-1, taste.shape[2])
    else:
        v_taste_row = v_user
    v_item = _sample_items(rng, v_taste_row, taste, topics, popularity)
    aff = np.einsum("ij,ij->i", taste[v_taste_row], topics[v_item])
    cur = intent[v_user, np.minimum((v_day // 7).astype(np.int64), intent.shape[1] - 1)]

    def sig(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return 1.0 / (1.0 + np.exp(-x))

    def draw(p: NDArray[np.float64] | float) -> NDArray[np.bool_]:
        return rng.random(len(v_sess)) < p

    click, like, bookmark = draw(0.2 + 0.4 * aff), draw(0.02 + 0.08 * aff), draw(0.03)
    cart = available[v_item] & draw(sig(-3.2 + 4.0 * aff + 0.7 * cur))
    removed = cart & draw(sig(-1.3 - 0.5 * cur))
    bought = cart & ~removed & draw(sig(0.3 + 1.0 * cur))
    checkout = s_day + (v_sec[first + n_views - 1] + 120.0) / DAY  # after the last view and removals
    quantity = 1.0 + (rng.random(len(v_sess)) < 0.15) * rng.geometric(0.6, len(v_sess))
    paid = np.round(price[v_item] * np.where(rng.random(len(v_sess)) < 0.1, 0.85, 1.0), 2)
    rated = bought & draw(0.35)
    rate_day = checkout[v_sess] + 0.5 + rng.exponential(_RATING_DELAY_DAYS, len(v_sess))
    rated &= rate_day < days
    stars = np.clip(np.round(1.2 + 4.5 * aff + rng.normal(0.0, 0.9, len(v_sess))), 1, 5)
    offset = rng.uniform(2.0, 40.0, len(v_sess)) / DAY
    cart_day = v_day + offset
    nan = np.full(len(v_sess), np.nan)
    removal_day = cart_day + rng.uniform(5.0, 60.0, len(v_sess)) / DAY
    parts: list[tuple[NDArray[np.bool_], str, NDArray[Any], NDArray[Any], NDArray[Any]]] = [
        (np.ones(len(v_sess), dtype=bool), "view", v_day, nan, nan),
        (click, "click", v_day + offset / 4, nan, nan),
        (like, "like", v_day + offset / 2, nan, nan),
        (bookmark, "bookmark", v_day + offset / 3, nan, nan),
        (cart, "add_to_cart", cart_day, price[v_item], nan),
        (removed, "remove_from_cart", removal_day, price[v_item], nan),
        (bought, "purchase", checkout[v_sess], paid, quantity),
        (rated, "rating", rate_day, nan, stars),
    ]
    no_session = np.full(len(v_sess), -1)
    return {
        "user": np.concatenate([v_user[m] for m, *_ in parts]),
        "item": np.concatenate([v_item[m] for m, *_ in parts]),
        "type": np.concatenate([np.full(int(m.sum()), TYPE_CODE[t]) for m, t, *_ in parts]),
        "day": np.concatenate([d[m] for m, _, d, _, _ in parts]),
        "session": np.concatenate([(no_session if t == "rating" else v_sess)[m] for m, t, *_ in parts]),
        "price": np.concatenate([p[m] for m, _, _, p, _ in parts]),
        "value": np.concatenate([v[m] for m, *_, v in parts]),
    }


def _event_dicts(
    users: list[dict[str, Any]], items: list[dict[str, Any]], cols: dict[str, NDArray[Any]]
) -> list[dict[str, Any]]:
    """Event rows in the API shape; NaN price/value and session -1 become None."""
    user_ids = [u["user_id"] for u in users]
    item_ids = [it["item_id"] for it in items]
    names = ("user", "item", "type", "ts", "session", "price", "value")
    u, i, code, ts, sess, price, value = (cols[name].tolist() for name in names)
    sess_ids = [f"sess-{k + 1:07d}" for k in range(max(sess, default=-1) + 1)]
    return [
        {
            "event_id": f"ev-{k + 1:08d}",
            "user_id": user_ids[a],
            "item_id": item_ids[b],
            "type": EVENT_TYPES[c],
            "timestamp": t,
            "session_id": sess_ids[s] if s >= 0 else None,
            "price": None if p != p else p,
            "value": None if v != v else v,
        }
        for k, (a, b, c, t, s, p, v) in enumerate(zip(u, i, code, ts, sess, price, value, strict=True))
    ]


def iter_event_batches(shop: Shop, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    """The events in time order, as consecutive lists of at most `size` (for batch ingestion)."""
    if size < 1:
        raise ValueError("size must be >= 1")
    for k in range(0, len(shop.events), size):
        yield shop.events[k : k + size]


def to_event_log(shop: Shop) -> EventLog:
    """The shop's events as an EventLog whose user and item index spaces are `shop.users`/`shop.items`
    in order (so row k of the truth arrays is index k), including users and items without events."""
    ev = shop.events
    n = len(ev)
    user_pos = {u["user_id"]: k for k, u in enumerate(shop.users)}
    item_pos = {it["item_id"]: k for k, it in enumerate(shop.items)}
    seen: dict[str, int] = {}
    return EventLog(
        user=np.fromiter((user_pos[e["user_id"]] for e in ev), np.int32, count=n),
        item=np.fromiter((item_pos[e["item_id"]] if e["item_id"] else -1 for e in ev), np.int32, count=n),
        type=np.fromiter((TYPE_CODE[e["type"]] for e in ev), np.int8, count=n),
        value=np.fromiter((np.nan if e["value"] is None else e["value"] for e in ev), np.float32, count=n),
        price=np.fromiter((np.nan if e["price"] is None else e["price"] for e in ev), np.float32, count=n),
        ts=np.fromiter((e["timestamp"] for e in ev), np.float64, count=n),
        session=np.fromiter(
            (seen.setdefault(e["session_id"], len(seen)) if e["session_id"] else -1 for e in ev),
            np.int32,
            count=n,
        ),
        user_ids=np.array([u["user_id"] for u in shop.users], dtype=object),
        item_ids=np.array([it["item_id"] for it in shop.items], dtype=object),
    )
