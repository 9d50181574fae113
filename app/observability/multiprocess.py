"""Prometheus multiprocess mode for `shopmind serve --workers N`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def prometheus_multiprocess(workers: int) -> Iterator[Path | None]:
    """With more than one worker process, point PROMETHEUS_MULTIPROC_DIR at a fresh directory.

    Must be entered before the workers start (they inherit the environment and decide their metric
    storage on import). The directory is removed afterwards, so counters start from zero at each start,
    as Prometheus expects of a restart. A directory the operator set is used as is and kept; per
    prometheus_client's rules it must then be emptied between runs.
    """
    if workers <= 1 or os.environ.get(MULTIPROCESS_ENV):
        yield Path(os.environ[MULTIPROCESS_ENV]) if os.environ.get(MULTIPROCESS_ENV) else None
        return
    path = Path(tempfile.mkdtemp(prefix="shopmind-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
