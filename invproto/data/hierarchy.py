"""Class hierarchies: rooted trees whose leaves are the classes, and the costs they define.

A :class:`ClassHierarchy` is stored as a parent array over its nodes in a fixed
order: the ``C`` leaves first (node ``c`` *is* class ``c``), then the internal
nodes, the root last. The cost of predicting class ``j`` for class ``i`` is
their **tree distance**, the number of edges on the path between the two
leaves (Sainte Fare Garnot & Landrieu 2020); :func:`mean_cost` is the mean
cost of a set of predictions.

Named trees (:func:`hierarchy_by_name`, the ``hierarchy`` of configs):

* ``flat``: every class a child of the root; any mistake costs 2.
* ``fashion_mnist``: the garments' natural groups, every leaf at depth 2::

      root -+- tops    : T-shirt/top, Pullover, Dress, Coat, Shirt
            +- bottoms : Trouser
            +- shoes   : Sandal, Sneaker, Ankle boot
            +- bags    : Bag

  so a mistake within a group costs 2 and across groups 4. Trouser and Bag
  keep a group of their own (rather than hanging from the root) so that every
  cross-group mistake costs the same.
* ``cifar10``: ``vehicles`` (airplane, automobile, ship, truck) and
  ``animals`` (bird, cat, deer, dog, frog, horse); costs 2 and 4 likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from invproto.data.cifar import CIFAR10
from invproto.data.mnist import FashionMNIST

Tree = "Mapping[str, Tree] | Sequence[str]"  # groups of subgroups, or class names


@dataclass(frozen=True)
class ClassHierarchy:
    """A rooted tree over ``n_classes`` leaf classes.

    ``parents[v]`` is the parent node of node ``v`` (``-1`` for the root);
    nodes ``0 .. C-1`` are the classes, ``C .. V-2`` the internal nodes, ``V-1``
    the root. ``names`` names every node.
    """

    parents: tuple[int, ...]
    names: tuple[str, ...]
    n_classes: int

    def __post_init__(self):
        n = len(self.parents)
        if len(self.names) != n or self.parents[-1] != -1 or list(self.parents).count(-1) != 1:
            raise ValueError("a hierarchy needs one name per node and exactly one root, the last node")
        if any(not self.n_classes <= p < n for p in self.parents[:-1]):
            raise ValueError("every parent must be an internal node (index >= n_classes)")
        if set(self.parents[:-1]) != set(range(self.n_classes, n)):
            raise ValueError("every internal node needs a child and every leaf must be a class")

    @classmethod
    def from_tree(cls, class_names: Sequence[str], tree: Tree, root: str = "root") -> "ClassHierarchy":
        """Build from nested groups below ``root``: ``{group: [class names] or {subgroup: ...}}``.

        Every class of ``class_names`` must appear exactly once as a leaf.
        """
        index = {name: i for i, name in enumerate(class_names)}
        leaf_parent: dict[int, int] = {}
        internal: list[tuple[str, int | None]] = []  # (name, index of its parent in ``internal``)

        def visit(name: str, children, parent: int | None) -> None:
            me = len(internal)
            internal.append((name, parent))
            if isinstance(children, Mapping):
                for child, grandchildren in children.items():
                    visit(child, grandchildren, me)
                return
            for leaf in children:
                if leaf not in index or index[leaf] in leaf_parent:
                    raise ValueError(f"class {leaf!r} is unknown or appears twice in the tree")
                leaf_parent[index[leaf]] = me

        visit(root, tree, None)
        if len(leaf_parent) != len(class_names):
            missing = [n for n in class_names if index[n] not in leaf_parent]
            raise ValueError(f"classes missing from the tree: {missing}")
        # node order: classes, then internal nodes depth-first without the root, then the root
        order = list(range(1, len(internal))) + [0]
        node_of = {k: len(class_names) + i for i, k in enumerate(order)}
        parents = [node_of[leaf_parent[c]] for c in range(len(class_names))]
        parents += [node_of[internal[k][1]] if internal[k][1] is not None else -1 for k in order]
        names = list(class_names) + [internal[k][0] for k in order]
        return cls(tuple(parents), tuple(names), len(class_names))

    @classmethod
    def flat(cls, class_names: Sequence[str]) -> "ClassHierarchy":
        """Every class a child of the root."""
        return cls.from_tree(class_names, list(class_names))

    @property
    def n_nodes(self) -> int:
        return len(self.parents)

    @property
    def root(self) -> int:
        return self.n_nodes - 1

    def children(self, node: int) -> list[int]:
        return [v for v, p in enumerate(self.parents) if p == node]

    def sibling_groups(self) -> list[list[int]]:
        """The children of every internal node (root included): the groups a hierarchical softmax normalises."""
        return [self.children(v) for v in range(self.n_classes, self.n_nodes)]

    def path_to_root(self, node: int) -> list[int]:
        """``node`` and its ancestors, root excluded, bottom-up."""
        path = []
        while node != self.root:
            path.append(node)
            node = self.parents[node]
        return path

    def height(self) -> torch.Tensor:
        """``(V,)`` height of every node: 0 for leaves, 1 + the largest height of its children otherwise."""
        height = [0] * self.n_nodes
        for v in range(self.n_classes):
            for level, ancestor in enumerate(self.path_to_root(v)[1:] + [self.root], start=1):
                height[ancestor] = max(height[ancestor], level)
        return torch.tensor(height, dtype=torch.float32)

    def ancestry(self) -> torch.Tensor:
        """``(C, V-1)`` 0/1 matrix: entry ``(c, v)`` is 1 when node ``v`` lies on class ``c``'s path to the root."""
        matrix = torch.zeros(self.n_classes, self.n_nodes - 1)
        for c in range(self.n_classes):
            matrix[c, self.path_to_root(c)] = 1.0
        return matrix

    def node_distances(self) -> torch.Tensor:
        """``(V, V)`` tree distance (number of edges) between every two nodes (scipy shortest paths)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import shortest_path

        child = np.arange(self.n_nodes - 1)
        edges = coo_matrix((np.ones(len(child)), (child, np.asarray(self.parents[:-1]))),
                           shape=(self.n_nodes, self.n_nodes))
        return torch.from_numpy(shortest_path(edges, directed=False, unweighted=True)).float()

    def cost_matrix(self) -> torch.Tensor:
        """``(C, C)`` cost of predicting class ``j`` for class ``i``: their tree distance."""
        return self.node_distances()[:self.n_classes, :self.n_classes]


_TREES: dict[str, tuple[tuple[str, ...], Tree]] = {
    "fashion_mnist": (FashionMNIST.class_names, {
        "tops": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"],
        "bottoms": ["Trouser"],
        "shoes": ["Sandal", "Sneaker", "Ankle boot"],
        "bags": ["Bag"],
    }),
    "cifar10": (CIFAR10.class_names, {
        "vehicles": ["airplane", "automobile", "ship", "truck"],
        "animals": ["bird", "cat", "deer", "dog", "frog", "horse"],
    }),
}
HIERARCHY_NAMES = ("flat", *_TREES)


def hierarchy_by_name(name: str, n_classes: int) -> ClassHierarchy:
    """The named tree (``flat``, ``fashion_mnist``, ``cifar10``) over ``n_classes`` classes."""
    if name == "flat":
        return ClassHierarchy.flat([str(c) for c in range(n_classes)])
    if name not in _TREES:
        raise ValueError(f"unknown class hierarchy {name!r}; choose one of {', '.join(HIERARCHY_NAMES)}")
    class_names, tree = _TREES[name]
    if len(class_names) != n_classes:
        raise ValueError(f"hierarchy {name!r} has {len(class_names)} classes, the model {n_classes}")
    return ClassHierarchy.from_tree(class_names, tree)


def mean_cost(cost: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Mean (0-d tensor) of ``cost[target_i, predicted_i]`` over ``(N,)`` integer labels and predictions."""
    return cost.to(predicted.device)[target, predicted].float().mean()
