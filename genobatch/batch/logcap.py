"""Capped attempt logs: each ``stdout.log`` and ``stderr.log`` keeps the first ``LOG_HEAD_BYTES`` and the last
``LOG_TAIL_BYTES`` of what the attempt wrote, with one line between them saying how many bytes were dropped.

An attempt writes into two pipes; a copier thread of the engine (one per attempt, ``LogCopier``) appends what
comes to the log files at once, so ``genobatch batch logs --follow`` sees it live and a job never waits on its log for
longer than one append. Once the part after a log's head grows past twice ``LOG_TAIL_BYTES``, the copier rewrites it
as the marker line and the last ``LOG_TAIL_BYTES`` (read back from the page cache): each byte is written at most
twice, the file stays under ``LOG_HEAD_BYTES + 2 * LOG_TAIL_BYTES`` while the attempt runs and under
``LOG_LIMIT_BYTES`` (plus the marker) once it ended. The tail matters most: the pipeline shows a failed job's
last stderr lines. A write that fails (a full disk) does not stop the copying: the rest is read and counted as
lost, so an attempt never blocks on its own output; a note at the end says how much.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from pathlib import Path

LOG_HEAD_BYTES = 4 * 1024 * 1024
LOG_TAIL_BYTES = 4 * 1024 * 1024
LOG_LIMIT_BYTES = LOG_HEAD_BYTES + LOG_TAIL_BYTES  # what a finished attempt's log keeps, per stream
PIPE_BYTES = 1024 * 1024  # the pipe's buffer (Linux's default limit for pipes): fewer, larger copies
LINE_SEARCH_BYTES = 64 * 1024  # the kept tail starts at a line's start when one begins this close to the cut


def marker_line(dropped: int, after_newline: bool) -> bytes:
    head, tail = LOG_HEAD_BYTES // 2**20, LOG_TAIL_BYTES // 2**20
    line = (
        f"[genobatch: {dropped:,} bytes of this log were dropped here; a log keeps its first {head} MiB "
        f"and its last {tail} MiB]\n"
    )
    return (b"" if after_newline else b"\n") + line.encode()


class CappedLog:
    """One log file that keeps its head and its tail (see the module's docstring)."""

    def __init__(self, path: Path, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES) -> None:
        self.path, self.head, self.tail = path, head, tail
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.size = 0  # bytes in the file
        self.marker = b""  # the marker line at offset ``head``, once something was dropped
        self.dropped = 0  # bytes dropped between head and tail
        self.lost = 0  # bytes that could not be written (``error``)
        self.error: str | None = None

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self.error is None:
                written = os.pwrite(self.fd, view, self.size)  # short only when the disk fills: then it fails
                self.size += written
                view = view[written:]
        except OSError as exc:
            self.error = exc.strerror or str(exc)
        self.lost += len(view)
        self._compact(final=False)

    def close(self) -> None:
        """Cap it for good, note what was lost, close it."""
        self._compact(final=True)
        if self.error is not None and self.lost:
            with contextlib.suppress(OSError):
                note = f"\n[genobatch: the last {self.lost:,} bytes of this log were lost: {self.error}]\n"
                os.pwrite(self.fd, note.encode(), self.size)
        os.close(self.fd)

    def _compact(self, final: bool) -> None:
        """Drop the middle: keep the head, the marker and the last ``tail`` bytes (from a line's start)."""
        body = self.head + len(self.marker)
        limit = self.tail if final else 2 * self.tail
        if self.error is not None or self.size - body <= limit:
            return
        try:
            kept = os.pread(self.fd, self.tail + 1, self.size - self.tail - 1)  # and the byte before it
            newline = kept.find(b"\n", 0, LINE_SEARCH_BYTES)
            kept = kept[newline + 1 :]  # from a line's start if one is near, else (newline = -1) cut as it falls
            self.dropped += self.size - len(kept) - body
            after_newline = os.pread(self.fd, 1, self.head - 1) == b"\n"
            self.marker = marker_line(self.dropped, after_newline)
            os.pwrite(self.fd, self.marker + kept, self.head)
            self.size = self.head + len(self.marker) + len(kept)
            os.ftruncate(self.fd, self.size)
        except OSError as exc:
            self.error = exc.strerror or str(exc)


class LogCopier:
    """Copies an attempt's pipes (read ends, which it closes) into their capped logs, in one thread; ``finish``
    waits for the end of the output."""

    def __init__(self, streams: list[tuple[int, Path]]) -> None:
        self.logs: dict[int, CappedLog] = {}
        try:
            for read_fd, path in streams:
                self.logs[read_fd] = CappedLog(path)
        except OSError:
            for log in self.logs.values():
                os.close(log.fd)
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"logs {streams[0][1].parent}", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Wait until the output ended (every writer closed the pipes); stop waiting after ``timeout`` seconds (a
        process that left the attempt's group may still hold a pipe)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        poller = select.poll()
        for read_fd in self.logs:
            poller.register(read_fd, select.POLLIN)
        open_pipes = set(self.logs)
        try:
            while open_pipes and not self._stop.is_set():
                for read_fd, _ in poller.poll(100):
                    data = os.read(read_fd, PIPE_BYTES)
                    if data:
                        self.logs[read_fd].append(data)
                    else:  # every writer closed it
                        poller.unregister(read_fd)
                        open_pipes.discard(read_fd)
        finally:
            for read_fd, log in self.logs.items():
                os.close(read_fd)
                log.close()
