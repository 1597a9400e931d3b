"""Capped attempt logs: each ``stdout.log`` and ``stderr.log`` keeps the first ``LOG_HEAD_BYTES`` and the last
``LOG_TAIL_BYTES`` of what the attempt wrote, with one line between them saying how many bytes were dropped.

An attempt writes into two pipes; one thread of the engine copies every attempt's pipes (``LogCopier``), appending
what comes to the log files at once, so ``genobatch batch logs --follow`` sees it live and a job never waits on its
log for longer than one append. Once the part after a log's head grows past twice ``LOG_TAIL_BYTES``, the copier
rewrites it as the marker line and the last ``LOG_TAIL_BYTES`` (read back from the page cache): each byte is written
at most twice, the file stays under ``LOG_HEAD_BYTES + 2 * LOG_TAIL_BYTES`` while the attempt runs and under
``LOG_LIMIT_BYTES`` (plus the marker) once it ended. The tail matters most: the pipeline shows a failed job's last
stderr lines. A write that fails (a full disk) does not stop the copying: the rest is read and counted as lost, so
an attempt never blocks on its own output; a note at the end says how much.
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
        self.fd = -1  # ``open`` creates the file (in the pump's thread, off the engine's)
        self.size = 0  # bytes in the file
        self.marker = b""  # the marker line at offset ``head``, once something was dropped
        self.dropped = 0  # bytes dropped between head and tail
        self.lost = 0  # bytes that could not be written (``error``)
        self.error: str | None = None

    def open(self) -> None:
        """Create (or empty) the file; if that fails, what comes is counted as lost, as after a failed write."""
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.error = exc.strerror or str(exc)

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
        if self.fd < 0 and self.error is None:  # no output came: an empty log, as for any attempt
            self.open()
        if self.fd < 0:
            return
        self._compact(final=True)
        if self.error is not None and self.lost:
            with contextlib.suppress(OSError):
                note = f"\n[genobatch: the last {self.lost:,} bytes of this log were lost: {self.error}]\n"
                os.pwrite(self.fd, note.encode(), self.size)
        with contextlib.suppress(OSError):  # (EIO from a lost disk): the one copier thread must go on
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
    """Copies an attempt's pipes (read ends, which it closes) into their capped logs; ``finish`` waits for the end
    of the output. The one ``_Pump`` thread of the process creates the log files, at the first output or end of
    output, and copies into them: creating a file costs about 0.1 ms of CPU here, spent beside the engine's."""

    def __init__(self, streams: list[tuple[int, Path]]) -> None:
        self.logs = {read_fd: CappedLog(path) for read_fd, path in streams}
        self.open_pipes = set(self.logs)
        self.done = threading.Event()  # every pipe ended (or was given up), and every log is closed
        _pump().add(self)

    def finish(self, timeout: float) -> None:
        """Wait until the output ended (every writer closed the pipes); stop waiting after ``timeout`` seconds (a
        process that left the attempt's group may still hold a pipe)."""
        if not self.done.wait(timeout):
            _pump().abandon(self)
            self.done.wait()

    def copy(self, read_fd: int) -> bool:
        """Copy what ``read_fd`` holds now (in the pump's thread); whether it ended (then ``close`` it)."""
        log = self.logs[read_fd]
        if log.fd < 0 and log.error is None:
            log.open()
        try:
            data = os.read(read_fd, PIPE_BYTES)
        except OSError:  # not expected from a pipe; never let it stop the copying of the others
            data = b""
        if data:
            log.append(data)
            return False
        return True

    def close(self, read_fd: int) -> None:
        os.close(read_fd)
        try:
            self.logs[read_fd].close()
        finally:  # whatever the log did, its output ended: ``finish`` must not wait for ever
            self.open_pipes.discard(read_fd)
            if not self.open_pipes:
                self.done.set()


class _Pump:
    """One thread copies the pipes of every attempt, sleeping in ``epoll`` until output comes: a thread per attempt
    cost the engine about 0.7 ms per launch (its start-up, and handing Python's GIL back and forth). The engine's
    thread adds pipes itself (``epoll_ctl`` is safe across threads), so a launch does not wake this one; giving up on
    pipes goes through a request, since only this thread closes them."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.copiers: dict[int, LogCopier] = {}  # pipe read end -> its copier (an fd is added here before epoll)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epoll.register(self.wake_r, select.EPOLLIN)
        self.abandoned: list[LogCopier] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.run, name="genobatch-logs", daemon=True).start()

    def add(self, copier: LogCopier) -> None:
        for read_fd in copier.logs:
            self.copiers[read_fd] = copier
            self.epoll.register(read_fd, select.EPOLLIN)

    def abandon(self, copier: LogCopier) -> None:
        with self.lock:
            self.abandoned.append(copier)
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"x")

    def run(self) -> None:
        while True:
            for read_fd, _ in self.epoll.poll():
                if read_fd == self.wake_r:
                    self._give_up()
                elif (copier := self.copiers.get(read_fd)) is not None and copier.copy(read_fd):
                    self._close(copier, read_fd)

    def _close(self, copier: LogCopier, read_fd: int) -> None:
        self.epoll.unregister(read_fd)
        del self.copiers[read_fd]  # before the fd is closed and its number can be reused
        copier.close(read_fd)

    def _give_up(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 4096)
        with self.lock:
            abandoned, self.abandoned = self.abandoned, []
        for copier in abandoned:
            for read_fd in list(copier.open_pipes):
                self._close(copier, read_fd)


_PUMP: list[_Pump] = []  # the process's one pump, started at the first attempt
_PUMP_LOCK = threading.Lock()


def _pump() -> _Pump:
    with _PUMP_LOCK:  # engines of several state directories may run in one process (threads)
        if not _PUMP:
            _PUMP.append(_Pump())
        return _PUMP[0]
