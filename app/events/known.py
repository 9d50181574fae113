"""The users and items this process has already stored, so a batch inserts only the ids it brings new.

Looking up a thousand existing ids costs Postgres about a quarter of a batch's insert time. Rows do go
(erasure, merge; the API only hides items, but an operator may DELETE or TRUNCATE): each such statement
first advances the `id_deletions` sequence (migration 0003), and a batch that sees it moved starts
again from no known ids. A memory is dropped whole when it reaches `LIMIT` ids: cheaper than
least-recently-used bookkeeping on every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LIMIT = 200_000
DELETIONS_QUERY = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM id_deletions"


@dataclass
class KnownIds:
    users: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    deletions: int = -1

    def unknown(self, deletions: int, users: set[str], items: set[str]) -> tuple[list[str], list[str]]:
        """The given ids not known to be stored, given the current `deletions` counter; each list sorted."""
        if deletions == self.deletions:
            users, items = users - self.users, items - self.items
        # else something was deleted since: trust nothing (`stored` resets)
        return sorted(users), sorted(items)

    def stored(self, deletions: int, users: list[str], items: list[str]) -> None:
        """Remember ids a committed batch holds, read under the counter value `deletions`."""
        if deletions != self.deletions:
            self.users.clear()
            self.items.clear()
            self.deletions = deletions
        for ids, new in ((self.users, users), (self.items, items)):
            if len(ids) + len(new) > LIMIT:
                ids.clear()
            ids.update(new)


_by_database: dict[str, KnownIds] = {}


def known_ids(database: str) -> KnownIds:
    """This process's memory for one database (tests and benchmarks use several in one process)."""
    return _by_database.setdefault(database, KnownIds())
