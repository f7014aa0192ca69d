"""Refuse a request before allocating it: one cost estimate per command, checked here.

A command that can be asked for more than the machine holds (a grid of 10¹⁸ points,
T = 10⁹ steps, a batch of 2·10⁹ rows) must say so in one line *before* it builds
anything, not die in the allocator minutes later or take the machine down with it.
The pattern, for any command:

1. Work out, by arithmetic on the validated options alone, how many bytes the largest
   thing the command will hold at once needs (e.g. a grid cell keeps q_0..q_T and
   r_0..r_T: ``2 · (T + 1) · M · 8`` bytes; a batch of a network needs
   ``batch · width · 4`` bytes per layer). Use Python integers, which cannot overflow.
2. Call :func:`check_memory` with a short description of the request, that estimate
   and the option that changes it::

       from serialrepro.budget import check_memory
       check_memory(f"--n {n} samples of dimension {d}", n * d * 8, "lower --n")

   It raises :class:`~serialrepro.errors.UserInputError` (exit code 2 through the CLI)
   naming the request, the estimate and the limit, or returns the estimate.
3. Do this before the first file is written and before any tensor is allocated.

Work that is not memory (steps, cells, rows) is bounded the same way with
:func:`check_count`, and process pools with :func:`cap_workers` (at most the usable
CPUs, with the message to print when it capped).

The limit is :func:`available_bytes`: a safety fraction (:data:`SAFETY_FRACTION`) of
the memory the system reports available (``MemAvailable`` in ``/proc/meminfo``, or
``sysconf`` elsewhere), no more than the process's address-space limit
(``RLIMIT_AS``) where one is set. The environment variable
``SERIALREPRO_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix in powers of 1024)
replaces it, so tests and shared machines can set a budget of their own.
"""

from __future__ import annotations

import math
import os
import re

from serialrepro.errors import UserInputError

#: seeds are stored as int64 (tables) and fed to ``torch.manual_seed``: 0 ≤ seed ≤ 2^63 − 1
MAX_SEED = 2**63 - 1

#: the environment variable that replaces the measured limit (bytes; K/M/G/T suffixes)
MEMORY_LIMIT_ENV = "SERIALREPRO_MEMORY_LIMIT"
#: fraction of the available memory a single request may claim (the rest is headroom for
#: the interpreter, libraries and the temporaries of the computation itself)
SAFETY_FRACTION = 0.8

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"1536M"``, ``"1.5G"``, ``"2000000"`` → bytes (suffixes in powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise UserInputError(f"memory size {text!r} is invalid; give bytes, e.g. 2000000000, "
                             "or a size with a K, M, G or T suffix, e.g. 1.5G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    """A byte count for people: ``1.5 GiB``, ``12 MiB``, ``8.7e+09 TiB``."""
    if not math.isfinite(n):
        return str(n)
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            text = f"{value:.3g}" if value < 1000 else f"{value:.0f}" if value < 1e6 \
                else f"{value:.2g}"
            return f"{text} {unit}"
    return f"{int(n)} B"


def _system_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: no limit known
        return 1 << 62


def _address_space_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _limit() -> tuple[int, str]:
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env:
        return parse_bytes(env), f"${MEMORY_LIMIT_ENV}"
    limit = int(SAFETY_FRACTION * _system_available())
    source = f"{SAFETY_FRACTION:.0%} of available memory"
    rlimit = _address_space_limit()
    if rlimit is not None and int(SAFETY_FRACTION * rlimit) < limit:
        limit, source = int(SAFETY_FRACTION * rlimit), \
            f"{SAFETY_FRACTION:.0%} of the address-space limit"
    return limit, source


def available_bytes() -> int:
    """The most one request may claim: ``$SERIALREPRO_MEMORY_LIMIT`` if set, else
    :data:`SAFETY_FRACTION` of the available memory, capped by ``RLIMIT_AS``."""
    return _limit()[0]


def check_memory(request: str, bytes_needed: int | float, option_hint: str) -> int:
    """Refuse ``request`` (e.g. ``"grid torus:100000, T=50"``) when ``bytes_needed``
    exceeds :func:`available_bytes`; returns the estimate otherwise.

    The error is one line: the request, the estimate, the limit and ``option_hint``, the
    option that lowers the cost (e.g. ``"use a coarser grid or fewer steps"``). A
    non-finite or negative estimate is a bug in the caller's arithmetic, not a user
    error, and raises ``ValueError``.
    """
    if isinstance(bytes_needed, float) and not math.isfinite(bytes_needed):
        raise ValueError(f"memory estimate for {request} is {bytes_needed!r}")
    if bytes_needed < 0:
        raise ValueError(f"memory estimate for {request} is negative: {bytes_needed!r}")
    limit, source = _limit()
    if bytes_needed > limit:
        raise UserInputError(
            f"{request} needs about {format_bytes(bytes_needed)} of memory but the limit is "
            f"{format_bytes(limit)} ({source}); {option_hint}")
    return int(bytes_needed)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_workers(requested: int, option: str = "--workers") -> tuple[int, str | None]:
    """``requested`` worker processes capped at :func:`usable_cpus`, with the message to
    print when it was capped (None otherwise). Workers beyond the CPU count only add
    memory (each holds its own interpreter, torch and cell), not speed."""
    if requested < 1:
        raise UserInputError(f"{option} {requested} is invalid; it must be ≥ 1")
    cpus = usable_cpus()
    if requested <= cpus:
        return requested, None
    return cpus, f"{option} {requested} capped at {cpus}, the number of usable CPUs"


def check_count(request: str, count: int, limit: int, option_hint: str) -> int:
    """Refuse ``request`` when ``count`` (steps, cells, rows: work rather than bytes)
    exceeds ``limit``; the one-line error names both and ``option_hint``."""
    if count > limit:
        raise UserInputError(f"{request} is {count}, above the limit of {limit}; "
                             f"{option_hint}")
    return count
