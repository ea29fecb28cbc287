"""Every API failure as `{"error": {"code", "message"}}` with a fitting HTTP status.

`code` is stable for programs; `message` is for people and never an exception's text.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from ..errors import ChatError
from .parsing import NotText

log = logging.getLogger(__name__)

# Refusals from the chat services. The budget is 402: retrying soon will not help (unlike 429),
# and it is not a permission the person lacks (403) but money their limit does not cover.
CHAT_ERROR_STATUS = {
    "busy": 409,
    "not_running": 409,
    "nothing_to_continue": 409,
    "model_disabled": 409,
    "too_long": 413,
    "over_budget": 402,
    "not_found": 404,
    "empty": 400,
    "bad_model": 400,
    "bad_preset": 400,
}

# A reply that ended in error, as the waiting endpoint's status: Anthropic busy or this server
# restarting is worth retrying (503); anything else upstream is a bad gateway (502).
RETRYABLE_REPLY_ERRORS = {"rate_limited", "overloaded", "interrupted"}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def reply_error_status(error_code: str) -> int:
    if error_code == "internal":
        return 500
    return 503 if error_code in RETRYABLE_REPLY_ERRORS else 502


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = JsonResponse({"error": body}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = [{"loc": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", "invalid"))} for e in errors[:20]]
    if not details:
        return "The request is not valid.", details
    first = details[0]
    where = ".".join(first["loc"][1:] or first["loc"])
    return f"The request is not valid: {where}: {first['message']}", details


def install(api: NinjaAPI) -> None:
    """Replace ninja's default handlers (`{"detail": …}`, 422, HTML 500) with ours."""

    @api.exception_handler(ApiError)
    def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    @api.exception_handler(ChatError)
    def _chat_error(request: HttpRequest, exc: ChatError) -> HttpResponse:
        return error_response(CHAT_ERROR_STATUS.get(exc.code, 400), exc.code, exc.message)

    @api.exception_handler(Http404)
    def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "not_found", "Not found. It does not exist or is not yours.")

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = "Authentication required: send `Authorization: Bearer <token>` with an active API token (create one on your account page)."
        return error_response(401, "unauthenticated", message, headers={"WWW-Authenticate": 'Bearer realm="chatsite"'})

    @api.exception_handler(Throttled)
    def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
        wait = max(1, math.ceil(exc.wait)) if exc.wait is not None else 1
        message = f"Too many requests for this token. Try again in {wait} second{'s' if wait != 1 else ''}."
        return error_response(429, "rate_limited", message, headers={"Retry-After": str(wait)})

    @api.exception_handler(ValidationError)
    def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        message, details = _validation_message(exc.errors)
        return error_response(400, "invalid_request", message, details=details)

    @api.exception_handler(HttpError)
    def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 403 and "csrf" in exc.message.lower():
            return error_response(403, "csrf_failed", "CSRF check failed: browser sessions must send the X-CSRFToken header on unsafe requests.")
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = "The request body is not valid JSON." if exc.status_code == 400 else exc.message
        if isinstance(exc.__cause__, NotText):
            message = "The request body holds characters that are not text (a lone surrogate such as \\ud800)."
        return error_response(exc.status_code, code, message)

    @api.exception_handler(RequestDataTooBig)
    def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return error_response(413, "too_large", "The request body is too large.")

    @api.exception_handler(Exception)
    def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("API request %s %s failed", request.method, request.path)
        return error_response(500, "internal", "Something went wrong on the server. Try again; if it keeps happening, tell an administrator.")
