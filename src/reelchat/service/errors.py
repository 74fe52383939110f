"""Errors the service raises for the API layer to turn into OpenAI-shaped responses.

ServiceError
├── InvalidRequest   400: a field the user sent is wrong (param names it)
├── NotFound         404: no such task/video/sid in this tenant (other tenants' included)
├── UnknownModel     404: the model isn't in the catalog
├── Conflict         409: the resource exists, but its state doesn't allow this (a video not yet
│                         completed), or an Idempotency-Key used again with a different request
└── Busy             429: the queue is full, for everyone or for this key, or a key's limit is reached
                          (sent with Retry-After: `retry_after` seconds)
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ServiceError):
    pass


class NotFound(ServiceError):
    status = 404


class UnknownModel(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Busy(ServiceError):
    status = 429
    type = "rate_limit_error"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, retry_after: int = 5
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = max(1, retry_after)
