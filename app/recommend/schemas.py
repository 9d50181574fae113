from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import Id


class Sources(BaseModel):
    cf: float = Field(description="Collaborative-filtering score, normalised to [0, 1].")
    content: float = Field(description="Content-similarity score, normalised to [0, 1].")
    popularity: float = Field(description="Popularity score, normalised to [0, 1].")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    sources: Sources
    reason: str
    title: str | None = None


class ExperimentTag(BaseModel):
    id: int
    variant: str


class Recommendations(BaseModel):
    recommendation_id: str = Field(description="Send it back with events on these items (attribution).")
    model_version: str | None
    strategy: str = Field(description="hybrid | popularity_cold_start | popularity_no_model | "
                          "content_only | degraded_popularity ...")
    items: list[RecommendedItem]
    placement: str | None = Field(default=None, description="The placement whose rules arranged the list.")
    experiment: ExperimentTag | None = Field(
        default=None, description="The experiment running on the placement and the shopper's variant.")


class UserRecommendationsQuery(BaseModel):
    """The query string of GET /v1/users/{user_id}/recommendations, validated in one pydantic call
    (`http.query_model`) and documented from this model (`http.query_parameters`)."""

    n: int = Field(default=10, ge=1, le=100, description="How many items.")
    category: str | None = Field(default=None, min_length=1, max_length=256)
    exclude_seen: bool = Field(default=False, description="true: drop every item the user interacted with; "
                               "false: drop only purchased items.")
    available_only: bool = True
    alpha: float | None = Field(default=None, ge=0, le=1, description="Override the CF weight.")
    min_price: float | None = Field(default=None, ge=0, le=1e9)
    max_price: float | None = Field(default=None, ge=0, le=1e9)
    explain: bool = Field(default=True, description="Reasons are always included; kept for compatibility.")
    placement: str | None = Field(default=None, min_length=1, max_length=64,
                                  description="A placement's rules (filters, boosts, pins, diversity, rotation).")


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_ids: list[Id] = Field(min_length=0, max_length=200, description="The basket/session, newest first.")
    n: int = Field(default=10, ge=1, le=100)
    category: Id | None = None
    available_only: bool = True
    user_id: Id | None = Field(default=None, description="The shopper, if known: placement rotation and "
                               "experiments follow them.")


class SimilarUser(BaseModel):
    user_id: str
    score: float


class SimilarUsers(BaseModel):
    user_id: str
    model_version: str | None
    users: list[SimilarUser]
