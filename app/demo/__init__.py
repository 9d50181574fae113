"""Synthetic web-shop data for `shopmind demo`, the test suite and benchmarks."""

from app.demo.generator import Shop, ShopTruth, generate_shop, iter_event_batches, to_event_log

__all__ = ["Shop", "ShopTruth", "generate_shop", "iter_event_batches", "to_event_log"]
