"""The per-user propensity records the worker publishes: the bytes serving has always read."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from app.propensity import TIERS, FeatureSpec, PropensityScores, render_factors
from app.worker.stage_propensity import TargetBuild, _user_records

NAMES = ["days_since_last_purchase", "events_30d", 'attr:plan="gold"', "revenue_total"]


def test_records_equal_json_dumps_of_the_factor_dicts() -> None:
    model = SimpleNamespace(feature_names=NAMES, spec=FeatureSpec(category=None))
    feat = np.array([[0, 1, -1], [3, 2, 0], [-1, -1, -1]], dtype=np.int16)
    impact = np.array([[0.12345, -0.5, 0], [1e-5, -0.25, 0.3], [0, 0, 0]], dtype=np.float32)
    value = np.array([[400.0, 3.0, 0], [12.3456, np.nan, 2.5], [0, 0, 0]], dtype=np.float32)
    scores = PropensityScores(
        user_ids=np.array(["u1", "u\u00e92", "u3"], dtype=object),
        probability=np.array([0.1234567, 1.0, 0.0], dtype=np.float32),
        percentile=np.array([0.5, 1.0, 0.33333], dtype=np.float32),
        tier=np.array([1, 2, 0], dtype=np.int8), factor_feature=feat, factor_impact=impact, factor_value=value,
        feature_names=NAMES, base_rate=0.1, cutoff=0.0, target="purchase", horizon_days=30.0,
    )  # fmt: skip
    got = list(_user_records(TargetBuild(model=model, scores=scores)))  # type: ignore[arg-type]
    factors = render_factors(model, feat, impact, value)
    want = [
        (str(scores.user_ids[k]), json.dumps(
            {"p": round(float(scores.probability[k]), 6), "pc": round(float(scores.percentile[k]), 4),
             "t": TIERS[int(scores.tier[k])], "f": [f.as_dict() for f in factors[k]]}, separators=(",", ":")))
        for k in range(3)
    ]  # fmt: skip
    assert got == want
