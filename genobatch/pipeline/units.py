"""Memory sizes and durations as people write them (Nextflow style: ``8.GB``, ``512 MB``, ``2h``)."""

from __future__ import annotations

import re

from genobatch.batch.model import MIN_MEMORY_MIB

_MEMORY = re.compile(r"(\d+(?:\.\d*)?)\s*\.?\s*([KMGT]?i?B?)?", re.IGNORECASE)
_DURATION = re.compile(r"(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?", re.IGNORECASE)


def memory_mib(value: str | int) -> int:
    """``8000`` (MiB), ``8GB``/``8G``/``8.GB`` or ``512MB``, in MiB; ValueError with the accepted forms."""
    text = str(value).strip()
    match = _MEMORY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a memory size: use e.g. 16GB, 512MB or 4000 (MiB)")
    unit = (match.group(2) or "M").upper()[:1]
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "B": 1 / 2**20}[unit]
    mib = int(float(match.group(1)) * factor)
    if mib < MIN_MEMORY_MIB:
        raise ValueError(f"{text!r} is less than the smallest job memory, {MIN_MEMORY_MIB} MiB")
    return mib


STEP_MIN_MEMORY_MIB = 64  # each task's job also runs genobatch's job runner (Python, about 18 MB) beside the tool


def step_memory_mib(value: str | int) -> int:
    """A step's memory (``memory_mib``), refused below ``STEP_MIN_MEMORY_MIB``: such a job is killed for memory
    before its tool starts."""
    mib = memory_mib(value)
    if mib < STEP_MIN_MEMORY_MIB:
        raise ValueError(
            f"{str(value).strip()!r} is less than {STEP_MIN_MEMORY_MIB} MB, the least a step can have: each task's"
            " job also runs genobatch's job runner (about 18 MB)"
        )
    return mib


def seconds(value: str | int) -> int:
    """``90`` (seconds), ``30m``, ``2h``, ``1d 6h``; ValueError otherwise."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: use e.g. 90 (seconds), 30m, 2h or 1d")
    days, hours, minutes, secs = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs
