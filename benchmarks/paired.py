"""The paired per-sequence difference that every comparison script of ``benchmarks/`` reports.

Two recipes scored on the same sequences rank only when the mean of their per-sequence
differences is large against its standard error (about two of them); the spread of either
recipe over sequences is far larger and says nothing about the pair.
"""
from __future__ import annotations

import math


def paired_difference(diffs) -> tuple[float | None, float | None, int]:
    """``(mean, standard error, wins)`` of per-sequence differences ``B - A``.

    The mean is ``None`` for no differences, the standard error ``None`` for fewer than two
    (one difference has no spread to measure); wins count the sequences where ``B`` is higher.
    """
    diffs = [float(d) for d in diffs]
    n = len(diffs)
    if not n:
        return None, None, 0
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else None
    return mean, se, sum(d > 0 for d in diffs)
