import numpy as np
import pytest

from megatron_ssd.data.ffd import bin_layout, first_fit_decreasing


def reference_ffd(lengths, capacity):
    """Textbook O(n * bins) first-fit-decreasing with the same tie rule (stable by input index)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    remaining, assign = [], [None] * len(lengths)
    for i in order:
        for b, r in enumerate(remaining):
            if r >= lengths[i]:
                remaining[b] -= lengths[i]
                assign[i] = b
                break
        else:
            remaining.append(capacity - lengths[i])
            assign[i] = len(remaining) - 1
    return np.array(assign)


def lognormal_lengths(n, capacity, seed):
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(rng.normal(np.log(capacity / 12), 1.1, n)).astype(np.int64), 1, capacity)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("capacity", [64, 1000, 4096])
def test_matches_reference_ffd(seed, capacity):
    lengths = lognormal_lengths(300, capacity, seed)
    np.testing.assert_array_equal(first_fit_decreasing(lengths, capacity), reference_ffd(lengths.tolist(), capacity))


@pytest.mark.parametrize("seed", range(3))
def test_no_bin_over_capacity_and_every_doc_placed_once(seed):
    capacity = 65536
    lengths = lognormal_lengths(20_000, capacity, seed)
    assign = first_fit_decreasing(lengths, capacity)
    assert assign.shape == lengths.shape and assign.min() == 0
    loads = np.bincount(assign, weights=lengths)
    assert loads.max() <= capacity
    assert (loads > 0).all()  # bins are numbered densely
    assert loads.sum() == lengths.sum()
    order, starts, offsets = bin_layout(assign, lengths)
    assert sorted(order.tolist()) == list(range(len(lengths)))  # each doc exactly once
    assert (offsets >= 0).all() and (offsets + lengths[order] <= capacity).all()
    for b in (0, len(starts) // 2, len(starts) - 2):
        members = order[starts[b]:starts[b + 1]]
        assert (assign[members] == b).all()
        ends = offsets[starts[b]:starts[b + 1]] + lengths[members]
        np.testing.assert_array_equal(offsets[starts[b] + 1:starts[b + 1]], ends[:-1])  # contiguous, no overlap


def test_deterministic_and_independent_of_input_order():
    lengths = lognormal_lengths(5000, 8192, 7)
    a = first_fit_decreasing(lengths, 8192)
    np.testing.assert_array_equal(a, first_fit_decreasing(lengths.copy(), 8192))
    perm = np.random.default_rng(1).permutation(len(lengths))
    b = first_fit_decreasing(lengths[perm], 8192)
    loads_a = np.bincount(a, weights=lengths)
    loads_b = np.bincount(b, weights=lengths[perm])
    np.testing.assert_array_equal(loads_a, loads_b)


def test_exact_fits_and_big_items():
    # the 4 items above half a bin each open a bin (longest first); the small ones fill the gaps exactly
    lengths = np.array([60, 70, 80, 40, 30, 20, 100, 5])
    assign = first_fit_decreasing(lengths, 100)
    np.testing.assert_array_equal(assign, [3, 2, 1, 3, 2, 1, 0, 4])
    assert np.bincount(assign, weights=lengths).tolist() == [100, 100, 100, 100, 5]


def test_rejects_bad_lengths():
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        first_fit_decreasing(np.array([3, 0]), 10)
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        first_fit_decreasing(np.array([11]), 10)
    assert first_fit_decreasing(np.array([], dtype=np.int64), 10).shape == (0,)
