"""A checkpoint's weights for other frameworks: safetensors or npz, named by the object graph.

Without TensorFlow (the checkpoint is read by `bundle`). Each variable gets a readable name:
its path through the object graph from the root (``model/layer_with_weights-0/kernel``), not
its checkpoint key, which in a Keras 3 checkpoint written with ``model=`` and ``optimizer=``
is often ``optimizer/_trainable_variables/N`` (the graph reaches the weights through the
optimizer first): the name is the shortest path that does not pass through an optimizer.
What only an optimizer reaches (its slots, iterations, learning rate) and the save counter
are left out unless asked.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import numpy as np

from ckptkit import progress
from ckptkit.errors import MissingExtraError
from ckptkit.reading.inspection import (
    OBJECT_GRAPH_KEY,
    VALUE_SUFFIX,
    get_tensor,
    load_graph,
    object_paths,
    open_reader,
)
from ckptkit.storage.layout import check_path

__all__ = ["export_weights"]

_BOOKKEEPING = ("save_counter",)


def export_weights(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: Literal["safetensors", "npz"] = "safetensors",
    include_optimizer: bool = False,
) -> dict[str, str]:
    """Writes a checkpoint's variables to a safetensors or npz file, under readable names.

    Args:
        checkpoint: A checkpoint prefix or directory (its newest checkpoint).
        output: The file to write (replaced if it exists); beside it, ``<output>.names.json``
            maps each name to its checkpoint key.
        format: ``"safetensors"`` (bfloat16 stays BF16; needs ``pip install
            'ckptkit[safetensors]'``) or ``"npz"`` (numpy's; bfloat16 and float8 values are
            stored as float32, since numpy cannot load those types back).
        include_optimizer: Also export what only an optimizer reaches (slots, iterations,
            learning rate) and the save counter.

    Returns:
        Each exported name and the checkpoint key it was read from.

    Raises:
        CheckpointNotFoundError: Nothing at `checkpoint`.
        CorruptCheckpointError: It cannot be read.
        MissingExtraError: ``format="safetensors"`` without the `safetensors` package.
        ValueError: An unknown `format`.
    """
    if format not in ("safetensors", "npz"):
        raise ValueError(f"format must be 'safetensors' or 'npz' (received format={format!r})")
    save = _saver(format)
    prefix, reader = open_reader(os.fspath(checkpoint))
    names = _names(prefix, reader, include_optimizer=include_optimizer)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    with progress.task(f"exporting {os.path.basename(prefix)}", len(names)) as advance:
        for name, key in names.items():
            value = np.asarray(get_tensor(reader, prefix, key))
            advance(1)
            if value.dtype == object:
                continue  # strings: no tensor format of these frameworks holds them
            if format == "npz" and value.dtype.name.startswith(("bfloat16", "float8")):
                value = value.astype(np.float32)
            arrays[name] = value
    names = {name: key for name, key in names.items() if name in arrays}
    destination = check_path(output)
    save(arrays, destination)
    with open(f"{destination}.names.json", "w") as file:
        json.dump({"checkpoint": prefix, "names": names}, file, indent=1, sort_keys=True)
    return names


def _saver(format: str) -> Any:
    if format == "npz":
        return _save_npz
    try:
        from safetensors.numpy import save_file
    except ImportError as e:
        raise MissingExtraError(
            f"format='safetensors' needs the safetensors package ({e}); pip install "
            "'ckptkit[safetensors]', or export with format='npz'"
        ) from e
    return lambda arrays, path: save_file(arrays, path, metadata={"format": "pt"})


def _save_npz(arrays: dict[str, np.ndarray[Any, Any]], path: str) -> None:
    with open(path, "wb") as file:  # a file object: numpy adds no ``.npz`` to the name
        np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle


def _names(prefix: str, reader: Any, *, include_optimizer: bool) -> dict[str, str]:
    """Readable name -> checkpoint key, for each exported variable."""
    keys = sorted(k for k in reader.get_variable_to_shape_map() if k != OBJECT_GRAPH_KEY)
    graph = load_graph(prefix)
    if graph is None:  # name-based: the keys are the variables' names already
        return {key: key for key in keys}
    routes = object_paths(graph)
    names: dict[str, str] = {}
    for node_id, node in enumerate(graph.nodes):
        key = node.path + VALUE_SUFFIX
        if not node.path or key not in keys:
            continue
        paths = routes.get(node_id, []) or [node.path]
        own = [p for p in paths if not _optimizers(p)]
        if not own and not include_optimizer:
            continue
        if node.path.split("/")[0] in _BOOKKEEPING and not include_optimizer:
            continue
        chosen = min(own or paths, key=lambda p: (p.count("/"), p))
        names[chosen] = key
    return dict(sorted(names.items()))


def _optimizers(path: str) -> bool:
    return any(part in ("optimizer", "_optimizer") for part in path.split("/"))
