"""The few Dask patterns the rebuild uses, on `dask.distributed`'s public Client API.

Every task is submitted with retries, and every future has a lineage: a worker that dies mid-task
has its tasks and what it held (the shards: loaded again from the exported snapshot; the inputs
shared with every shard: from the scheduler's copy of their task) computed again elsewhere. A lost
scheduler fails the rebuild, which then discards its unpublished version; the previous one keeps
serving.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

RETRIES = 3


def connect(address: str) -> Any:
    """A Client of the scheduler at `address` (tcp://host:8786)."""
    from distributed import Client  # an optional extra: shopmind[dask]

    return Client(address, set_as_default=False)  # type: ignore[no-untyped-call]


def submit(client: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A future of fn(*args): futures among the args are resolved on the worker that runs it."""
    return client.submit(fn, *args, retries=RETRIES, pure=False, **kwargs)


def share(client: Any, obj: Any) -> Any:
    """One future of `obj` for the tasks of every shard, made by a task that carries it.

    Not `scatter(broadcast=True)`: scattered data has no lineage, and Dask's active memory manager
    trims a broadcast's replicas to one, so killing the worker that kept it cancelled the rebuild
    ("lost dependencies"). The scheduler keeps a task's inputs while its result lives, and runs it
    again on a worker that survives; the other workers fetch the result from whichever holds it.
    """
    import dask

    # the object in the graph is the point here (tens of MB at a million shoppers): no warning
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}):
        return submit(client, shared_input, obj)


def shared_input(obj: Any) -> Any:
    """The task behind `share`: its result is its argument."""
    return obj


def tree_sum(client: Any, parts: Sequence[Any], add: Callable[[Any, Any], Any] = operator.add) -> Any:
    """The sum of `parts` (futures), added pairwise on the workers: no one process receives them all."""
    level = list(parts)
    if not level:
        raise ValueError("nothing to sum")
    while len(level) > 1:
        paired = [submit(client, add, a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def gather(client: Any, futures: Any) -> Any:
    return client.gather(futures)


def gather_each(client: Any, futures: list[Any]) -> Iterator[Any]:
    """The futures' results one at a time, in order, each released once read (the list is emptied):
    the workers never hold every result waiting for the driver to take them all."""
    futures.reverse()
    while futures:
        yield client.gather(futures.pop())
