"""`/api/v1/`: the HTTP API (django-ninja), its OpenAPI schema and interactive docs.

Mounted by chatsite/urls.py with `include("conversations.api.urls")`. Besides ninja's own
routes, anything else under the prefix answers in the API's JSON error format too (unknown
path: 404, wrong method: 405), so clients never have to parse an HTML error page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, include, path, re_path
from ninja import NinjaAPI, Swagger
from ninja.operation import Operation

from . import errors
from .auth import api_auth, request_throttle
from .endpoints import router
from .parsing import TextJsonParser

DESCRIPTION = """
Chat with Claude from programs. Authenticate with a personal API token from your account page
(`Authorization: Bearer chs_…`); a logged-in browser session works too (unsafe methods then
need the `X-CSRFToken` header). Errors are `{"error": {"code", "message"}}`. See docs/api.md.
"""

class ChatsiteAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The endpoint's name (`message_send_stream`), not ninja's module-qualified one: client
        # generators turn these into method names.
        return operation.view_func.__name__


api = ChatsiteAPI(
    title="Chatsite API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    auth=api_auth,
    throttle=[request_throttle],
    # Served from ninja's bundled swagger-ui files ("ninja" is in INSTALLED_APPS): no CDN needed.
    docs=Swagger(settings={"persistAuthorization": True}),
    parser=TextJsonParser(),
)
errors.install(api)
api.add_router("", router)


def _json_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """ninja answers a wrong method with a plain-text 405; make it the API's JSON error."""

    def fix(response: HttpResponse) -> HttpResponse:
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            return errors.error_response(405, "method_not_allowed", f"Use {allowed} on this path.", headers={"Allow": allowed})
        return response

    if asyncio.iscoroutinefunction(view):
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return fix(await view(request, *args, **kwargs))

        wrapper = async_wrapper
    else:
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return fix(view(request, *args, **kwargs))

        wrapper = sync_wrapper
    wrapper.csrf_exempt = getattr(view, "csrf_exempt", False)  # type: ignore[attr-defined]
    return wrapper


def _not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return errors.error_response(404, "not_found", "No such API endpoint. The schema is at /api/v1/openapi.json.")


_patterns, _app_name, _namespace = api.urls
_patterns = [
    URLPattern(p.pattern, _json_errors(p.callback), p.default_args, p.name) if isinstance(p, URLPattern) else p for p in _patterns
]

urlpatterns = [
    path("", include((_patterns, _app_name), namespace=_namespace)),
    re_path(r"^.*$", _not_found),
]
