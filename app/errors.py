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


class ProblemError(Exception):
    """An error the client can act on, returned as a problem-details document.

    Extra keyword arguments become members of the document (e.g. line, column, value, limit).
    """

    def __init__(self, status: int, detail: str, *, title: str | None = None, **members) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.members = {key: value for key, value in members.items() if value is not None}


def not_found(kind: str, resource_id: object) -> ProblemError:
    return ProblemError(404, f"{kind} {resource_id} not found")


def problem_response(request: Request, status: int, title: str, detail: str, **members) -> JSONResponse:
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
    return JSONResponse(document, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


async def _handle_problem(request: Request, error: ProblemError) -> JSONResponse:
    return problem_response(request, error.status, error.title, error.detail, **error.members)


async def _handle_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    title = HTTPStatus(error.status_code).phrase
    detail = error.detail if isinstance(error.detail, str) else title
    return problem_response(request, error.status_code, title, detail)


async def _handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"location": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    summary = "; ".join(f"{item['location']}: {item['message']}" for item in errors[:5])
    return problem_response(request, 422, "Unprocessable Content", f"invalid request: {summary}", errors=errors)


async def _handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "Internal Server Error", "an internal error occurred; the request id is in the logs")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Exception, _handle_unexpected)
