"""Starting the test session's Dask clusters leaves the test process's environment as it was."""

from __future__ import annotations

import os

from tests.distributed.conftest import local_cluster


def test_a_local_cluster_does_not_write_dask_worker_settings_into_the_tests_environment() -> None:
    before = dict(os.environ)
    cluster = local_cluster()
    try:
        started = dict(os.environ)
        assert len(cluster.workers) == 2
    finally:
        cluster.close()
    # a bare LocalCluster leaves OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ and PYTHONHASHSEED behind
    assert started == before
    assert dict(os.environ) == before
