"""The gateway's error hierarchy: each error knows its HTTP status and OpenAI `type`/`code`.

Errors are raised anywhere on the request path and turned into responses in one place
(`gateway.app`). The body is OpenAI's shape: `{"error": {"message", "type", "code", "param"}}`.
"""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    code: str | None
    param: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


class GatewayError(Exception):
    """Base class: a refusal or failure that has a precise client-facing answer."""

    # Class-level defaults; an instance may carry its own status (a relayed upstream 4xx).
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers

    def body(self) -> bytes:
        return _encoder.encode(
            ErrorEnvelope(ErrorBody(self.message, self.type, self.code, self.param))
        )


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"


class InvalidApiKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotAllowed(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class MalformedHttpRequest(GatewayError):
    """Bytes that are not an HTTP/1.1 request we can read (answered before any route: the
    instance carries the status, 400 or a more precise one)."""

    status = 400
    type = "invalid_request_error"
    code = "malformed_http_request"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class UpstreamError(GatewayError):
    """Every candidate failed upstream (5xx, connect error, malformed answer)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class ServiceUnavailable(GatewayError):
    """Every candidate is open (breaker) or the gateway is draining."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_timeout"
    code = "upstream_timeout"


class UpstreamRejected(GatewayError):
    """An upstream 4xx caused by the request: relayed to the client with its status and body."""

    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, status: int, body: bytes, content_type: bytes) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.upstream_body = body
        self.content_type = content_type

    def body(self) -> bytes:
        return self.upstream_body
