"""The trigger kinds; each is also the webhook event a firing of it delivers."""

from __future__ import annotations

from typing import Literal

Kind = Literal["cart_abandoned", "browse_abandoned", "propensity_crossed", "back_in_stock"]
KINDS: tuple[Kind, ...] = ("cart_abandoned", "browse_abandoned", "propensity_crossed", "back_in_stock")
ALL_EVENTS = "*"
