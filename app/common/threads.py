"""Thread-pool limits that several threads of one process may hold at once.

A rebuild runs stages side by side on threads, and some of them cap the native thread pools
(threadpoolctl) around small fits. The two kinds of pool differ:

* **OpenMP** (scikit-learn's boosters): the limit is a per-thread setting (an OpenMP ICV), so a
  thread capping its own boosters leaves the others' alone. `openmp_threads` caps only that pool.
* **BLAS** (OpenBLAS, numpy and scipy): the limit is process-wide. threadpoolctl's limiter restores
  on exit what it found on entry, so two threads whose limited sections overlap out of order leave
  the pool capped for good: A finds 2 and sets 1, B finds 1, A restores 2, B restores 1 (measured with
  threadpoolctl 3.8, whose "controlling thread" lets B take over once A has left). The two validation
  folds fitting ALS at once did exactly that. `one_blas_thread` sections therefore run one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits


@contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """At most `limit` OpenMP threads for this thread's calls inside the block (None: the default)."""
    if limit is None:
        yield
        return
    # a fresh inspection each time (~3 ms): a runtime loaded since (implicit's libgomp) is capped too
    with threadpool_limits(limit, user_api="openmp"):
        yield


_blas_sections = threading.RLock()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread inside the block; such blocks on other threads wait until it is left."""
    with _blas_sections, threadpool_limits(1, user_api="blas"):
        yield
