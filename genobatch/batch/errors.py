"""Errors raised by the batch layer, named as AWS Batch names them.

A ``ClientException`` is the caller's fault (bad request, unknown resource); the CLI prints it the way the
AWS CLI does and exits 254, so scripts written against ``aws batch`` keep working.
"""

from __future__ import annotations


class ClientException(Exception):
    """The request is invalid: the message says what is wrong and how to fix it."""

    code = "ClientException"


class EngineLockedError(RuntimeError):
    """Another engine already schedules jobs from this state directory."""
