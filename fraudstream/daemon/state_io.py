"""Write and read ``state_dict()`` trees without pickle: arrays to ``.npz``, the rest to JSON.

A state tree is nested dicts and lists of JSON values and numpy arrays. Each array is
stored in ``<name>.npz`` under its key path and replaced in ``<name>.json`` by a
``{"__array__": "<path>"}`` marker, so a checkpoint never executes code when it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.durable import write_json

MARK = "__array__"


def _split(node: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(node, np.ndarray):
        arrays[path] = node
        return {MARK: path}
    if isinstance(node, dict):
        return {str(k): _split(v, f"{path}.{k}" if path else str(k), arrays) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_split(v, f"{path}.{i}", arrays) for i, v in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    return node


def _join(node: Any, arrays: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {MARK}:
            return arrays[node[MARK]]
        return {k: _join(v, arrays) for k, v in node.items()}
    if isinstance(node, list):
        return [_join(v, arrays) for v in node]
    return node


def detach(node: Any) -> Any:
    """A copy of a state tree that later changes to the live objects cannot reach.

    Arrays are copied, dicts and lists rebuilt; scalars, strings and tuples (state tuples
    hold scalars: rows, named tuples) are immutable. A list whose first item is not a
    container is taken to hold none (state lists are homogeneous) and is copied shallowly,
    which keeps a long list of ids or rows cheap.
    """
    if isinstance(node, np.ndarray):
        return node.copy()
    if isinstance(node, dict):
        return {k: detach(v) for k, v in node.items()}
    if isinstance(node, list):
        if node and not isinstance(node[0], (dict, list, np.ndarray)):
            return list(node)
        return [detach(v) for v in node]
    return node


def write_state(directory: Path, name: str, state: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {}
    tree = _split(state, "", arrays)
    if arrays:
        with open(directory / f"{name}.npz", "wb") as fh:
            np.savez(fh, **arrays)
    write_json(directory / f"{name}.json", tree, indent=None)


def read_state(directory: Path, name: str) -> dict[str, Any]:
    tree = json.loads((directory / f"{name}.json").read_text())
    npz = directory / f"{name}.npz"
    if not npz.exists():
        return _join(tree, {})
    with np.load(npz, allow_pickle=False) as arrays:
        return _join(tree, {key: arrays[key] for key in arrays.files})
