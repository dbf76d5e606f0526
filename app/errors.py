"""Errors as RFC 9457 problem details, mapped from domain errors in one place."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Python 3.11's HTTPStatus phrases predate RFC 9110 for these codes.
RFC_9110_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def status_title(status: int) -> str:
    """Return the RFC 9110 reason phrase of an HTTP status code."""
    return RFC_9110_TITLES.get(status) or HTTPStatus(status).phrase


class ProblemError(Exception):
    """An error the client can act on, returned as a problem-details document.

    Extra keyword arguments become members of the document (e.g. line, column, value, limit);
    headers are sent on the response (e.g. WWW-Authenticate).
    """

    def __init__(
        self, status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **members
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or status_title(status)
        self.headers = headers
        self.members = {key: value for key, value in members.items() if value is not None}


def not_found(kind: str, resource_id: object) -> ProblemError:
    return ProblemError(404, f"{kind} {resource_id} not found")


def problem_response(
    request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None, **members
) -> JSONResponse:
    document = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **members,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        document["request_id"] = request_id
    return JSONResponse(document, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _handle_problem(request: Request, error: ProblemError) -> JSONResponse:
    return problem_response(request, error.status, error.title, error.detail, error.headers, **error.members)


async def _handle_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    title = status_title(error.status_code)
    detail = error.detail if isinstance(error.detail, str) else title
    members = getattr(error, "problem_members", {})
    return problem_response(request, error.status_code, title, detail, error.headers, **members)


def _is_json_content_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def _handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    content_type = request.headers.get("content-type")
    body_rejected = any(item["loc"][:1] == ("body",) for item in error.errors())
    # FastAPI parses a body as JSON only when the request declares a JSON media type. A body of
    # any other declared type reaches validation as raw bytes, so the error names the type.
    if body_rejected and content_type and not _is_json_content_type(content_type):
        return problem_response(
            request, 415, "Unsupported Media Type",
            f"the request body must be JSON sent with Content-Type: application/json, not {content_type!r}",
        )

    errors = [
        {"location": ".".join(str(part) for part in item["loc"]), "message": _message_of(item)}
        for item in error.errors()
    ]
    summary = "; ".join(f"{item['location']}: {item['message']}" for item in errors[:5])
    return problem_response(request, 422, "Unprocessable Content", f"invalid request: {summary}", errors=errors)


def _message_of(item: dict) -> str:
    if item.get("type") == "json_invalid":
        reason = (item.get("ctx") or {}).get("error", "")
        return f"invalid JSON at character {item['loc'][-1]}: {reason}".rstrip(": ")
    return item["msg"]


async def _handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception(
        "unhandled error on %s %s", request.method, request.url.path,
        extra={"request_id": getattr(request.state, "request_id", None)},
    )
    return problem_response(request, 500, "Internal Server Error", "an internal error occurred; the request id is in the logs")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Exception, _handle_unexpected)
