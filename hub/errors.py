"""Every error the hub raises, in one tree.

    HubError
    ├── ConfigError                 hub.yaml is invalid (names the file, line and path)
    ├── IntakeError                 a webhook is refused; carries its HTTP status
    │   ├── UnknownSource           404  no source of that name in hub.yaml
    │   ├── PayloadTooLarge         413  body over the configured limit
    │   ├── BodyTimeout             408  body not received within server.body_timeout
    │   ├── SignatureError          401  signature missing, wrong, or timestamp out of range
    │   └── InvalidPayload          400  not JSON, or fails the source's JSON Schema
    ├── StoreError                  the store refused or failed an operation
    │   └── StoreUnavailable        503  the store cannot be reached
    ├── NormalizeError              a stored payload cannot become canonical events
    ├── AdminError                  the admin API refuses a request; carries its HTTP status
    │   ├── BadRequest              400  a malformed parameter or body (names it)
    │   ├── Unauthorized            401  no token, or not one of admin.tokens
    │   ├── Forbidden               403  a viewer's token on an operator's action
    │   ├── NotFound                404  no such event, booking, job or destination
    │   ├── Conflict                409  the action does not apply (replaying a live job)
    │   └── BodyTooLarge            413  a request body over server.max_body
    └── DeliveryError               a destination did not take a delivery
        ├── RetryableDelivery       try again later (optionally not before retry_after)
        └── PermanentDelivery       retrying cannot help: dead-letter at once

Connectors signal their outcome with these: a source connector raises SignatureError or
InvalidPayload from ``verify``; a destination connector raises RetryableDelivery or
PermanentDelivery from ``deliver``. Anything else a connector raises is treated as
retryable and recorded with its type and message.
"""

from __future__ import annotations

__all__ = [
    "AdminError",
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "Forbidden",
    "HubError",
    "IntakeError",
    "InvalidPayload",
    "NormalizeError",
    "NotFound",
    "PayloadTooLarge",
    "PermanentDelivery",
    "RetryableDelivery",
    "SignatureError",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UnknownSource",
]


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The configuration file is invalid; the message names where and why."""


class _Refusal(HubError):
    """A request the hub refuses: ``status`` is the HTTP status, ``code`` a stable error
    name, and the JSON answer names the part of the request at fault under ``points_at``."""

    status: int = 400
    code: str = "bad_request"
    points_at: str = "field"

    def __init__(self, detail: str, at: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.at = at

    def to_json(self) -> dict[str, str]:
        body = {"error": self.code, "detail": self.detail}
        if self.at is not None:
            body[self.points_at] = self.at
        return body


class IntakeError(_Refusal):
    """A webhook was refused; ``field`` names the part of the payload at fault."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, field)

    @property
    def field(self) -> str | None:
        return self.at


class UnknownSource(IntakeError):
    status = 404
    code = "unknown_source"


class PayloadTooLarge(IntakeError):
    status = 413
    code = "payload_too_large"


class BodyTimeout(IntakeError):
    status = 408
    code = "body_timeout"


class SignatureError(IntakeError):
    status = 401
    code = "invalid_signature"


class InvalidPayload(IntakeError):
    status = 400
    code = "invalid_payload"


class StoreError(HubError):
    """The store failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; intake answers 503 so the provider retries."""

    status = 503
    code = "store_unavailable"


class NormalizeError(HubError):
    """A payload passed its schema but cannot be turned into canonical events."""


class AdminError(_Refusal):
    """The admin API refuses a request; ``parameter`` names the parameter or body field at
    fault, if one is."""

    points_at = "parameter"

    @property
    def parameter(self) -> str | None:
        return self.at


class BadRequest(AdminError):
    status = 400
    code = "bad_request"


class Unauthorized(AdminError):
    status = 401
    code = "unauthorized"


class Forbidden(AdminError):
    status = 403
    code = "forbidden"


class NotFound(AdminError):
    status = 404
    code = "not_found"


class Conflict(AdminError):
    status = 409
    code = "conflict"


class BodyTooLarge(AdminError):
    status = 413
    code = "payload_too_large"


class DeliveryError(HubError):
    """A destination did not take a delivery.

    ``status`` is the HTTP status the destination answered, if any; ``response`` an excerpt
    of its body.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        response: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.response = response


class RetryableDelivery(DeliveryError):
    """Try again later; ``retry_after`` (seconds) is the destination's own wish, if any."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, status=status, response=response)
        self.retry_after = retry_after


class PermanentDelivery(DeliveryError):
    """Retrying cannot help (bad credentials, a payload the destination rejects)."""
