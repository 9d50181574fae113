"""Recommendations: pure algorithms in `algo_*` (numpy/scipy/scikit-learn, no I/O), serving around them.

Algorithm modules, in pipeline order:

- `algo_neighbours`  the `Neighbours` top-k shape, block-wise top-k, blending two neighbour lists
- `algo_matrix`      event log -> weighted user-item matrix; one user's history weights
- `algo_similarity`  item-item CF: shrunk cosine, EASE, RP3beta -> `Neighbours`
- `algo_sequence`    "what comes next" co-occurrence, blended into the served CF neighbours
- `algo_users`       user-user Pearson with significance weighting (lookalikes)
- `algo_content`     item documents, hashed sublinear TF-IDF, cosine neighbours, one-item upsert path
- `algo_popularity`  decayed popularity, per-category top lists, trend
- `algo_blend`       the hybrid scorer used by serving (`score_user`) and validation (`score_block`)
- `algo_metrics`     precision/recall/F1/NDCG@k and the per-user time holdout
- `algo_validate`    `fit` (the rebuild) and `validate` (choose CF variant, sequence weight, alpha)

Nothing is imported here, so importing a router does not pull in scikit-learn.
"""
