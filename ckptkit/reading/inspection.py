"""What is inside a checkpoint: keys, shapes, dtypes, bytes, the object tree, and differences.

Everything here reads the index (and, for values, the data files) with `bundle`'s reader,
without TensorFlow, for checkpoints on local paths and staged (`s3://`) ones; on `gs://` and
`ram://`, which only TensorFlow's file system reaches, through TensorFlow's own reader. Nothing
is restored into a program. numpy (like h5py and ml_dtypes) is imported where values are read,
so that listing a checkpoint loads none of them (numpy alone takes 0.07-0.09 s to import).

Example:
    >>> contents = ckptkit.inspect("runs/exp1")              # doctest: +SKIP
    >>> [(v.key, v.shape) for v in contents.variables][:2]   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ckptkit.errors import CheckpointKeyError, CorruptCheckpointError, FormatError, first_line
from ckptkit.matching import CheckpointGraph, CheckpointNode, ValueSpec
from ckptkit.reading.bundle import DTYPES, BundleReader, parse_object_graph
from ckptkit.reading.index_file import checked_bundle
from ckptkit.reading.keras_files import is_keras_file, keras_datasets, read_keras_tensor
from ckptkit.reading.table import Damage
from ckptkit.storage import fs, routes, tiers
from ckptkit.storage.layout import check_path, resolve_checkpoint

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "OBJECT_GRAPH_KEY",
    "VALUE_SUFFIX",
    "CheckpointContents",
    "CheckpointDiff",
    "Format",
    "KeyChange",
    "VariableInfo",
    "diff",
    "forget",
    "inspect",
    "load_graph",
    "object_paths",
    "open_reader",
    "read_tensor",
    "resolve_object_path",
    "sharing_readers",
    "value_specs",
]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

Format = Literal["object-based", "name-based", "keras"]
"""``object-based``: TF2 `tf.train.Checkpoint`; ``name-based``: tf.compat.v1 Saver / Estimator;
``keras``: a Keras-native ``.weights.h5`` or ``.keras`` file."""


class VariableInfo(NamedTuple):
    """One saved tensor.

    Attributes:
        key: The checkpoint key (what `tf.train.load_checkpoint(...).get_tensor` takes).
        shape: Its shape.
        dtype: Its dtype name, e.g. ``"float32"``.
        size_bytes: Bytes of its values (0 for strings and variants: the index lacks their size).
    """

    key: str
    shape: tuple[int, ...]
    dtype: str
    size_bytes: int


@dataclass(frozen=True)
class CheckpointContents:
    """The variables of one checkpoint.

    Attributes:
        format: ``object-based`` or ``name-based``.
        path: The checkpoint prefix that was read.
        variables: Every saved tensor but the object-graph metadata, sorted by key.
    """

    format: Format
    path: str
    variables: tuple[VariableInfo, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of all variables' values."""
        return sum(v.size_bytes for v in self.variables)


@dataclass(frozen=True)
class KeyChange:
    """A key present in both checkpoints whose shape, dtype or values differ.

    Attributes:
        key: The checkpoint key.
        a: ``(shape, dtype)`` in the first checkpoint.
        b: ``(shape, dtype)`` in the second.
        max_abs_diff: Largest absolute difference of the values when shapes and dtypes agree
            and the dtype is numeric (None otherwise, or when a NaN or inf is involved).
    """

    key: str
    a: tuple[tuple[int, ...], str]
    b: tuple[tuple[int, ...], str]
    max_abs_diff: float | None


@dataclass(frozen=True)
class CheckpointDiff:
    """How two checkpoints differ, key by key.

    Attributes:
        a: First checkpoint prefix.
        b: Second checkpoint prefix.
        only_in_a: Keys only the first has.
        only_in_b: Keys only the second has.
        changed: Keys in both whose shape, dtype or values differ.
    """

    a: str
    b: str
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    changed: tuple[KeyChange, ...]


_shared = threading.local()  # readers and graphs of the innermost `sharing_readers` block


@contextlib.contextmanager
def sharing_readers() -> Iterator[None]:
    """Within the block, each checkpoint's index is opened, and its graph read, once a thread.

    One restore verifies, matches and describes the same checkpoint; TensorFlow's reader
    parses the whole index each time it is opened, which costs as much as the rest with tens
    of thousands of variables. Outside such a block every call opens anew.
    """
    if getattr(_shared, "readers", None) is not None:
        yield
        return
    _shared.readers, _shared.graphs = {}, {}
    try:
        yield
    finally:
        _shared.readers = _shared.graphs = None


def forget(prefix: str) -> None:
    """Drops what the innermost `sharing_readers` block holds of `prefix` (files replaced)."""
    for held in (getattr(_shared, "readers", None), getattr(_shared, "graphs", None)):
        if held is not None:
            held.pop(prefix, None)


def open_reader(path: str) -> tuple[str, Any]:
    """Resolves `path` (directory, prefix or ``.index`` file) and opens a reader for it.

    Returns:
        The checkpoint prefix and its reader: `bundle.BundleReader` (no TensorFlow) where the
        files are local (a staged checkpoint's cached copy included), TensorFlow's on
        `gs://` and `ram://`; both answer the same calls.

    Raises:
        CheckpointNotFoundError: Nothing at `path`.
        CorruptCheckpointError: The index is truncated, garbage or unreadable.
    """
    prefix = resolve_checkpoint(path)
    readers: dict[str, tuple[int, Any]] | None = getattr(_shared, "readers", None)
    if readers is not None and prefix in readers:
        shards, reader = readers[prefix]
        _check_shards(prefix, shards)
        return prefix, reader
    local = tiers.readable(prefix)  # a staged checkpoint's local copy, checked
    bundle = checked_bundle(f"{local}.index")
    shards = bundle.num_shards
    _check_shards(local, shards)
    damaged: tuple[type[Exception], ...] = (Damage, OSError, *read_errors())
    try:
        if routes.transport(local) == "local":
            reader = BundleReader(bundle)
        else:  # gs://, ram://: only TensorFlow's file system reaches them
            import tensorflow as tf

            # Not tf.train.load_checkpoint: it re-resolves the prefix, and some filesystems
            # (ram://) call a prefix of existing files a directory.
            reader = tf.compat.v1.train.NewCheckpointReader(local)
    except damaged as e:
        raise CorruptCheckpointError(
            f"cannot read checkpoint index {prefix}.index: {first_line(e)}. The file is "
            "truncated, damaged or not a TensorFlow checkpoint; restore an earlier checkpoint"
        ) from e
    if readers is not None:
        readers[prefix] = shards, reader
    return prefix, reader


def _check_shards(prefix: str, shards: int) -> None:
    for shard in range(shards):
        name = f"{prefix}.data-{shard:05d}-of-{shards:05d}"
        if fs.exists(name) and not fs.is_regular_file(name):
            # TensorFlow would block opening a FIFO, or read a device without end.
            raise CorruptCheckpointError(
                f"checkpoint data file {name} is not a regular file; restore an earlier checkpoint"
            )


def read_errors() -> tuple[type[Exception], ...]:
    """What a value read can raise for damaged data: TensorFlow's errors too, once imported."""
    tensorflow = sys.modules.get("tensorflow")
    errors: tuple[type[Exception], ...] = (IndexError, ValueError)
    return errors if tensorflow is None else (*errors, tensorflow.errors.OpError)


def _dtype_facts(type_enum: int) -> tuple[str, int]:
    """Its name, and the bytes one value takes (0: strings and types numpy lacks)."""
    return DTYPES.get(type_enum, (f"dtype {type_enum}", 0))


def _dtype_enums(reader: Any) -> dict[str, int]:
    """Key -> dtype enum, without building a `tf.DType` per key (slow with many variables)."""
    raw = getattr(reader, "_GetVariableToDataTypeMap", None)
    if raw is not None:
        return dict(raw())
    return {k: v.as_datatype_enum for k, v in reader.get_variable_to_dtype_map().items()}


def inspect(path: str | os.PathLike[str]) -> CheckpointContents:
    """Lists the tensors of a checkpoint without loading their values.

    Args:
        path: A checkpoint prefix, its ``.index`` file, or a directory (its newest
            checkpoint); or a Keras ``.weights.h5`` / ``.keras`` file.

    Returns:
        Format, prefix and one `VariableInfo` per tensor.

    Raises:
        CheckpointNotFoundError: Nothing at `path`.
        CorruptCheckpointError: The index cannot be read.
        FormatError: A Keras file that is not HDF5 / zip.
    """
    path = check_path(path)
    if is_keras_file(path):
        found = keras_datasets(path)
        return CheckpointContents("keras", path, tuple(VariableInfo(*f) for f in found))
    prefix, reader = open_reader(path)
    shapes = reader.get_variable_to_shape_map()
    dtypes = _dtype_enums(reader)
    facts = {enum: _dtype_facts(enum) for enum in set(dtypes.values())}
    variables: list[VariableInfo] = []
    append, new, prod = variables.append, tuple.__new__, math.prod  # hot loop: 10,000s of keys
    for key in sorted(shapes):
        if key == OBJECT_GRAPH_KEY:
            continue
        shape = tuple(shapes[key])
        name, itemsize = facts[dtypes[key]]
        append(new(VariableInfo, (key, shape, name, prod(shape) * itemsize)))
    fmt: Format = "object-based" if OBJECT_GRAPH_KEY in shapes else "name-based"
    return CheckpointContents(format=fmt, path=prefix, variables=tuple(variables))


def value_specs(path: str) -> dict[str, ValueSpec]:
    """Each stored tensor's shape and dtype by key (the object graph's record left out).

    What a name-based restore matches by; `inspect` without sizes, sorting or Keras files.

    Raises:
        CheckpointNotFoundError: Nothing at `path`.
        CorruptCheckpointError: The index cannot be read.
    """
    _, reader = open_reader(path)
    shapes = reader.get_variable_to_shape_map()
    dtypes = _dtype_enums(reader)
    names = {enum: _dtype_facts(enum)[0] for enum in set(dtypes.values())}
    new = tuple.__new__  # hot loop: 10,000s of keys
    return {
        key: new(ValueSpec, (tuple(shape), names[dtypes[key]]))
        for key, shape in shapes.items()
        if key != OBJECT_GRAPH_KEY
    }


def load_graph(path: str) -> CheckpointGraph | None:
    """The object graph of an object-based checkpoint; None for a name-based one.

    Raises:
        CheckpointNotFoundError: Nothing at `path`.
        CorruptCheckpointError: The index or the object-graph record cannot be read.
    """
    prefix, reader = open_reader(path)
    graphs: dict[str, CheckpointGraph | None] | None = getattr(_shared, "graphs", None)
    if graphs is not None and prefix in graphs:
        return graphs[prefix]
    graph = _read_graph(prefix, reader)
    if graphs is not None:
        graphs[prefix] = graph
    return graph


def _read_graph(prefix: str, reader: Any) -> CheckpointGraph | None:
    if not reader.has_tensor(OBJECT_GRAPH_KEY):
        return None
    damaged: tuple[type[Exception], ...] = (Damage, TypeError, *read_errors())
    try:
        record = reader.get_tensor(OBJECT_GRAPH_KEY)
        if not isinstance(record, bytes):  # TensorFlow writes one string, not an array
            raise TypeError(f"the record is a {type(record).__name__}, not a string")
        proto = parse_object_graph(record)
    except damaged as e:
        raise CorruptCheckpointError(
            f"cannot read the object graph of checkpoint {prefix}: {first_line(e)}; it is "
            "damaged or crafted: restore an earlier checkpoint"
        ) from e
    shapes = reader.get_variable_to_shape_map()
    dtypes = _dtype_enums(reader)
    names = {enum: _dtype_facts(enum)[0] for enum in set(dtypes.values())}
    opaque = ValueSpec(None, None)
    nodes: list[CheckpointNode] = []
    append, new = nodes.append, tuple.__new__  # hot loop: one pass per object in the checkpoint
    for node in proto:
        value = None
        full_name = path_ = ""  # Only nodes with values are named in reports: by their key.
        for name, full, key in node.attributes:
            path_ = key.partition("/.ATTRIBUTES/")[0]
            full_name = full
            if name == "VARIABLE_VALUE" and key in shapes:
                value = new(ValueSpec, (tuple(shapes[key]), names[dtypes[key]]))
            elif value is None:
                value = opaque
        append(new(CheckpointNode, (path_, node.children, value, full_name, node.slots)))
    return CheckpointGraph(path=prefix, nodes=nodes)


# Bounds on what `object_paths` builds from a graph it did not write: routes to one node, how
# deep a path goes, and characters in all.
_MAX_ROUTES = 8
_MAX_PATH_DEPTH = 128
_MAX_PATH_CHARS = 16 << 20


def object_paths(graph: CheckpointGraph) -> dict[int, list[str]]:
    """The object paths of each node, by node id: how the program reaches it from the root.

    A variable is stored once, under the first path TensorFlow found (often through the
    optimizer), but the program reaches it through its model too. Each node is expanded once,
    through its first path (breadth first), and every edge out of an expanded node gives one
    path; so a model's ``model/layers/...`` paths are found next to the optimizer's. A crafted
    graph cannot make this unbounded: at most `_MAX_ROUTES` routes to a node, `_MAX_PATH_DEPTH`
    levels, and `_MAX_PATH_CHARS` characters in all.
    """
    found: dict[int, list[str]] = {0: [""]}
    queue, depth = [0], {0: 0}
    budget = _MAX_PATH_CHARS
    for node_id in queue:
        prefix = found[node_id][0]
        if depth[node_id] >= _MAX_PATH_DEPTH:
            continue
        for name, child in graph.nodes[node_id].children:
            routes = found.setdefault(child, [])
            if len(routes) >= _MAX_ROUTES:
                continue
            if not routes:
                queue.append(child)
                depth[child] = depth[node_id] + 1
            routes.append(f"{prefix}/{name}" if prefix else name)
            budget -= len(routes[-1])
            if budget < 0:
                return found
    return found


def resolve_object_path(graph: CheckpointGraph, path: str) -> str | None:
    """The checkpoint key of the variable at object path `path` (any route), or None."""
    node_id = 0
    for part in path.strip("/").split("/"):
        node_id = next((c for n, c in graph.nodes[node_id].children if n == part), -1)
        if not 0 <= node_id < len(graph.nodes):
            return None
    node = graph.nodes[node_id]
    if node.value is None or node.value.shape is None or not node.path:
        return None
    return node.path + VALUE_SUFFIX


def _full_key(reader: Any, key: str) -> str:
    if reader.has_tensor(key):
        return key
    if reader.has_tensor(key + VALUE_SUFFIX):
        return key + VALUE_SUFFIX
    raise CheckpointKeyError(key)


def read_tensor(path: str | os.PathLike[str], key: str) -> np.ndarray[Any, Any]:
    """The value of one tensor.

    Args:
        path: A checkpoint prefix or directory, or a Keras ``.weights.h5`` / ``.keras`` file.
        key: The full checkpoint key, or an object path such as ``model/l1/kernel`` (any path
            through the object graph, e.g. ``model/_functional/_operations/1/_kernel`` for a
            variable stored under the optimizer's path), or the variable's own name
            (``sequential/l1/kernel``), or a report's ``path (name)``; in a Keras file, a
            dataset such as ``layers/dense/vars/0``.

    Raises:
        CheckpointKeyError: The checkpoint has no such key.
        CorruptCheckpointError: The data cannot be read.
    """
    path = check_path(path)
    if is_keras_file(path):
        return read_keras_tensor(path, key)
    prefix, reader = open_reader(path)
    try:
        full = _full_key(reader, key)
    except CheckpointKeyError:
        graph = load_graph(prefix)
        resolved = None if graph is None else _by_name(graph, key)
        if resolved is not None and reader.has_tensor(resolved):
            return get_tensor(reader, prefix, resolved)
        keys = sorted(k for k in reader.get_variable_to_shape_map() if k != OBJECT_GRAPH_KEY)
        raise CheckpointKeyError(
            f"no key {key!r} in checkpoint {prefix}; it has {len(keys)} keys, e.g. "
            f"{', '.join(keys[:5])} (see `ckptkit inspect {prefix}`)"
        ) from None
    return get_tensor(reader, prefix, full)


def _by_name(graph: CheckpointGraph, name: str) -> str | None:
    """The key of the variable `name` names: an object path, its own name, or ``path (name)``.

    Raises:
        CheckpointKeyError: The variable's own name is several variables'.
    """
    path, _, own = name.partition(" (")
    found = resolve_object_path(graph, path)
    if found is not None:
        return found
    own = own.removesuffix(")") if own else name
    keys = sorted(
        node.path + VALUE_SUFFIX
        for node in graph.nodes
        if node.full_name == own and node.path and node.value is not None
    )
    if len(keys) > 1:
        raise CheckpointKeyError(
            f"{own!r} is the name of {len(keys)} variables in checkpoint {graph.path} "
            f"({', '.join(keys)}); pass one of their keys"
        )
    return keys[0] if keys else None


def get_tensor(reader: Any, prefix: str, key: str) -> np.ndarray[Any, Any]:
    """One tensor through an open reader.

    Raises:
        CorruptCheckpointError: The data cannot be read: its checksum or size checks failed
            (ckptkit's reader, or TensorFlow's on gs:// and ram://, where a data file cut short
            raises IndexError).
    """
    import numpy as np

    try:
        return np.asarray(reader.get_tensor(key))
    except read_errors() as e:  # ValueError: damaged or short data, missing slices
        raise CorruptCheckpointError(
            f"cannot read {key!r} from checkpoint {prefix}: {first_line(e)}; the checkpoint is "
            "damaged: restore an earlier one"
        ) from e


def _max_abs_diff(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float | None:
    import numpy as np

    if a.dtype.kind not in "biufc" or a.size == 0:
        return None
    worst = float(np.max(np.abs(a.astype(np.complex128) - b.astype(np.complex128))))
    return worst if math.isfinite(worst) else None


class _Side(NamedTuple):
    """One side of a diff: its path, ``{key: (shape, dtype)}`` and how to read a value."""

    path: str
    specs: dict[str, tuple[tuple[int, ...], str]]
    read: Callable[[str], np.ndarray[Any, Any]]


def _side(path: str) -> _Side:
    if is_keras_file(path):
        specs = {key: (shape, dtype) for key, shape, dtype, _ in keras_datasets(path)}
        return _Side(path, specs, functools.partial(read_keras_tensor, path))
    prefix, reader = open_reader(path)
    shapes, dtypes = reader.get_variable_to_shape_map(), _dtype_enums(reader)
    specs = {
        k: (tuple(shapes[k]), _dtype_facts(dtypes[k])[0]) for k in shapes if k != OBJECT_GRAPH_KEY
    }
    return _Side(prefix, specs, functools.partial(get_tensor, reader, prefix))


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> CheckpointDiff:
    """Compares two checkpoints key by key, values included.

    Args:
        a: First checkpoint (prefix or directory), or a Keras ``.weights.h5`` / ``.keras``
            file (its datasets are the keys).
        b: Second checkpoint, likewise.

    Returns:
        Keys only in one of them, and keys whose shape, dtype or values differ.

    Raises:
        FormatError: One is a Keras file and the other a TensorFlow checkpoint: their keys
            name values differently, so nothing would match.
    """
    import numpy as np

    a, b = check_path(a), check_path(b)
    if is_keras_file(a) != is_keras_file(b):
        raise FormatError(
            f"cannot compare {a} with {b}: one is a Keras file, the other a TensorFlow "
            "checkpoint, and their keys name values differently; compare two of a kind"
        )
    side_a, side_b = _side(a), _side(b)
    changed = []
    for key in sorted(side_a.specs.keys() & side_b.specs.keys()):
        spec_a, spec_b = side_a.specs[key], side_b.specs[key]
        if spec_a != spec_b:
            changed.append(KeyChange(key, spec_a, spec_b, None))
            continue
        value_a, value_b = side_a.read(key), side_b.read(key)
        if np.array_equal(value_a, value_b, equal_nan=value_a.dtype.kind in "fc"):
            continue
        changed.append(KeyChange(key, spec_a, spec_b, _max_abs_diff(value_a, value_b)))
    return CheckpointDiff(
        a=side_a.path,
        b=side_b.path,
        only_in_a=tuple(sorted(side_a.specs.keys() - side_b.specs.keys())),
        only_in_b=tuple(sorted(side_b.specs.keys() - side_a.specs.keys())),
        changed=tuple(changed),
    )
