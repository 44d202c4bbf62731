"""The inference API's router: fixed routes over API Gateway (REST 1.0, HTTP API 2.0) and
function URL events, in place of Powertools' event handler.

Powertools' resolvers served these routes until they cost more than they gave: importing
``aws_lambda_powertools.event_handler`` loads every resolver it ships (AppSync, Bedrock, VPC
Lattice...), ``asyncio`` and ``ssl`` with them, and every Lambda event data class, about 60 ms of
a cold start; per request, its data-class wrapping, regex matching, middleware chain and
compression check were about half of a one-row call (README, "Inference"). The API has four
static routes and needs none of CORS, compression, validation or path parameters.

What the API relied on is kept, and the handler tests check it over every event fixture in the
three formats: the method and path as Powertools read them (REST: ``httpMethod`` and ``path``;
payload 2.0: ``requestContext.http.method`` and ``rawPath`` less a stage other than
``$default``), trailing slashes ignored on REST paths only, the method compared upper-cased,
exception handlers looked up along the exception's class hierarchy, a custom not-found
handler, and the response shapes
(``multiValueHeaders`` for REST; ``headers`` and ``cookies`` for payload 2.0). An event that is
not one of these (no method, a path that is not a string) raises, as it did in Powertools, for
the caller's 500. Paths otherwise match exactly, where Powertools' regex ``^/openapi.json$``
also matched ``/openapiXjson``, and any route's a path ending in a newline.

The decorators keep Powertools' names (``get``, ``post``, ``exception_handler``, ``not_found``,
``current_event.raw_event``) so that a route reads as it did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

Format = Literal["rest", "http", "function_url"]
Route = Callable[[], "Response"]


class NotFoundError(Exception):
    """No route for the request's method and path (given to the ``not_found`` handler)."""


class Response:
    """A route's answer: status, body text and headers (``content_type`` becomes the
    ``Content-Type`` header unless ``headers`` names one)."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: str | None = None,
        headers: Mapping[str, str | list[str]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str | list[str]] = dict(headers) if headers else {}
        if content_type:
            self.headers.setdefault("Content-Type", content_type)


class Event:
    """The request being routed: its raw event, and its method (as sent) and path."""

    __slots__ = ("http_method", "path", "raw_event")

    def __init__(self, raw_event: dict[str, Any], http_method: str, path: str) -> None:
        self.raw_event = raw_event
        self.http_method = http_method
        self.path = path


class Router:
    """Routes one event format's requests to the functions registered with :meth:`get` and
    :meth:`post`; :meth:`resolve` answers an event as the format's Lambda response dict."""

    def __init__(self, event_format: Format = "rest") -> None:
        self.payload_v2 = event_format != "rest"
        self.current_event = Event({}, "", "")
        self._routes: dict[tuple[str, str], Route] = {}
        self._handlers: dict[type[BaseException], Callable[[Any], Response]] = {}

    def route(self, path: str, method: str) -> Callable[[Route], Route]:
        """Register a function for ``method`` on ``path`` (exact match)."""

        def register(func: Route) -> Route:
            self._routes[(method.upper(), path)] = func
            return func

        return register

    def get(self, path: str) -> Callable[[Route], Route]:
        """Register a ``GET`` route."""
        return self.route(path, "GET")

    def post(self, path: str) -> Callable[[Route], Route]:
        """Register a ``POST`` route."""
        return self.route(path, "POST")

    def exception_handler(
        self, exc_class: type[BaseException]
    ) -> Callable[[Callable[[Any], Response]], Callable[[Any], Response]]:
        """Register the answer to a route's ``exc_class`` (and its subclasses')."""

        def register(func: Callable[[Any], Response]) -> Callable[[Any], Response]:
            self._handlers[exc_class] = func
            return func

        return register

    def not_found(self, func: Callable[[NotFoundError], Response]) -> Callable[..., Response]:
        """Register the answer to a method and path with no route."""
        return self.exception_handler(NotFoundError)(func)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda response to ``event``; raises only for an event it cannot read."""
        del context  # routes read the event only; kept for the Lambda handler's signature
        if self.payload_v2:
            request = event["requestContext"]
            method = request["http"]["method"]
            stage, path = request["stage"], event["rawPath"]
            if stage != "$default":
                path = path[len("/" + stage) :]
            route_path = path
        else:
            method, path = event["httpMethod"], event["path"]
            # Powertools' REST resolver matched ^/route/*$: trailing slashes are the route's.
            route_path = path.rstrip("/") if isinstance(path, str) and path.endswith("/") else path
        if not isinstance(path, str):
            raise TypeError(f"the event's path is a {type(path).__name__}, not a string")
        self.current_event = Event(event, method, path)
        route = self._routes.get((method.upper(), route_path))
        try:
            if route is None:
                raise NotFoundError(f"no route for {method} {path}")
            response = route()
        except Exception as error:  # noqa: BLE001  # the registered handlers decide
            response = self._handle(error)
        return self._serialize(response)

    def _handle(self, error: Exception) -> Response:
        for kind in type(error).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler(error)
        raise error

    def _serialize(self, response: Response) -> dict[str, Any]:
        headers = response.headers
        if self.payload_v2:  # payload 2.0: repeated headers joined, cookies apart
            joined = {k: v if isinstance(v, str) else ", ".join(v) for k, v in headers.items()}
            return {
                "statusCode": response.status_code,
                "body": response.body,
                "isBase64Encoded": False,
                "headers": joined,
                "cookies": [],
            }
        multi = {k: [v] if isinstance(v, str) else list(v) for k, v in headers.items()}
        return {
            "statusCode": response.status_code,
            "body": response.body,
            "isBase64Encoded": False,
            "multiValueHeaders": multi,
        }
