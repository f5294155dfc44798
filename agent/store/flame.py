"""Builds flamegraphs (Pyroscope's flamebearer layout) from per-stack values.

Input is ``{stack id: value}`` from :meth:`Backend.merge` and the stacks' function names.
Output levels hold, per node, ``[xOffsetDelta, total, self, nameIndex]``: the format
``/pyroscope/render`` and ``FlameGraph`` (querier.v1) share; see docs/store-api.md.
"""

from __future__ import annotations

from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof.native._flametree import FlameTree

OTHER = "other"
UNKNOWN = "[unknown stack]"


class Tree:
    """A call tree merged from stacks; node 0 is the root ("total").

    Every node keeps one self value per side (one side for a flamegraph, two for a diff).
    A child's id is always greater than its parent's.
    """

    def __init__(self, sides: int = 1) -> None:
        self.parent: List[int] = [-1]
        self.name: List[str] = ["total"]
        self.selfv: List[List[int]] = [[0] for _ in range(sides)]
        self._index: Dict[Tuple[int, str], int] = {}
        # (FlameTree, its names) when built in C: flamebearer() then lays out in C too.
        self._native: Optional[Tuple[FlameTree, List[str]]] = None

    def add(self, names: Sequence[str], value: int, side: int = 0) -> None:
        """Adds ``value`` to the stack ``names`` (root first)."""
        node = 0
        index = self._index
        for name in names:
            child = index.get((node, name))
            if child is None:
                child = index[(node, name)] = len(self.parent)
                self.parent.append(node)
                self.name.append(name)
                for col in self.selfv:
                    col.append(0)
            node = child
        self.selfv[side][node] += value

    @classmethod
    def build(
        cls,
        names_of: Mapping[int, Tuple[str, ...]],
        *sides: Mapping[int, int],
    ) -> Tree:
        """A tree from one or more ``{stack id: value}`` maps (one per side)."""
        tree = cls(len(sides))
        for side, values in enumerate(sides):
            for sid, v in values.items():
                if v:
                    tree.add(names_of.get(sid, (UNKNOWN,)), v, side)
        return tree

    @classmethod
    def build_arrays(
        cls,
        frames: np.ndarray,
        offsets: np.ndarray,
        names: List[str],
        *sides: Tuple[np.ndarray, np.ndarray],
    ) -> Tree:
        """Like :meth:`build`, in C (native/flametree.c), from a stack table (``frames`` as
        name ids, leaf first, ``offsets``; ``names``) and one (stack ids, values) per side."""
        native = FlameTree(len(sides))
        for side, (ids, values) in enumerate(sides):
            native.add(frames, offsets, ids, values, side, len(names))
        parent, name_ids, selfv = native.arrays()
        tree = cls(len(sides))
        tree.parent = parent.tolist()
        all_names = [*names, UNKNOWN]
        tree.name = ["total", *(all_names[i] for i in name_ids[1:].tolist())]
        tree.selfv = [selfv[:, s].tolist() for s in range(len(sides))]
        tree._native = (native, all_names)
        return tree

    def totals(self, side: int = 0) -> List[int]:
        """Total (self plus descendants) per node for one side."""
        total = list(self.selfv[side])
        parent = self.parent
        for nid in range(len(total) - 1, 0, -1):
            total[parent[nid]] += total[nid]
        return total

    def children(self, keep: Sequence[bool]) -> Dict[int, List[int]]:
        """Children lists (sorted by name) of the kept nodes."""
        kids: Dict[int, List[int]] = {}
        for nid in range(1, len(self.parent)):
            if keep[nid]:
                kids.setdefault(self.parent[nid], []).append(nid)
        name = self.name
        for lst in kids.values():
            lst.sort(key=lambda n: name[n])
        return kids


def _keep(total: List[int], max_nodes: int) -> List[bool]:
    n = len(total)
    if max_nodes <= 0 or n <= max_nodes:
        return [True] * n
    # Ties go to the smaller id (the parent), so the kept set is closed under ancestors.
    ranked = sorted(range(n), key=lambda i: (-total[i], i))[:max_nodes]
    keep = [False] * n
    for i in ranked:
        keep[i] = True
    keep[0] = True
    return keep


class _Names:
    def __init__(self) -> None:
        self.names: List[str] = []
        self._index: Dict[str, int] = {}

    def __call__(self, name: str) -> int:
        i = self._index.get(name)
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
        return i


def _native_flamebearer(tree: Tree, max_nodes: int) -> dict:
    native, names = tree._native
    # Children are drawn sorted by name: rank every name (plus "other" and "total", which
    # share an index with a function of the same name, as in the Python layout).
    ids: Dict[str, int] = {}
    for i, name in enumerate(names):
        ids.setdefault(name, i)
    other = ids.get(OTHER, len(names))
    root = ids.get("total", len(names) + 1)
    table = [*names, OTHER, "total"]
    order = sorted(range(len(table)), key=table.__getitem__)
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    # Equal names must not get different ranks (they are one name to the Python layout).
    rank = rank[[ids.get(n, i) if i < len(names) else i for i, n in enumerate(table)]]
    rows, name_ids, max_self, total = native.layout(rank, other, root, max(max_nodes, 0))
    depth = rows[:, 0]
    order = np.argsort(depth, kind="stable")
    counts = np.bincount(depth, minlength=int(depth.max()) + 1 if len(depth) else 0)
    flat = rows[order, 1:]
    levels = []
    start = 0
    for c in counts.tolist():
        levels.append(flat[start : start + c].ravel().tolist())
        start += c
    return {
        "names": [table[i] for i in name_ids.tolist()],
        "levels": levels,
        "numTicks": int(total),
        "maxSelf": int(max_self),
    }


def flamebearer(tree: Tree, max_nodes: int = 0) -> dict:
    """A single flamegraph: ``{names, levels, numTicks, maxSelf}``."""
    if tree._native is not None and len(tree.selfv) == 1:
        return _native_flamebearer(tree, max_nodes)
    total = tree.totals()
    selfv = tree.selfv[0]
    keep = _keep(total, max_nodes)
    # Subtrees cut by max_nodes become one "other" child per kept parent.
    other: Dict[int, int] = {}
    for nid in range(1, len(total)):
        if not keep[nid] and keep[tree.parent[nid]]:
            other[tree.parent[nid]] = other.get(tree.parent[nid], 0) + total[nid]
    kids = tree.children(keep)
    names = _Names()
    levels: List[List[int]] = []
    ends: List[int] = []  # per level: x where the last node ended
    max_self = 0
    # Iterative DFS, left to right, so each level's nodes come out in x order.
    stack: List[Tuple[int, int, int]] = [(0, 0, 0)]  # (node, depth, x); node < 0: "other"
    while stack:
        nid, depth, x = stack.pop()
        if nid < 0:
            t = s = other[-nid - 1]
            name = OTHER
        else:
            t, s, name = total[nid], selfv[nid], tree.name[nid]
        if t == 0 and nid != 0:
            continue
        while len(levels) <= depth:
            levels.append([])
            ends.append(0)
        levels[depth] += [x - ends[depth], t, s, names(name)]
        ends[depth] = x + t
        max_self = max(max_self, s)
        if nid < 0:
            continue
        pushes = []
        child_x = x
        for c in kids.get(nid, ()):
            if total[c]:
                pushes.append((c, depth + 1, child_x))
                child_x += total[c]
        if nid in other:
            pushes.append((-nid - 1, depth + 1, child_x))
        stack.extend(reversed(pushes))
    return {"names": names.names, "levels": levels, "numTicks": total[0], "maxSelf": max_self}


def diff_flamebearer(tree: Tree, max_nodes: int = 0) -> dict:
    """A diff flamegraph over a two-sided tree, 7 numbers per node:
    ``[lDelta, lTotal, lSelf, rDelta, rTotal, rSelf, nameIndex]``."""
    ltot, rtot = tree.totals(0), tree.totals(1)
    lself, rself = tree.selfv
    keep = _keep([a + b for a, b in zip(ltot, rtot)], max_nodes)
    kids = tree.children(keep)
    names = _Names()
    levels: List[List[int]] = []
    lend: List[int] = []
    rend: List[int] = []
    max_self = 0
    stack: List[Tuple[int, int, int, int]] = [(0, 0, 0, 0)]
    while stack:
        nid, depth, lx, rx = stack.pop()
        while len(levels) <= depth:
            levels.append([])
            lend.append(0)
            rend.append(0)
        lt, ls, rt, rs = ltot[nid], lself[nid], rtot[nid], rself[nid]
        levels[depth] += [lx - lend[depth], lt, ls, rx - rend[depth], rt, rs, names(tree.name[nid])]
        lend[depth], rend[depth] = lx + lt, rx + rt
        max_self = max(max_self, ls, rs)
        pushes = []
        cl, cr = lx, rx
        for c in kids.get(nid, ()):
            if ltot[c] or rtot[c]:
                pushes.append((c, depth + 1, cl, cr))
                cl += ltot[c]
                cr += rtot[c]
        stack.extend(reversed(pushes))
    return {
        "names": names.names,
        "levels": levels,
        "numTicks": ltot[0] + rtot[0],
        "maxSelf": max_self,
        "leftTicks": ltot[0],
        "rightTicks": rtot[0],
    }
