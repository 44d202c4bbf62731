"""The inference API's router: how it reads each event format, matches routes and shapes the
response (the handler tests drive it over every event fixture in the three formats)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.inference.router import NotFoundError, Response, Router


class Refused(ValueError):
    """A subclass: its handler is found along the class hierarchy."""


def router(fmt: Any = "rest") -> Router:
    app = Router(fmt)
    seen: list[tuple[str, str]] = []

    @app.get("/health")
    def health() -> Response:
        seen.append((app.current_event.http_method, app.current_event.path))
        return Response(200, "application/json", "{}")

    @app.post("/fail")
    def fail() -> Response:
        raise Refused("no")

    @app.exception_handler(ValueError)
    def refused(error: ValueError) -> Response:
        return Response(400, "application/json", str(error), headers={"Allow": ["GET", "POST"]})

    @app.not_found
    def not_found(_: NotFoundError) -> Response:
        event = app.current_event
        return Response(404, "text/plain", f"{event.http_method} {event.path}")

    return app


def rest(method: Any, path: Any) -> dict[str, Any]:
    return {"httpMethod": method, "path": path, "requestContext": {"requestId": "r"}}


def v2(method: str, raw_path: str, stage: str = "$default") -> dict[str, Any]:
    context = {"http": {"method": method}, "stage": stage}
    return {"version": "2.0", "rawPath": raw_path, "requestContext": context}


def test_rest_responses_carry_multi_value_headers() -> None:
    assert router().resolve(rest("GET", "/health"), None) == {
        "statusCode": 200,
        "body": "{}",
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
    }


@pytest.mark.parametrize("fmt", ["http", "function_url"])
def test_payload_2_responses_join_headers_and_carry_cookies(fmt: Any) -> None:
    assert router(fmt).resolve(v2("POST", "/fail"), None) == {
        "statusCode": 400,
        "body": "no",
        "isBase64Encoded": False,
        "headers": {"Allow": "GET, POST", "Content-Type": "application/json"},
        "cookies": [],
    }


def test_methods_match_upper_cased_and_routes_see_them_as_sent() -> None:
    app = router()
    assert app.resolve(rest("get", "/health"), None)["statusCode"] == 200
    assert (app.current_event.http_method, app.current_event.path) == ("get", "/health")


def test_rest_paths_may_end_in_slashes_payload_2_paths_may_not() -> None:
    assert router().resolve(rest("GET", "/health//"), None)["statusCode"] == 200
    assert router("http").resolve(v2("GET", "/health/"), None)["statusCode"] == 404


def test_paths_match_exactly_not_as_patterns() -> None:
    app = router()
    app.get("/openapi.json")(lambda: Response(200))
    assert app.resolve(rest("GET", "/openapiXjson"), None)["statusCode"] == 404
    assert app.resolve(rest("GET", "/health\n"), None)["statusCode"] == 404


def test_a_named_stage_is_not_part_of_the_path() -> None:
    app = router("http")
    assert app.resolve(v2("GET", "/prod/health", stage="prod"), None)["statusCode"] == 200
    assert app.current_event.path == "/health"


def test_no_route_goes_to_the_not_found_handler_with_the_method_as_sent() -> None:
    answer = router().resolve(rest("delete", "/nowhere"), None)
    assert (answer["statusCode"], answer["body"]) == (404, "delete /nowhere")


def test_an_exception_without_a_handler_propagates() -> None:
    app = Router()

    @app.get("/boom")
    def boom() -> Response:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        app.resolve(rest("GET", "/boom"), None)


@pytest.mark.parametrize(
    "event",
    [{}, rest(None, "/health"), rest("GET", None), rest("GET", 5), {"version": "2.0"}],
)
def test_an_event_it_cannot_read_raises(event: dict[str, Any]) -> None:
    with pytest.raises((KeyError, AttributeError, TypeError)):
        router("http" if "version" in event else "rest").resolve(event, None)
