"""Postgres advisory locks Shopmind takes, each purpose under keys of its own.

Postgres keeps one-key (bigint) and two-key (int, int) advisory locks in separate key spaces.
"""

from __future__ import annotations

MIGRATIONS = 0x5348_4D00_0001
"""Held (session-level) around `alembic upgrade`: servers and workers starting at once migrate in turn."""
