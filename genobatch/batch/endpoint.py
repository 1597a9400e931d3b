"""AWS Batch's REST API over the local engine: the rest-json protocol botocore speaks, so boto3 and the aws CLI
work unchanged with ``endpoint_url`` (``--endpoint-url``).

Routes come from botocore's own service model (each operation's ``http.requestUri``, the model ``shapes`` loads),
and each served operation is the ``BatchClient`` verb of the same name: whatever ``BatchClient`` gains is served
too, validated by the same shapes. Errors take AWS's shape (``x-amzn-ErrorType`` header, ``{"__type",
"message"}`` body), which botocore turns into a ``ClientError`` with that code. Paginated operations (those whose
request has ``nextToken`` and ``maxResults``) page as AWS does, with opaque tokens.

This module only does the Batch API (``BatchApi.handle``: a request in, a ``Response`` out; ``BatchApiHandler``:
the HTTP glue). Serving it from an engine (address, token, ``endpoint.json``) is ``endpoint_service``'s; another
page (a dashboard) mounts beside it by answering its own paths before calling ``BatchApi.handle``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .client import BatchClient
from .errors import ClientException, EnvironmentFault
from .shapes import validate, vendored_model

log = logging.getLogger("genobatch.endpoint")

MAX_BODY_BYTES = 8 * 1024 * 1024  # far above any Batch request (AWS caps job definitions at 24 KiB)
# AWS's documented page sizes: ListJobs returns up to 1000 per page, the describe verbs 1 to 100 (default 100).
PAGE_LIMITS = {"ListJobs": 1000}
DEFAULT_PAGE_LIMIT = 100
READ_PREFIXES = ("Describe", "List", "Get")  # operations that write nothing: the engine need not look
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An answer in AWS's error shape: HTTP ``status``, error ``code`` (``__type``) and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return Response(self.status, {"__type": self.code, "message": self.message}, {"x-amzn-ErrorType": self.code})


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]


def _uri_pattern(uri: str) -> re.Pattern[str]:
    """``/v1/tags/{resourceArn}`` -> a regex matching the path (``{name+}`` may span slashes)."""
    parts = re.split(r"(\{\w+\+?\})", uri.split("?", 1)[0])
    regex = "".join(
        ("(.+)" if part.endswith("+}") else "([^/]+)") if part.startswith("{") else re.escape(part) for part in parts
    )
    return re.compile(regex + "/?$")


@functools.cache
def routes() -> tuple[Route, ...]:
    """Every operation of AWS Batch's model, as (method, path pattern)."""
    operations = vendored_model()["operations"]
    return tuple(
        Route(name, op["http"]["method"], _uri_pattern(op["http"]["requestUri"])) for name, op in operations.items()
    )


def _method_name(operation: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower()


@functools.cache
def served_operations() -> dict[str, str]:
    """Operation -> ``BatchClient`` method, for every model operation the local engine implements."""
    model = {route.operation for route in routes()}
    found = {getattr(getattr(BatchClient, name, None), "aws_operation", None): name for name in dir(BatchClient)}
    return {operation: method for operation, method in found.items() if operation in model}


@functools.cache
def paginated_operations() -> dict[str, str]:
    """Operation -> the list its pages split, for served operations whose request takes nextToken and maxResults."""
    model = vendored_model()
    shapes, out = model["shapes"], {}
    for operation in served_operations():
        spec = model["operations"][operation]
        request = shapes[spec["input"]["shape"]]["members"]
        response = shapes[spec["output"]["shape"]]["members"]
        if {"nextToken", "maxResults"} <= request.keys() and "nextToken" in response:
            lists = [name for name, m in response.items() if shapes[m["shape"]]["type"] == "list"]
            if len(lists) == 1:
                out[operation] = lists[0]
    return out


def _without_nulls(value: Any) -> Any:
    """AWS leaves unset members out rather than sending null (recursing only into containers: describe-jobs of 100
    jobs holds ~80,000 values)."""
    if type(value) is dict:
        return {k: _without_nulls(v) if type(v) in _CONTAINERS else v for k, v in value.items() if v is not None}
    if type(value) is list:
        return [_without_nulls(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = (dict, list)


# --- pagination tokens ------------------------------------------------------------------------------------
def _fingerprint(operation: str, request: Mapping[str, Any]) -> str:
    """Ties a token to the query it pages, so it cannot be replayed against another one."""
    text = json.dumps([operation, request], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(operation: str, request: Mapping[str, Any], position: str) -> str:
    raw = json.dumps([_fingerprint(operation, request), position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(operation: str, request: Mapping[str, Any], token: str) -> int:
    """The position a token from ``encode_token`` stands for; ``ClientException`` for any other token."""
    try:
        fingerprint, position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if fingerprint == _fingerprint(operation, request) and str(position).isdigit():
            return int(position)
    except (ValueError, TypeError, binascii.Error):
        pass
    raise ClientException(
        f"Invalid nextToken {token[:40]!r}: use a nextToken returned by {operation} with the same parameters, "
        "or leave nextToken out to start from the first page"
    )


class _ClientPool:
    """One ``BatchClient`` (one SQLite connection) per concurrent request, reused: a connection is not shared
    between threads, and opening one per request would cost a schema check each time."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._idle: list[BatchClient] = []
        self._all: list[BatchClient] = []

    @contextlib.contextmanager
    def borrowed(self) -> Iterator[BatchClient]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = BatchClient(self.state_dir)
            with self._lock:
                self._all.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all, self._idle = [], []


class BatchApi:
    """AWS Batch's REST API on one state directory. ``token``: when set, requests must be signed with it as their
    AWS access key id. ``loopback_only``: refuse requests whose Host is not this machine (DNS rebinding).
    ``wake``: called after a request that wrote (the engine in this process looks at once)."""

    def __init__(
        self,
        state_dir: Path,
        token: str | None = None,
        loopback_only: bool = True,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.token, self.loopback_only, self.wake = token, loopback_only, wake
        self.clients = _ClientPool(state_dir)
        self.last_request = time.monotonic()  # an engine serving requests is not idle (endpoint_service)

    def close(self) -> None:
        self.clients.close()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """One request (header names in lower case): check who asks, find the operation, run it; every failure
        in AWS's error shape."""
        request_id = str(uuid.uuid4())
        self.last_request = time.monotonic()
        try:
            self.check_access(headers)
            operation = self.route(method, path)
            response = Response(200, _without_nulls(self.call(operation, _request_body(body))))
        except ApiError as exc:
            response = exc.response()
        response.headers["x-amzn-RequestId"] = request_id
        return response

    def check_access(self, headers: Mapping[str, str]) -> None:
        if self.loopback_only and not is_loopback(host_of(headers.get("host", ""))):
            raise ApiError(
                403,
                "AccessDeniedException",
                f"Host {headers.get('host')!r} is not this machine: the endpoint serves loopback clients only "
                "(use http://127.0.0.1:PORT, or start the engine with --host and a --token)",
            )
        found = CREDENTIAL.search(headers.get("authorization") or "")
        if found is None:
            raise ApiError(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token: sign requests as boto3 and the aws CLI do (any credentials"
                + (")" if self.token is None else "; the access key id must be this endpoint's token)"),
            )
        if self.token is not None and not hmac.compare_digest(found.group(1).encode(), self.token.encode()):
            raise ApiError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid: this endpoint takes its token as the "
                "AWS access key id (AWS_ACCESS_KEY_ID=<token>; see endpoint.json in the engine's state directory)",
            )

    @staticmethod
    def route(method: str, path: str) -> str:
        """The operation ``method path`` names; ``UnknownOperationException`` (404) if none."""
        quoted = urlsplit(path).path  # matched before decoding: an ARN in the path holds an encoded "/"
        plain = unquote(quoted)
        matches = [route for route in routes() if route.pattern.match(quoted)]
        for route in matches:
            if route.method == method:
                if route.operation not in served_operations():
                    raise ApiError(
                        400,
                        "ClientException",
                        f"{route.operation} is an AWS Batch operation the local genobatch engine does not "
                        f"implement; it implements: {', '.join(sorted(served_operations()))}",
                    )
                return route.operation
        allowed = f" (it takes {', '.join(sorted({r.method for r in matches}))})" if matches else ""
        raise ApiError(404, "UnknownOperationException", f"No AWS Batch operation at {method} {plain}{allowed}")

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run one operation; caller errors become ClientException (400), the machine's ServerException (500)."""
        try:
            with self.clients.borrowed() as client:
                if operation in paginated_operations():
                    response = self._paged(client, operation, request)
                else:
                    response = getattr(client, served_operations()[operation])(**request)
            if self.wake is not None and not operation.startswith(READ_PREFIXES):
                self.wake()
            return response
        except ClientException as exc:  # with ParamValidationError: the service's answer to a request botocore
            raise ApiError(400, "ClientException", str(exc)) from None  # would not have sent
        except EnvironmentFault as exc:
            raise ApiError(500, "ServerException", str(exc)) from None
        except Exception as exc:
            log.exception("%s failed", operation)
            raise ApiError(500, "ServerException", f"{operation} failed: {type(exc).__name__}: {exc}") from None

    def _paged(self, client: BatchClient, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One page, as AWS gives it; ListJobs pages in SQL (by submission order), the describe verbs in memory
        (their lists are short)."""
        validate(operation, request)
        query = {k: v for k, v in request.items() if k not in ("nextToken", "maxResults")}
        maximum = PAGE_LIMITS.get(operation, DEFAULT_PAGE_LIMIT)
        limit = request.get("maxResults", maximum)
        if not 1 <= limit <= maximum:
            raise ClientException(f"maxResults must be from 1 to {maximum} for {operation}, got {limit}")
        start = decode_token(operation, query, request["nextToken"]) if request.get("nextToken") else 0
        method = getattr(client, served_operations()[operation])
        if operation == "ListJobs":  # views.list_jobs takes the last submission order seen
            response: dict[str, Any] = method(**query, maxResults=limit, **({"nextToken": str(start)} if start else {}))
            inner = response.pop("nextToken", None)
            if inner is not None:
                response["nextToken"] = encode_token(operation, query, inner)
            return response
        response = method(**query)
        key = paginated_operations()[operation]
        items = response[key]
        response[key] = items[start : start + limit]
        if start + limit < len(items):
            response["nextToken"] = encode_token(operation, query, str(start + limit))
        return response


def _request_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "SerializationException", f"The request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ApiError(400, "SerializationException", "The request body must be a JSON object")
    return request


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(host_header: str) -> str:
    """The host a Host header names (``127.0.0.1:8080``, ``[::1]:8080``, ``localhost``); "" if malformed."""
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # "[::1" and the like
        return ""


def _unread_body(length: int, given: str) -> Response:
    """The answer to a request whose body is not read: too long, chunked, or of no stated length."""
    if length < 0:
        return ApiError(400, "SerializationException", f"Content-Length {given[:40]!r} is not a byte count").response()
    why = f"over {MAX_BODY_BYTES} bytes" if length else "chunked: send it with a Content-Length"
    return ApiError(413, "ClientException", f"request body {why}").response()


class EndpointHTTPServer(ThreadingHTTPServer):
    """A thread per connection (boto3 keeps its connections open), each request on a pooled SQLite connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: BatchApi, handler: type[BatchApiHandler] | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        self._connections: set[Any] = set()  # open kept-alive connections, ended by ``server_close``
        self._connections_lock = threading.Lock()
        super().__init__(address, handler or BatchApiHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:  # here, before its thread starts: ``server_close`` cannot miss it
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening and end the connections clients keep open: their threads would otherwise wait up to
        ``BatchApiHandler.timeout`` for a next request, holding their sockets after the engine stopped."""
        super().server_close()
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class BatchApiHandler(BaseHTTPRequestHandler):
    """HTTP glue: read the body, let ``BatchApi`` answer, write the answer."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    server_version = "genobatch"
    timeout = 120  # an idle kept-alive connection ends its thread
    disable_nagle_algorithm = True  # headers and body are two writes: without it each answer waits ~40 ms

    def do_POST(self) -> None:
        self.answer()

    do_GET = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_POST  # noqa: N815 - OPTIONS: no CORS, a 404

    def answer(self) -> None:
        assert isinstance(self.server, EndpointHTTPServer)
        given = self.headers.get("Content-Length") or "0"
        length = int(given) if given.isdigit() else -1
        if length < 0 or length > MAX_BODY_BYTES or "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.close_connection = True  # the body is not read: the connection cannot be reused
            response = _unread_body(length, given)
        else:
            body = self.rfile.read(length) if length > 0 else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = self.server.api.handle(self.command, self.path, headers, body)
        payload = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.address_string(), format % args)
