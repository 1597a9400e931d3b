"""The one log-copier thread of the engine's process (``logcap``) survives a log file that fails: every other
attempt's output is still copied, and the failed one still ends (else its attempt would never be recorded)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from genobatch.batch.logcap import LogCopier


def test_a_log_whose_file_fails_to_close_does_not_stop_the_copying_of_the_others(tmp_path: Path) -> None:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    failing = LogCopier([(read_end, tmp_path / "failing.log")])
    os.write(write_end, b"first line\n")
    log = failing.logs[read_end]
    deadline = time.monotonic() + 10
    while log.size == 0 and time.monotonic() < deadline:  # the copier opens the file at the first output
        time.sleep(0.01)
    real, log.fd = log.fd, 1 << 20  # its disk gone (EIO on a network file system): writing and closing fail
    os.close(real)
    os.close(write_end)
    assert failing.done.wait(10), "the failed log never ended: its attempt would wait for it for ever"
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    other = LogCopier([(read_end, tmp_path / "other.log")])
    os.write(write_end, b"still copied\n")
    os.close(write_end)
    assert other.done.wait(10), "one failed log stopped the copying of every attempt's"
    assert (tmp_path / "other.log").read_bytes() == b"still copied\n"
