"""Numbers that sumctl reports: one definition of a percentile for `sumctl batch`'s report and
`sumctl bench`'s, so that a p95 means the same thing in both."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0-100) of the values that are not None, interpolated linearly
    between the two nearest ranks (numpy's default method); None when there are none."""
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    position = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)
