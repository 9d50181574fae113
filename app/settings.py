"""One typed settings object, read from the environment (prefix SHOPMIND_) or a .env file."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Buckets of item metadata and popularity on a Redis Cluster: a few per master of a 3-6 master cluster,
#: few enough that reading the top of every bucket stays one small round trip per node.
CLUSTER_BUCKETS = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPMIND_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host:5432/db). Unset: embedded private server.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL (redis://host:6379/0). Unset: embedded private server."
    )
    data_dir: Path = Field(default=Path(".shopmind"), description="Where the embedded servers keep data.")
    admin_key: SecretStr | None = Field(
        default=None, description="Accepted as an admin-scope API key (for compose files and scripts)."
    )
    redis_prefix: str = Field(default="sm:", description="Prefix of every Redis key this service writes.")
    redis_cluster: bool = Field(
        default=False,
        description="SHOPMIND_REDIS_URL names one node of a Redis Cluster (the others are discovered).",
    )
    redis_buckets: int | None = Field(
        default=None, ge=1, le=1024,
        description="Buckets item metadata and popularity are split into by item id (default: 16 on a"
        " Redis Cluster, so they spread over its masters; 1 on a single Redis, where a split only adds"
        " commands). Every process must use the same value; changing it makes the worker re-hydrate.",
    )

    # real-time state
    history_length: int = Field(default=200, ge=10, le=5000, description="Recent events kept per user.")
    popularity_half_life_days: float = Field(default=7.0, gt=0)

    # ingest policy
    max_batch_events: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_future_seconds: float = Field(default=300.0, ge=0, description="Clock skew tolerated on timestamps.")
    min_timestamp: float = Field(default=946_684_800.0, description="Earliest accepted event (2000-01-01).")
    event_retention_months: int | None = Field(
        default=None, ge=1,
        description="Keep this many whole months of events before the current one; the worker drops older "
        "monthly partitions whole. None keeps everything.",
    )

    # worker
    rebuild_interval_minutes: float = Field(default=15.0, gt=0)
    rebuild_lock_seconds: int = Field(default=1800, ge=10)
    dask_scheduler: str | None = Field(
        default=None,
        description="A Dask scheduler (tcp://host:8786): the rebuild's heavy stages run on its workers, over"
        " user shards, so no process holds the whole event log (needs `pip install 'shopmind[dask]'`)."
        " Unset: the rebuild runs in the worker process.",
    )
    rebuild_parallel_stages: bool = Field(
        default=True,
        description="Run the recommendation and audience stages of a rebuild beside the propensity and value"
        " stages, on two threads (a shorter rebuild on two or more cores, a higher peak memory); false runs"
        " every stage in turn.",
    )
    keep_versions: int = Field(default=2, ge=1)
    neighbours_k: int = Field(default=50, ge=5, le=500)
    propensity_horizon_days: float = Field(default=30.0, gt=0)
    propensity_targets: list[str] = Field(
        default=["purchase", "churn"],
        description="Targets scored at each rebuild: purchase, churn, purchase:<category>.",
    )
    value_horizon_days: float = Field(
        default=90.0, gt=0, description="Horizon of the customer-value predictions (purchases, revenue)."
    )

    # auth and limits
    key_cache_seconds: float = Field(default=30.0, ge=0)
    rate_limit_per_second: dict[str, float] = Field(
        default={"ingest": 2000.0, "read": 2000.0, "admin": 200.0, "track": 20.0},
        description="Token-bucket refill rate per API key, by the key's broadest scope; a track key's "
        "(public, in every shop page) per key and client address.",
    )
    rate_limit_burst_seconds: float = Field(default=2.0, gt=0)
    auth_failures_per_minute: float = Field(
        default=60.0, gt=0,
        description="Failed API authentications (no, unknown or revoked key) per client address and minute "
        "(also the burst); beyond: 429, and keys not verified lately are not looked up for that address.",
    )
    login_attempts_per_minute: float = Field(
        default=10.0, gt=0,
        description="Dashboard login attempts per client address and minute (also the burst); beyond: 429.",
    )

    # browser and operations
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Shop origins allowed to call the API from a browser (shopmind.js), comma-separated "
        "(`https://shop.example,https://www.shop.example`) or a JSON list. Empty: no CORS.",
    )
    metrics_require_key: bool = Field(
        default=False,
        description="Require an admin-scope key on GET /metrics (default: open, as Prometheus expects).",
    )

    # webhooks and triggers (the dispatcher)
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs resolving to private, loopback or link-local addresses (local "
        "setups, tests). Off: such URLs are refused when registered and again before each delivery.",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="One delivery attempt's limit.")
    webhook_retry_hours: float = Field(default=24.0, gt=0, description="How long a failing delivery is retried.")
    webhook_backoff_seconds: float = Field(
        default=30.0, gt=0, description="The first retry's delay; each next one doubles (with jitter), capped at 1 h."
    )
    webhook_disable_after_failures: int = Field(
        default=50, ge=1, description="Consecutive failed attempts after which an endpoint is disabled."
    )
    dispatcher_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the dispatcher looks for due triggers and deliveries."
    )

    log_level: str = "INFO"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [o.strip().rstrip("/") for o in v.split(",") if o.strip()]
        return v

    @property
    def live_buckets(self) -> int:
        """`redis_buckets`, or its default for the kind of Redis configured."""
        if self.redis_buckets is not None:
            return self.redis_buckets
        return CLUSTER_BUCKETS if self.redis_cluster else 1

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_ends_with_colon(cls, v: str) -> str:
        return v if v.endswith(":") else v + ":"

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None


@lru_cache
def get_settings() -> Settings:
    return Settings()
