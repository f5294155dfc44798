"""The trie of a profile's distinct stacks, built with numpy, for the flamegraph encoders.

The trie is built one depth at a time: at each depth the (parent node, frame) keys of all
stacks still that deep are uniqued together, so there is no Python loop over stacks or
samples. Frames are ranked by name before keying, which makes every node's children a
contiguous run sorted by name (the flame graph's conventional sibling order) and keeps parent
ids non-decreasing (node ids grow with depth, and within a depth with the parent).
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from hostprof.model import Frame
from hostprof.model import Profile


@dataclasses.dataclass
class StackTrie:
    """Distinct stacks of a profile as a trie. Node 0 is the root (the empty stack)."""

    parent: np.ndarray
    """Parent node id of each node (int64, ``parent[0] == -1``); never decreasing."""
    frame: np.ndarray
    """Index into :attr:`frames` of each node (int64, ``frame[0] == -1``)."""
    frames: List[Frame]
    """The frames the trie uses, sorted by (function, file, line, kind)."""
    depth_start: np.ndarray
    """Nodes of depth ``d`` (root: 0) are ``depth_start[d] <= id < depth_start[d + 1]``."""
    row_node: np.ndarray
    """For each kept row of the profile, the node of its stack."""
    row_labels: np.ndarray
    """For each kept row, its label-set id in the profile."""
    values: np.ndarray
    """``(rows, sample types)`` values of the kept rows (rows with any non-zero value)."""
    n_stacks: int
    """Number of distinct stacks."""

    def __len__(self) -> int:
        return len(self.parent)

    def sums(self, column: int, rows: np.ndarray | None = None) -> tuple:
        """Self and total value per node of one sample type, over ``rows`` (default: all).

        Returns:
            ``(self_values, total_values)``, float64 arrays indexed by node id.
        """
        vals = self.values[:, column].astype(np.float64)
        nodes = self.row_node
        if rows is not None:
            vals, nodes = vals[rows], nodes[rows]
        self_v = np.bincount(nodes, weights=vals, minlength=len(self.parent))
        total = self_v.copy()
        # Deepest level first: each level adds its totals into the level above.
        for d in range(len(self.depth_start) - 2, 0, -1):
            lo, hi = int(self.depth_start[d]), int(self.depth_start[d + 1])
            if hi > lo:
                np.add.at(total, self.parent[lo:hi], total[lo:hi])
        return self_v, total


def _frame_key(frame: Frame) -> tuple:
    return (frame.function, frame.file, frame.line, int(frame.kind))


def build(profile: Profile) -> StackTrie:
    """Builds the trie of ``profile``'s stacks; rows whose values are all zero are dropped."""
    sids, lids, vals = profile.arrays()
    keep = (vals != 0).any(axis=1)
    sids, lids, vals = sids[keep], lids[keep], vals[keep]

    flat, offsets = profile.stacks.export()
    flat = np.asarray(flat, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    used, row_stack = np.unique(sids, return_inverse=True)
    starts = offsets[used]
    lens = offsets[used + 1] - starts

    # Rank frames by (function, file, line, kind): siblings then come out sorted by name.
    frames = list(profile.frames)
    order = sorted(range(len(frames)), key=lambda i: _frame_key(frames[i]))
    n_ranks = max(len(frames), 1)
    rank = np.empty(n_ranks, dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(frames), dtype=np.int64)

    node_of = np.zeros(len(used), dtype=np.int64)  # 0 = the root, for empty stacks
    parents: List[np.ndarray] = [np.array([-1], dtype=np.int64)]
    node_ranks: List[np.ndarray] = [np.array([-1], dtype=np.int64)]
    depth_start = [0, 1]
    next_id = 1
    depth = 0
    max_len = int(lens.max()) if len(lens) else 0
    while depth < max_len:
        active = np.flatnonzero(lens > depth)
        keys = node_of[active] * n_ranks + rank[flat[starts[active] + depth]]
        uniq, inverse = np.unique(keys, return_inverse=True)
        parents.append(uniq // n_ranks)
        node_ranks.append(uniq % n_ranks)
        node_of[active] = next_id + inverse.reshape(-1)
        next_id += len(uniq)
        depth_start.append(next_id)
        depth += 1

    parent = np.concatenate(parents)
    node_rank = np.concatenate(node_ranks)
    # Keep only frames the trie uses, renumbered in rank (name) order.
    used_ranks, node_frame = np.unique(node_rank[1:], return_inverse=True)
    by_rank = [frames[i] for i in order]
    return StackTrie(
        parent=parent,
        frame=np.concatenate(([-1], node_frame.reshape(-1))).astype(np.int64),
        frames=[by_rank[r] for r in used_ranks.tolist()],
        depth_start=np.asarray(depth_start, dtype=np.int64),
        row_node=node_of[row_stack.reshape(-1)],
        row_labels=np.asarray(lids, dtype=np.int64),
        values=vals,
        n_stacks=len(used),
    )
