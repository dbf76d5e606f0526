"""ASGI middleware: request ids, access logs, request metrics and request-body limits."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics

logger = logging.getLogger("app.access")

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class BodyTooLargeError(HTTPException):
    """A request body went past its limit while the route was reading it.

    It is an HTTPException so that FastAPI, which turns other errors raised while it reads a
    JSON body into a generic 400, passes it on to the 413 problem-details handler.
    """

    def __init__(self, limit_bytes: int, limit_name: str) -> None:
        super().__init__(
            413, _too_large_detail(limit_bytes, limit_name), headers={"connection": "close"}
        )
        self.limit_bytes = limit_bytes
        self.problem_members = {"limit": limit_name, "limit_bytes": limit_bytes}


def _too_large_detail(limit_bytes: int, limit_name: str) -> str:
    setting = "PERFLAW_" + limit_name.upper()
    return f"the request body is larger than the limit of {limit_bytes} bytes (server setting {setting})"


class RequestContextMiddleware:
    """Give every request an id, cap its body size, log it and record its latency.

    X-Request-ID is taken from the request when it is a short token of safe characters,
    otherwise a new one is made; it is returned on the response and put on the log line.
    Upload routes may send max_upload_bytes; every other body is capped at max_body_bytes.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int, upload_paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        is_upload = scope["path"] in self.upload_paths and scope["method"] == "POST"
        limit = self.max_upload_bytes if is_upload else self.max_body_bytes
        limit_name = "max_upload_mb" if is_upload else "max_json_body_kb"
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        declared = self._declared_length(scope)
        if declared is not None and declared > limit:
            await self._send_too_large(scope, send, request_id, limit, limit_name)
            self._record(scope, 413, started, request_id)
            return

        received_bytes = 0

        async def limited_receive() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > limit:
                    raise BodyTooLargeError(limit, limit_name)
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLargeError:
            if status_holder["started"]:
                raise
            await self._send_too_large(scope, send, request_id, limit, limit_name)
            status_holder["status"] = 413
        finally:
            self._record(scope, status_holder["status"], started, request_id)

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_PATTERN.match(candidate):
                    return candidate
        return uuid.uuid4().hex

    @staticmethod
    def _declared_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    @staticmethod
    async def _send_too_large(scope: Scope, send: Send, request_id: str, limit: int, limit_name: str) -> None:
        body = json.dumps({
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": _too_large_detail(limit, limit_name),
            "limit": limit_name,
            "limit_bytes": limit,
            "instance": scope["path"],
            "request_id": request_id,
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _record(scope: Scope, status: int, started: float, request_id: str) -> None:
        elapsed_s = time.perf_counter() - started
        route = scope.get("route")
        path_template = getattr(route, "path", None) or "unmatched"
        metrics.observe_request(scope["method"], path_template, status, elapsed_s)
        logger.info(
            "%s %s %d %.1f ms", scope["method"], scope["path"], status, elapsed_s * 1000,
            extra={
                "request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round(elapsed_s * 1000, 3),
            },
        )
