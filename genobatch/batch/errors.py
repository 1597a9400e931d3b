"""Errors raised by the batch layer, named as AWS Batch names them.

A ``ClientException`` is the caller's fault (bad request, unknown resource); the CLI prints it the way the
AWS CLI does and exits 254, so scripts written against ``aws batch`` keep working.
"""

from __future__ import annotations


class ClientException(Exception):
    """The request is invalid: the message says what is wrong and how to fix it."""

    code = "ClientException"


class ParamValidationError(ClientException):
    """The request does not fit AWS Batch's shapes (unknown, missing or mistyped parameters; see ``shapes``).

    Named after botocore's error, which refuses such a request before sending it: the AWS CLI then exits 252,
    as for a malformed command line, not 254.
    """


class EngineLockedError(RuntimeError):
    """Another engine already schedules jobs from this state directory."""


class EnvironmentFault(OSError):
    """The machine's fault, not the request's: a full disk, a read-only file system, an I/O error, a damaged file.

    An ``OSError`` (with ``errno`` ENOSPC, EROFS, EIO... when known), so code that already treats the machine's
    faults as such (no traceback, "fix it and run again") handles these too. ``cause`` is one line naming the file
    and what happened to it, ``fix`` what to do; ``str()`` gives both.
    """

    def __init__(self, errno_: int, cause: str, fix: str, path: str) -> None:
        super().__init__(errno_, cause)
        self.cause, self.fix, self.path = cause, fix, path

    def __str__(self) -> str:
        return f"{self.cause}; {self.fix}"


class StateUnusable(EnvironmentFault):
    """The engine's state directory cannot be used at all (read-only, full, unreadable)."""


class EngineFailed(EnvironmentFault):
    """The engine stopped on an ``EnvironmentFault``: it killed its running attempts first (a rerun resumes).
    Raised by ``Engine.run`` and, from then on, by the ``LocalBackend`` that ran it (``submit``, ``poll``)."""
