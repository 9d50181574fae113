"""A Dask cluster of two worker processes for the session, as `dask.distributed.LocalCluster` starts one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def environment_kept() -> Iterator[None]:
    """Put the test process's environment back as it was.

    Dask's nannies run in the process that starts a LocalCluster, and each one writes the workers'
    pre-spawn environment (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED...) into that
    process's `os.environ` before spawning. Left there, every later test and every subprocess a test
    starts would run single-threaded with Dask's allocator settings.
    """
    kept = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(kept)


def local_cluster(**options: Any) -> Any:
    """A LocalCluster of two single-threaded worker processes, started without touching our environment."""
    from distributed import LocalCluster

    # the scheduler's HTTP routes (health, metrics) listen even without a dashboard, on 8787 when
    # `dashboard_address` is None: a free port keeps two clusters, or a developer's own, from colliding
    with environment_kept():
        return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", **options)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    cluster = local_cluster(memory_limit="4GiB")
    yield cluster
    with environment_kept():  # a nanny that restarted a killed worker wrote the environment again
        cluster.close()


@pytest.fixture(autouse=True)
def _environment_kept_per_test() -> Iterator[None]:
    """A nanny restarting a killed worker, or a test's own cluster, writes the environment again."""
    with environment_kept():
        yield


@pytest.fixture
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:
        yield client
