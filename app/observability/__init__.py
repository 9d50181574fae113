"""Operational signals: Prometheus metrics (`metrics`), their scrape-time readings (`snapshot`) and the
`/metrics` route (`router`). `metrics` is a leaf any layer may import to count something."""
