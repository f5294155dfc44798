"""Builds flamegraphs (Pyroscope's flamebearer layout) from per-stack values.

Input is ``{leaf node id: value}`` from :meth:`Backend.merge` plus the node tree (parent and
name per node). Output levels hold, per node, ``[xOffsetDelta, total, self, nameIndex]``: the
format ``/pyroscope/render`` and ``FlameGraph`` (querier.v1) share; see docs/store-api.md.
"""

from __future__ import annotations

from typing import Dict
from typing import List
from typing import Sequence
from typing import Tuple

OTHER = "other"


class Tree:
    """A merged call tree over the store's node ids (0 is the root)."""

    def __init__(self, parent: Sequence[int], node_name: Sequence[int], names: Sequence[str]):
        self._parent = parent
        self._node_name = node_name
        self._names = names

    def totals(self, self_values: Dict[int, int]) -> Tuple[Dict[int, int], Dict[int, int]]:
        """(total per node, self per node) over the ancestor closure of ``self_values``."""
        parent = self._parent
        total: Dict[int, int] = {0: 0}
        selfv: Dict[int, int] = {}
        for nid, v in self_values.items():
            if not v:
                continue
            selfv[nid] = selfv.get(nid, 0) + v
            n = nid
            while n not in total:
                total[n] = 0
                n = parent[n]
        # Children have larger ids than their parents: sum bottom-up in descending id order.
        for nid in sorted(total, reverse=True):
            t = total[nid] + selfv.get(nid, 0)
            total[nid] = t
            if nid:
                total[parent[nid]] += t
        return total, selfv

    def name(self, nid: int) -> str:
        """The function name of a node ("total" for the root)."""
        return "total" if nid == 0 else self._names[self._node_name[nid]]

    def children(self, nodes: Sequence[int]) -> Dict[int, List[int]]:
        """Children lists (sorted by name) for a set of nodes."""
        kids: Dict[int, List[int]] = {}
        for nid in nodes:
            if nid:
                kids.setdefault(self._parent[nid], []).append(nid)
        for lst in kids.values():
            lst.sort(key=self.name)
        return kids


def _keep(total: Dict[int, int], max_nodes: int) -> Dict[int, int]:
    if max_nodes <= 0 or len(total) <= max_nodes:
        return total
    # Ties go to the smaller id (the parent), so the kept set is closed under ancestors.
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:max_nodes]
    return dict(ranked)


def flamebearer(tree: Tree, self_values: Dict[int, int], max_nodes: int = 0) -> dict:
    """A single flamegraph: ``{names, levels, numTicks, maxSelf}``."""
    total, selfv = tree.totals(self_values)
    kept = _keep(total, max_nodes)
    # Subtrees cut by max_nodes become one "other" child per parent.
    other: Dict[int, int] = {}
    if len(kept) < len(total):
        parent = tree._parent
        for nid, t in total.items():
            if nid not in kept and parent[nid] in kept:
                other[parent[nid]] = other.get(parent[nid], 0) + t
    kids = tree.children(list(kept))
    names: List[str] = []
    index: Dict[str, int] = {}

    def name_idx(name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(names)
            names.append(name)
        return i

    levels: List[List[int]] = []
    ends: List[int] = []  # per level: x where the last node ended
    max_self = 0
    # Iterative DFS, left to right, so each level's nodes come out in x order.
    stack: List[Tuple[int, int, int]] = [(0, 0, 0)]  # (node, depth, x); node -1 = "other"
    other_of: Dict[int, Tuple[int, int]] = {}
    while stack:
        nid, depth, x = stack.pop()
        if nid < 0:
            t, s = other_of[-nid - 1]
            name = OTHER
        else:
            t, s = kept[nid], selfv.get(nid, 0)
            name = tree.name(nid)
        while len(levels) <= depth:
            levels.append([])
            ends.append(0)
        levels[depth] += [x - ends[depth], t, s, name_idx(name)]
        ends[depth] = x + t
        max_self = max(max_self, s)
        if nid < 0:
            continue
        child_x = x
        pushes = []
        for c in kids.get(nid, ()):
            pushes.append((c, depth + 1, child_x))
            child_x += kept[c]
        if nid in other:
            key = len(other_of)
            other_of[key] = (other[nid], other[nid])
            pushes.append((-key - 1, depth + 1, child_x))
        stack.extend(reversed(pushes))
    return {"names": names, "levels": levels, "numTicks": total[0], "maxSelf": max_self}


def diff_flamebearer(
    tree: Tree, left: Dict[int, int], right: Dict[int, int], max_nodes: int = 0
) -> dict:
    """A diff flamegraph over the union of both trees, 7 numbers per node:
    ``[lDelta, lTotal, lSelf, rDelta, rTotal, rSelf, nameIndex]``."""
    ltot, lself = tree.totals(left)
    rtot, rself = tree.totals(right)
    both = {n: ltot.get(n, 0) + rtot.get(n, 0) for n in set(ltot) | set(rtot)}
    kept = _keep(both, max_nodes)
    kids = tree.children(list(kept))
    names: List[str] = []
    index: Dict[str, int] = {}
    levels: List[List[int]] = []
    lend: List[int] = []
    rend: List[int] = []
    max_self = 0
    stack: List[Tuple[int, int, int, int]] = [(0, 0, 0, 0)]
    while stack:
        nid, depth, lx, rx = stack.pop()
        name = tree.name(nid)
        i = index.get(name)
        if i is None:
            i = index[name] = len(names)
            names.append(name)
        while len(levels) <= depth:
            levels.append([])
            lend.append(0)
            rend.append(0)
        lt, ls = ltot.get(nid, 0), lself.get(nid, 0)
        rt, rs = rtot.get(nid, 0), rself.get(nid, 0)
        levels[depth] += [lx - lend[depth], lt, ls, rx - rend[depth], rt, rs, i]
        lend[depth], rend[depth] = lx + lt, rx + rt
        max_self = max(max_self, ls, rs)
        pushes = []
        cl, cr = lx, rx
        for c in kids.get(nid, ()):
            pushes.append((c, depth + 1, cl, cr))
            cl += ltot.get(c, 0)
            cr += rtot.get(c, 0)
        stack.extend(reversed(pushes))
    lt0, rt0 = ltot.get(0, 0), rtot.get(0, 0)
    return {
        "names": names,
        "levels": levels,
        "numTicks": lt0 + rt0,
        "maxSelf": max_self,
        "leftTicks": lt0,
        "rightTicks": rt0,
    }


def stacks(tree: Tree, self_values: Dict[int, int]) -> List[Tuple[List[str], int]]:
    """(function names root first, value) per stack: for pprof and folded output."""
    out = []
    cache: Dict[int, List[str]] = {0: []}
    parent = tree._parent
    for nid, v in self_values.items():
        if not v:
            continue
        path = []
        n = nid
        while n not in cache:
            path.append(n)
            n = parent[n]
        names = cache[n]
        for m in reversed(path):
            names = [*names, tree.name(m)]
            cache[m] = names
        out.append((cache[nid], v))
    return out
