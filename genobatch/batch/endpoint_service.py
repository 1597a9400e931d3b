"""Serving the AWS Batch endpoint (``endpoint``) from an engine: where it listens, who may call it, and
``<state>/endpoint.json``, which tells clients (and ``genobatch engine status``) where to find it.

By default it listens on 127.0.0.1 (a free port unless ``port`` is given) and takes any credentials. Listening
on any other address needs a token (given, or generated here), which clients send as their AWS access key id:
boto3 and the aws CLI then need no change beyond ``AWS_ACCESS_KEY_ID=<token>``. The signature itself is not
checked. ``endpoint.json`` (mode 0600: it may hold the token) is written once the engine holds the state
directory's lock, so it never describes an engine that lost the race to another one, and removed on stop.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .daemon import engine_pid
from .endpoint import BatchApi, EndpointHTTPServer, is_loopback
from .store import Store
from .views import has_open_jobs

ENDPOINT_FILE = "endpoint.json"
TOKEN_ENV = "GENOBATCH_ENDPOINT_TOKEN"
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class EndpointOptions:
    host: str = DEFAULT_HOST
    port: int = 0  # 0: a free port
    token: str | None = None  # None: none on loopback, generated elsewhere


class EndpointUnavailable(OSError):
    """The endpoint cannot listen where asked (the port is taken, the address is not this machine's)."""

    def __str__(self) -> str:
        return str(self.strerror)  # the sentence, without OSError's "[Errno 98]"


def new_token() -> str:
    """A token usable as an AWS access key id (no ``/``, which would break the Authorization header)."""
    return "GB" + secrets.token_hex(16).upper()


class EndpointService:
    """The endpoint of one state directory, served from this process on a background thread."""

    def __init__(
        self, state_dir: Path, options: EndpointOptions | None = None, wake: Callable[[], None] | None = None
    ) -> None:
        options = options or EndpointOptions()
        self.state_dir = state_dir
        self.host = options.host
        self.token = options.token or (None if is_loopback(options.host) else new_token())
        self.api = BatchApi(state_dir, token=self.token, loopback_only=is_loopback(options.host), wake=wake)
        try:
            self.server = EndpointHTTPServer((options.host, options.port), self.api)
        except OSError as exc:
            self.api.close()
            taken = exc.errno == errno.EADDRINUSE
            raise EndpointUnavailable(
                exc.errno,
                f"cannot serve the AWS Batch endpoint on {options.host}:{options.port} ({exc.strerror}); "
                + (
                    "choose another --port, or --port 0 for a free one"
                    if taken
                    else "give --host an address of this machine, or 0.0.0.0 for all of them"
                ),
            ) from None
        self.port: int = self.server.server_address[1]
        self._stop = threading.Event()
        self._file_lock = threading.RLock()  # endpoint.json: written once, never after ``withdraw`` (a signal)
        self._withdrawn = False
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._serving = False  # ``shutdown`` waits for ``serve_forever``: it must not be called if that never ran

    @property
    def url(self) -> str:
        """What a client on this machine uses (a wildcard address is reached through loopback)."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """The contents of ``endpoint.json``."""
        described: dict[str, Any] = {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "tokenRequired": self.token is not None,
        }
        if self.token is not None:
            described["token"] = self.token
        return described

    def start(self) -> EndpointService:
        """Serve now; write ``endpoint.json`` as soon as this process's engine holds the state directory."""
        self._serving = True
        for target, name in ((self.server.serve_forever, "serve"), (self._publish_when_locked, "publish")):
            thread = threading.Thread(target=target, name=f"genobatch-endpoint-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop_engine_when_idle(self, idle_seconds: float, stop: Callable[[], None]) -> None:
        """The engine's ``--idle-exit`` when it serves the endpoint: a request counts as activity, so that an engine
        someone is talking to (creating queues, describing jobs between submissions) does not leave under them.
        Calls ``stop`` (withdrawing ``endpoint.json`` first) after ``idle_seconds`` with no open job and no
        request; the engine itself then runs with no idle limit."""
        thread = threading.Thread(
            target=self._watch_idle, args=(idle_seconds, stop), name="genobatch-endpoint-idle", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _watch_idle(self, idle_seconds: float, stop: Callable[[], None]) -> None:
        store = Store(self.state_dir)
        try:
            busy_at = time.monotonic()
            while not self._closing.wait(min(1.0, max(idle_seconds / 4, 0.05))):
                now = time.monotonic()
                if has_open_jobs(store.conn):
                    busy_at = now
                if now - max(busy_at, self.api.last_request) >= idle_seconds:
                    self.withdraw()
                    stop()
                    return
        finally:
            store.close()

    def _publish_when_locked(self) -> None:
        while not self._stop.is_set():
            if engine_pid(self.state_dir) == os.getpid():
                with self._file_lock:
                    if not self._withdrawn:
                        self._write()
                return
            self._stop.wait(0.01)

    def _write(self) -> None:
        path = self.state_dir / ENDPOINT_FILE
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.describe(), out, indent=4)
        os.replace(temporary, path)

    def withdraw(self) -> None:
        """Remove ``endpoint.json`` (if it is this process's) but keep serving: called when the engine is asked to
        stop, so that the file is gone before the engine's lock is released and ``genobatch engine stop`` returns.
        Clients that know the URL keep it while running jobs drain."""
        self._stop.set()
        with self._file_lock:
            self._withdrawn = True
            found = read_endpoint_file(self.state_dir)
            if found is not None and found.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    (self.state_dir / ENDPOINT_FILE).unlink()

    def close(self) -> None:
        """Stop serving, and withdraw ``endpoint.json``."""
        self._closing.set()
        self.withdraw()
        if self._serving:
            self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.api.close()


def read_endpoint_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((state_dir / ENDPOINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def read_endpoint(state_dir: Path) -> dict[str, Any] | None:
    """The endpoint of the engine running on ``state_dir`` (None if none runs, or it serves none)."""
    found = read_endpoint_file(state_dir)
    pid = engine_pid(state_dir)
    if found is None or pid is None or found.get("pid") != pid:
        return None  # left by an engine that was killed, or not yet written
    return found
