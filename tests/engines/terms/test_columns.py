"""The term library's dictionary (mctsff.engines.terms.columns)."""

import numpy as np
import pytest

from mctsff.engines.terms.columns import lstsq


def test_amplitudes_are_solved_with_scaled_columns():
    """Next to a column 1e130 times larger (a Gaussian growing to the cutoff) the other
    still gets its amplitude (unscaled, it fell under lstsq's rank cut)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=50), 1e130 * rng.normal(size=50)])
    y = X @ np.array([2.0, 3e-130])
    assert lstsq(X, y) == pytest.approx([2.0, 3e-130], rel=1e-9)
