"""The unbiased estimator against the closed form, and the k-feasibility rule."""
import math
import random

import pytest

from megatron_ssd.evaluation.statistics.passk import feasible_ks, pass_at_k, pass_at_k_array


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_matches_closed_form_on_random_cases():
    rng = random.Random(0)
    for _ in range(2000):
        n = rng.randint(1, 200)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), rel=1e-9, abs=1e-12)


def test_edge_cases():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 6, 5) == 1.0  # n - c < k: every draw of 5 contains a correct one
    assert pass_at_k(1000, 1, 1000) == 1.0


def test_large_n_is_stable():
    # C(2000, 1000) overflows floats; the product form must not.
    assert 0.0 < pass_at_k(2000, 3, 1000) < 1.0
    assert pass_at_k(2000, 3, 1000) == pytest.approx(closed_form(2000, 3, 1000), rel=1e-9)


def test_refuses_k_above_n_and_bad_counts():
    with pytest.raises(ValueError, match="not estimable"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="at least 8"):
        pass_at_k_array([10, 4], [1, 1], 8)


def test_array_and_feasible_ks():
    assert list(pass_at_k_array([10, 10], [0, 10], 1)) == [0.0, 1.0]
    assert feasible_ks([16, 1, 4, 8, 4], 8) == ([1, 4, 8], [16])
    with pytest.raises(ValueError):
        feasible_ks([0, 1], 4)
