"""Every table, imported in one place so Alembic and the schema-drift test see the whole metadata."""

from app.auth.models import ApiKey
from app.catalog.models import Item
from app.db import Base
from app.events.models import Event
from app.placements.models import Placement
from app.runs.models import ModelRun, RedisSkip
from app.users.models import User, UserErasure

__all__ = ["ApiKey", "Base", "Event", "Item", "ModelRun", "Placement", "RedisSkip", "User", "UserErasure"]
