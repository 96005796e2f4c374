"""Nested training states (dicts, lists and tuples of arrays, bytes and plain Python values) as
flat checkpoint entries plus a description of the tree, stored without pickle.

A state such as {"model": {"w": array}, "optim": {"state": {0: {"step": 10, "exp_avg": array}}},
"epoch": 3, "note": "warm-up"} is saved as the tensor entries "model.w" and
"optim.state.0.exp_avg" and, in the user metadata key TREE_KEY, a JSON description of the tree:
its containers, their keys (str or int), where each array or blob went, and the plain values
themselves (int, float, bool, str, None). Other languages see ordinary entries with readable
names; Python's load() rebuilds the tree.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np

if TYPE_CHECKING:
    from ._typing import Array, Node

TREE_KEY = "shardpoint.python.tree"
_TREE_VERSION = 1


def needs_tree(entries: Mapping[Any, object]) -> bool:
    """True when `entries` is more than a flat {fqn (str): array or bytes} mapping."""
    return any(not isinstance(k, str) or _is_container(v) or _is_plain(v) for k, v in entries.items())


def _is_container(value: object) -> bool:
    # Exactly list and tuple: a namedtuple (such as Chunk) is a value, not a container.
    return isinstance(value, dict) or type(value) in (list, tuple)


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _escape(key: str) -> str:
    # "." separates path elements: a key's own "." (and the escape character) are encoded.
    return key.replace("%", "%25").replace(".", "%2E")


def flatten(state: object) -> tuple[dict[str, object], str]:
    """(leaves, tree): leaves maps fqn to an array-like, Chunk or blob value; tree is JSON-able."""
    leaves: dict[str, object] = {}

    def walk(value: object, path: list[str]) -> Node:
        if isinstance(value, dict):
            items = []
            for key, sub in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise TypeError(f"state keys must be str or int, not {type(key).__name__} (at {'.'.join(path) or 'the top'})")
                items.append([key if isinstance(key, str) else {"int": key},
                              walk(sub, path + [_escape(key) if isinstance(key, str) else str(key)])])
            return {"dict": items}
        if type(value) in (list, tuple):
            seq = cast("Sequence[object]", value)  # (a type() test does not narrow)
            return {"list" if type(value) is list else "tuple": [walk(sub, path + [str(i)]) for i, sub in enumerate(seq)]}
        if isinstance(value, np.generic):  # before the plain types: np.float64 is a float
            return leaf(value, path)
        if isinstance(value, bool):
            return {"bool": value}
        if isinstance(value, int):
            return {"int": str(value)}  # as text: Python ints have no size limit, JSON readers do
        if isinstance(value, float):
            return {"float": value.hex()}  # exact, and also for inf and nan
        if isinstance(value, str):
            return {"str": value}
        if value is None:
            return {"none": None}
        return leaf(value, path)

    def leaf(value: object, path: list[str]) -> Node:
        fqn = ".".join(path)
        if not fqn:
            raise ValueError("an array or blob of the state has an empty name (an empty key at the top)")
        if fqn in leaves:
            raise ValueError(f"two values of the state map to the entry {fqn!r}")
        leaves[fqn] = value
        if isinstance(value, (bytes, bytearray)):
            return {"bytes": fqn}
        if isinstance(value, np.generic):
            return {"tensor": fqn, "scalar": True}  # a numpy scalar comes back as one
        return {"tensor": fqn}

    if not _is_container(state):
        raise TypeError("the state must be a dict, list or tuple at the top")
    tree = walk(state, [])
    return leaves, json.dumps({"version": _TREE_VERSION, "tree": tree}, separators=(",", ":"))


def tree_of(text: str) -> Node:
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("version") != _TREE_VERSION:
        raise ValueError(f"the checkpoint's {TREE_KEY} is not a version {_TREE_VERSION} tree")
    tree: Node = doc["tree"]
    return tree


def leaf_fqns(tree: Node) -> list[tuple[str, str, bool]]:
    """Every (fqn, kind, is_scalar) of the arrays and blobs of a tree."""
    out: list[tuple[str, str, bool]] = []

    def walk(node: Node) -> None:
        if "dict" in node:
            for _, sub in node["dict"]:
                walk(sub)
        elif "list" in node or "tuple" in node:
            for sub in node["list"] if "list" in node else node["tuple"]:
                walk(sub)
        elif "tensor" in node:
            out.append((node["tensor"], "tensor", bool(node.get("scalar"))))
        elif "bytes" in node:
            out.append((node["bytes"], "bytes", False))

    walk(tree)
    return out


def build(tree: Node, value_of: Callable[[str], object]) -> object:
    """The state a tree describes, with value_of(fqn) for its arrays and blobs."""
    if "dict" in tree:
        return {(k["int"] if isinstance(k, dict) else k): build(sub, value_of) for k, sub in tree["dict"]}
    if "list" in tree:
        return [build(sub, value_of) for sub in tree["list"]]
    if "tuple" in tree:
        return tuple(build(sub, value_of) for sub in tree["tuple"])
    if "tensor" in tree:
        value = value_of(tree["tensor"])
        return cast("Array", value)[()] if tree.get("scalar") else value  # a scalar was saved as a 0-d array
    if "bytes" in tree:
        return value_of(tree["bytes"])
    if "bool" in tree:
        return bool(tree["bool"])
    if "int" in tree:
        return int(tree["int"])
    if "float" in tree:
        return float.fromhex(tree["float"])
    if "str" in tree:
        return tree["str"]
    if "none" in tree:
        return None
    raise ValueError(f"unknown node in the checkpoint's {TREE_KEY}: {sorted(tree)}")


def destinations(tree: Node, into: object) -> dict[str, Array]:
    """{fqn: array} of the arrays of `into` (a state of the tree's shape) that can be loaded in
    place: numpy arrays at the tree's tensor leaves. Anything else is left to the caller."""
    found: dict[str, Array] = {}

    def walk(node: Node, value: object) -> None:
        if "dict" in node and isinstance(value, dict):
            for key, sub in node["dict"]:
                key = key["int"] if isinstance(key, dict) else key
                if key in value:
                    walk(sub, value[key])
        elif ("list" in node or "tuple" in node) and type(value) in (list, tuple):
            subs = node["list"] if "list" in node else node["tuple"]
            for sub, item in zip(subs, cast("Sequence[object]", value)):
                walk(sub, item)
        elif "tensor" in node and type(value) is np.ndarray and not node.get("scalar"):
            found[node["tensor"]] = value

    walk(tree, into)
    return found


def fill(into: object, loaded: object) -> object:
    """Puts `loaded` (a state of the same tree) into `into`: arrays filled in place already stay,
    every other value is set into its (mutable) container. Returns `into`."""
    if isinstance(into, dict) and isinstance(loaded, dict):
        for key, value in loaded.items():
            if key in into and _same_container(into[key], value):
                fill(into[key], value)
            elif not (key in into and into[key] is value):
                into[key] = value
        return into
    if isinstance(into, list) and isinstance(loaded, (list, tuple)):
        for i, value in enumerate(loaded):
            if i < len(into) and _same_container(into[i], value):
                fill(into[i], value)
            elif i < len(into):
                if into[i] is not value:
                    into[i] = value
            else:
                into.append(value)
        return into
    return loaded


def _same_container(a: object, b: object) -> bool:
    return (isinstance(a, dict) and isinstance(b, dict)) or (isinstance(a, list) and isinstance(b, (list, tuple)))
