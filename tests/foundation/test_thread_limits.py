"""Thread-pool limits held by several threads at once (`app.common.threads`)."""

from __future__ import annotations

import threading
import time

import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the boosters use)
from threadpoolctl import ThreadpoolController, threadpool_limits

from app.common.threads import one_blas_thread, openmp_threads


def _threads(user_api: str) -> set[int]:
    return {pool.num_threads for pool in ThreadpoolController().select(user_api=user_api).lib_controllers}


def _set_blas_from_a_passing_thread(n: int) -> None:
    """The pool at `n` threads, set by a thread that then ends: threadpoolctl lets only one live thread
    at a time change a process-wide pool, and a finished one holds no claim."""
    setter = threading.Thread(target=lambda: threadpool_limits(n, user_api="blas"))
    setter.start()
    setter.join()


def test_blas_sections_on_two_threads_take_turns_and_restore_the_pool() -> None:
    """A enters; B asks while A is inside and waits; A leaves; B enters and leaves. The pool is capped
    in each section and has its threads back at the end. (Sections that overlap, A in, B in, A out,
    B out, leave it capped for good: B found A's cap and restores it.)"""
    original = _threads("blas")
    _set_blas_from_a_passing_thread(2)
    a_inside, a_may_leave, b_asking = threading.Event(), threading.Event(), threading.Event()
    log: list[tuple[str, set[int]]] = []

    def a() -> None:
        with one_blas_thread():
            log.append(("a", _threads("blas")))
            a_inside.set()
            a_may_leave.wait(5)
            log.append(("a leaves", _threads("blas")))

    def b() -> None:
        a_inside.wait(5)
        b_asking.set()
        with one_blas_thread():
            log.append(("b", _threads("blas")))

    def release_a() -> None:
        b_asking.wait(5)
        time.sleep(0.2)  # B is blocked meanwhile: it logs nothing before A leaves
        a_may_leave.set()

    try:
        assert _threads("blas") == {2}
        threads = [threading.Thread(target=f) for f in (a, b, release_a)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert log == [("a", {1}), ("a leaves", {1}), ("b", {1})]
        assert _threads("blas") == {2}
    finally:
        _set_blas_from_a_passing_thread(max(original))


def test_an_openmp_cap_stays_on_the_thread_that_set_it() -> None:
    capped, released = threading.Event(), threading.Event()
    inside: list[set[int]] = []

    def capping() -> None:
        with openmp_threads(1):
            inside.append(_threads("openmp"))
            capped.set()
            released.wait(5)

    with threadpool_limits(2, user_api="openmp"):
        worker = threading.Thread(target=capping)
        worker.start()
        assert capped.wait(5)
        assert _threads("openmp") == {2}  # this thread's boosters keep both cores meanwhile
        released.set()
        worker.join(5)
        assert inside == [{1}]
        with openmp_threads(None):
            assert _threads("openmp") == {2}
