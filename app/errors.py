"""Typed errors that carry their HTTP status; one handler renders them as {"error", "detail"}."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 400
    code = "BadRequest"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail if detail is not None else self.code
        self.headers = headers


class BadRequest(AppError):
    status, code = 400, "BadRequest"


class MalformedJSON(AppError):
    status, code = 400, "MalformedJSON"


class Unauthorized(AppError):
    status, code = 401, "Unauthorized"


class Forbidden(AppError):
    status, code = 403, "Forbidden"


class NotFound(AppError):
    status, code = 404, "NotFound"


class ItemNotFound(NotFound):
    code = "ItemNotFound"


class UserNotFound(NotFound):
    code = "UserNotFound"


class PlacementNotFound(NotFound):
    code = "PlacementNotFound"


class Conflict(AppError):
    status, code = 409, "Conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "PayloadTooLarge"


class ValidationFailed(AppError):
    status, code = 422, "ValidationError"


class RateLimited(AppError):
    status, code = 429, "RateLimited"


class ServiceUnavailable(AppError):
    status, code = 503, "ServiceUnavailable"


class ModelNotReady(ServiceUnavailable):
    code = "ModelNotReady"
