"""One percentile for the batch report and the bench: numpy's linear method, None for nothing."""

import numpy as np
import pytest

from sumctl.runtime.numbers import percentile


@pytest.mark.parametrize("values", [[3.0], [2.0, 1.0], [0.5, 9.0, 4.0, 4.0, 7.25], list(range(101))])
@pytest.mark.parametrize("q", [0, 5, 50, 95, 100])
def test_percentiles_are_numpys_linear_ones(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_missing_values_are_left_out_and_none_is_none():
    assert percentile([None, 4.0, None, 2.0], 50) == 3.0
    assert percentile([], 95) is None and percentile([None], 50) is None
