"""Every table, imported in one place so Alembic and the schema-drift test see the whole metadata."""

from app.auth.models import ApiKey
from app.catalog.models import Item
from app.db import Base
from app.events.models import Event, EventId
from app.experiments.models import Experiment, experiment_exposures
from app.placements.models import Placement
from app.runs.models import ModelRun, RedisSkip
from app.triggers.models import HighTier, Trigger, TriggerFire, TriggerPending
from app.users.models import User, UserErasure
from app.webhooks.models import Webhook, WebhookDelivery

__all__ = ["ApiKey", "Base", "Event", "EventId", "Experiment", "HighTier", "Item", "ModelRun", "Placement",
           "RedisSkip", "Trigger", "TriggerFire", "TriggerPending", "User", "UserErasure", "Webhook", "WebhookDelivery",
           "experiment_exposures"]
