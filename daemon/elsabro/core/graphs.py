"""Strongly connected components of a directed graph (Tarjan), without recursion.

The config's publish subscriptions form such a graph: one whose output can reach itself
again would loop forever (config/schema.py). Linear in the edges; iterative, so a long
chain of subscriptions cannot exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Iterator


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    tarjan = _Tarjan(edges)
    for node in nodes:
        if node not in tarjan.index:
            tarjan.visit(node)
    return tarjan.components


class _Tarjan:
    """Tarjan's algorithm with an explicit stack instead of recursion (a chain may be long)."""

    def __init__(self, edges: dict[str, set[str]]) -> None:
        self.edges = edges
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.components: list[list[str]] = []

    def visit(self, root: str) -> None:
        work = [self._enter(root)]
        while work:
            node, following = work[-1]
            for child in following:
                if child not in self.index:
                    work.append(self._enter(child))
                    break
                if child in self.on_stack:
                    self.low[node] = min(self.low[node], self.index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    self.low[parent] = min(self.low[parent], self.low[node])
                if self.low[node] == self.index[node]:
                    self._close(node)

    def _enter(self, node: str) -> tuple[str, Iterator[str]]:
        self.index[node] = self.low[node] = len(self.index)
        self.stack.append(node)
        self.on_stack.add(node)
        return node, iter(sorted(self.edges[node]))

    def _close(self, root: str) -> None:
        component = []
        while True:
            member = self.stack.pop()
            self.on_stack.discard(member)
            component.append(member)
            if member == root:
                break
        self.components.append(component)
