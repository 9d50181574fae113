"""Customer value: expected purchases, revenue and p_alive per shopper over a horizon (BTYD models
corrected by gradient boosting). The algorithm modules are pure numpy/scipy/scikit-learn."""
