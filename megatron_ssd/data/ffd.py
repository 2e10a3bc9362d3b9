"""First-fit-decreasing bin packing of document lengths into fixed-capacity bins.

Hand-written because no maintained library does FFD at this scale with a guaranteed order: `binpacking` is
O(n * bins) pure Python, OR-tools solves an ILP (minutes for 10^5 items, solver-dependent output), and the
Megatron/NeMo packers are greedy or tied to their datasets. FFD here is O(n log bins): a max segment tree over the
bins' remaining capacities finds the leftmost bin that still fits in one root-to-leaf descent. The result depends
only on the lengths and the capacity (stable sort, integer arithmetic), so packing the same samples twice gives
the same bins.
"""
from __future__ import annotations

import numpy as np


def first_fit_decreasing(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Bin index for every item (in input order). Items are placed longest first (ties: lower input index first),
    each into the lowest-numbered bin with room; bins are numbered in the order they were opened.

    Every length must be in [1, capacity].
    """
    sizes_in = np.asarray(lengths, dtype=np.int64)
    if sizes_in.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {sizes_in.shape}")
    n = len(sizes_in)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if sizes_in.min() < 1 or sizes_in.max() > capacity:
        raise ValueError(f"lengths must lie in [1, {capacity}]; got min {sizes_in.min()}, max {sizes_in.max()}")
    order = np.argsort(-sizes_in, kind="stable")
    sizes = sizes_in[order]
    assign_sorted = np.empty(n, dtype=np.int64)

    # Items longer than half a bin can never share one (each earlier bin already holds an item at least as long),
    # so they open bins 0..k-1 in order without a search.
    k = int(np.count_nonzero(2 * sizes > capacity))
    assign_sorted[:k] = np.arange(k)

    # First fit leaves at most one bin at most half full, so bins <= 2 * total / capacity + 1.
    max_bins = min(n, int(2 * sizes.sum() // capacity) + 2)
    leaves = 1 << max(0, (max_bins - 1).bit_length())
    tree = [-1] * (2 * leaves)
    tree[leaves:leaves + max_bins] = [capacity] * max_bins
    tree[leaves:leaves + k] = (capacity - sizes[:k]).tolist()
    for i in range(leaves - 1, 0, -1):
        a, b = tree[2 * i], tree[2 * i + 1]
        tree[i] = a if a >= b else b

    rest = sizes[k:].tolist()
    out = [0] * len(rest)
    for j, s in enumerate(rest):
        if tree[1] < s:  # cannot happen given the bound above; never place into a -1 sentinel leaf
            raise AssertionError(f"FFD bin bound {max_bins} exceeded")
        i = 1
        while i < leaves:  # descend to the leftmost leaf with remaining capacity >= s
            i <<= 1
            if tree[i] < s:
                i += 1
        out[j] = i - leaves
        tree[i] -= s
        i >>= 1
        while i:  # restore the max invariant upwards; stop as soon as a node is unchanged
            a, b = tree[2 * i], tree[2 * i + 1]
            m = a if a >= b else b
            if tree[i] == m:
                break
            tree[i] = m
            i >>= 1
    assign_sorted[k:] = out
    assign = np.empty(n, dtype=np.int64)
    assign[order] = assign_sorted
    return assign


def bin_layout(assign: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order documents inside bins and give their offsets.

    Returns `(doc_order, bin_starts, offsets)`: `doc_order` lists item indices grouped by bin (inside a bin longest
    first, as FFD placed them), `bin_starts[b]:bin_starts[b + 1]` is bin b's slice of `doc_order`, and `offsets[i]`
    is the start of item `doc_order[i]` inside its bin.
    """
    assign = np.asarray(assign, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    placement = np.argsort(-lengths, kind="stable")
    doc_order = placement[np.argsort(assign[placement], kind="stable")]
    num_bins = int(assign.max()) + 1 if len(assign) else 0
    counts = np.bincount(assign, minlength=num_bins)
    bin_starts = np.concatenate(([0], np.cumsum(counts)))
    ends = np.cumsum(lengths[doc_order])
    offsets = ends - lengths[doc_order] - np.repeat(np.concatenate(([0], ends))[bin_starts[:-1]], counts)
    return doc_order, bin_starts, offsets
