"""Edits of a raw order (its JSON as a dict), for the bad-input tests: set or drop a dotted path
such as `items.0.quantity`, or apply several edits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Mutation = Callable[[dict[str, Any]], None]


def _parent(data: dict[str, Any], path: str) -> tuple[Any, str]:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, last


def put(path: str, value: Any) -> Mutation:
    """Set a dotted path (`items.0.quantity`) in the raw order."""

    def mutate(data: dict[str, Any]) -> None:
        node, last = _parent(data, path)
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        node, last = _parent(data, path)
        del node[int(last) if isinstance(node, list) else last]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate
