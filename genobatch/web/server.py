"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer`` (no framework to install: a
handful of GET routes and one POST), pages from jinja2 templates, a small script that polls the JSON API
every second. Nothing is fetched from elsewhere (the machine may have no internet).

Safety: paths in URLs are never paths on disk (segments are run and job ids, checked by ``files.safe_name``,
looked up in the records); static files come from a fixed list; the run's reports are served sandboxed (their
scripts get an opaque origin, so they cannot call the API). Cancel/terminate need the token in a header
(``X-Genobatch-Token``), which a cross-site form cannot send. On loopback, the Host header must name loopback
(DNS rebinding); on any other address every request needs the token.
"""

from __future__ import annotations

import hmac
import json
import socket
import sqlite3
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from genobatch import __version__
from genobatch.batch import ClientException
from genobatch.batch.endpoint import host_of, is_loopback  # one DNS-rebinding check, the endpoint's

from .api import Dashboard, NotFound
from .tasks import TASK_PAGE, TaskQuery

HERE = Path(__file__).resolve().parent
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}  # the only static files there are
TOKEN_HEADER = "X-Genobatch-Token"
COOKIE = "genobatch_token"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
REPORT_CSP = "sandbox allow-scripts allow-popups allow-downloads"  # the reports' own scripts, no same origin


def _number(query: dict[str, str], name: str) -> int | None:
    """A whole-number query parameter (``attempt``, ``offset``), or a ValueError (400) naming it."""
    given = query.get(name)
    if not given:
        return None
    if not (given.isascii() and given.isdigit() and len(given) <= 15):
        raise ValueError(
            f"{name}={given[:40]!r} is not a whole number of at most 15 digits (give {name}=0 or more, or leave it out)"
        )
    return int(given)


def _task_query(query: dict[str, str]) -> TaskQuery:
    """The run page's ``state``, ``search``, ``offset`` and ``limit`` (one page of its task table)."""
    offset, limit = _number(query, "offset"), _number(query, "limit")
    return TaskQuery(
        group=query.get("state") or "all",
        search=query.get("search", "")[:200],
        offset=offset or 0,
        limit=TASK_PAGE if limit is None else limit,
    )


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, work: Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(
                f"the dashboard on {host} would show logs and commands to the network: give --token T "
                "(or --allow-stop, which makes one), or serve on 127.0.0.1 and reach it through an SSH tunnel"
            )
        self.dashboard = Dashboard(work)
        self.token = token
        self.open_reads = is_loopback(host)  # reads need no token on loopback
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
        )
        if ":" in host:  # an IPv6 address
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests; ``shutdown()`` stops it)."""
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="genobatch-dashboard", daemon=True)
        thread.start()
        return thread


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = f"genobatch/{__version__}"
    authorised = False  # set per request by ``_allowed`` when a token was shown

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: a page polls every second."""

    # --- dispatch -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not self._allowed(query):
            return
        try:
            self._get(parts, query)
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc), api=parts[:1] == ["api"])
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), api=parts[:1] == ["api"])
        except (OSError, sqlite3.Error) as exc:  # a database being set aside, a disk gone: the next poll retries
            why = f"the work directory could not be read now ({exc}); the page tries again"
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, why, api=parts[:1] == ["api"])

    do_HEAD = do_GET  # noqa: N815 - the headers of a GET (``_send`` leaves the body out)

    def _get(self, parts: list[str], query: dict[str, str]) -> None:
        board = self.server.dashboard
        match parts:
            case []:
                self._page("runs")
            case ["queues"]:
                self._page("queues")
            case ["runs", run_id]:
                self._page("run", run_id=run_id)
            case ["runs", run_id, ("report" | "multiqc") as which]:
                path = board.report_file(board.record(run_id), which)
                if path is None:
                    raise NotFound(f"run {run_id} has no {which} report (yet)")
                self._file(path, "text/html; charset=utf-8", REPORT_CSP)
            case ["static", name] if name in STATIC:
                self._file(HERE / "static" / name, STATIC[name] + "; charset=utf-8", PAGE_CSP)
            case ["api", "runs"]:
                self._json(board.runs())
            case ["api", "queues"]:
                self._json(board.queues())
            case ["api", "runs", run_id]:
                self._json(board.run(run_id, _task_query(query)))
            case ["api", "runs", run_id, "jobs", job_id]:
                self._json(board.job(run_id, job_id))
            case ["api", "runs", run_id, "jobs", job_id, "log"]:
                attempt, offset = _number(query, "attempt"), _number(query, "offset")
                self._json(board.log(run_id, job_id, attempt, query.get("stream", "stderr"), offset))
            case _:
                raise NotFound(f"no page {'/'.join(parts)}")

    def do_POST(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if not self._host_ok():
            return
        given = self.headers.get(TOKEN_HEADER, "")
        if not self.server.token or not hmac.compare_digest(given.encode(), self.server.token.encode()):
            why = "this dashboard is read-only: start it with --allow-stop or --token" if not self.server.token else (
                "a wrong or missing token: open the address `genobatch serve` printed (it carries ?token=)"
            )  # fmt: skip
            self._error(HTTPStatus.FORBIDDEN, why, api=True)
            return
        match parts:
            case ["api", "runs", run_id, "jobs", job_id, "stop"]:
                try:
                    length = min(int(self.headers.get("Content-Length") or 0), 10_000)
                    body = json.loads(self.rfile.read(length) or b"{}")
                    reason = str(body.get("reason") or "stopped from the dashboard")[:200]
                    self._json(self.server.dashboard.stop(run_id, job_id, reason))
                except NotFound as exc:
                    self._error(HTTPStatus.NOT_FOUND, str(exc), api=True)
                except (ValueError, AttributeError, ClientException) as exc:
                    self._error(HTTPStatus.BAD_REQUEST, str(exc), api=True)
            case _:
                self._error(HTTPStatus.NOT_FOUND, f"no action {'/'.join(parts)}", api=True)

    # --- access -------------------------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        """On loopback, only loopback names in Host: a page elsewhere cannot rebind its name to us."""
        if not self.server.open_reads:
            return True
        host = host_of(self.headers.get("Host") or "")
        if is_loopback(host):
            return True
        self._error(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this machine's loopback", api=False)
        return False

    def _allowed(self, query: dict[str, str]) -> bool:
        if not self._host_ok():
            return False
        if self.server.open_reads or not self.server.token:
            return True
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        given = (
            query.get("token") or self.headers.get(TOKEN_HEADER) or (cookie[COOKIE].value if COOKIE in cookie else "")
        )
        if hmac.compare_digest(given.encode(), self.server.token.encode()):
            self.authorised = True  # the cookie is given to those who showed the token, no one else
            return True
        self._error(HTTPStatus.UNAUTHORIZED, "this dashboard needs its token: open the address it printed", api=False)
        return False

    # --- answers ------------------------------------------------------------------------------------------
    def _page(self, page: str, run_id: str = "") -> None:
        template = self.server.templates.get_template("page.html")
        html = template.render(
            page=page, run_id=run_id, controls=bool(self.server.token), work=str(self.server.dashboard.work),
            version=__version__,
        )  # fmt: skip
        self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8", PAGE_CSP)

    def _json(self, data: dict[str, Any]) -> None:
        self._send(HTTPStatus.OK, json.dumps(data).encode(), "application/json", PAGE_CSP)

    def _file(self, path: Path, kind: str, csp: str) -> None:
        self._send(HTTPStatus.OK, path.read_bytes(), kind, csp)

    def _error(self, status: HTTPStatus, message: str, api: bool) -> None:
        if api:
            body, kind = json.dumps({"error": message}).encode(), "application/json"
        else:
            template = self.server.templates.get_template("error.html")
            body, kind = template.render(status=int(status), message=message).encode(), "text/html; charset=utf-8"
        self._send(status, body, kind, PAGE_CSP)

    def _send(self, status: HTTPStatus, body: bytes, kind: str, csp: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        if self.authorised and COOKIE not in (self.headers.get("Cookie") or ""):
            self.send_header("Set-Cookie", f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
