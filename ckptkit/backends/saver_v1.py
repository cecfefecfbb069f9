"""Graph-mode checkpoints through `tf.compat.v1.train.Saver`, for `tf.Graph` + `Session` code.

The Saver writes the checkpoint files (and, by default, the ``.meta`` graph); ckptkit keeps the
state file, naming and retention, so the Saver is built with ``max_to_keep=None`` and saves
with ``write_state=False``. Checkpoints are name-based: keys are variable names
(``dense/kernel``, ``global_step``), as every Saver and Estimator wrote them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from ckptkit.backends.tf_internals import name_saveables
from ckptkit.errors import CorruptCheckpointError, TrackableError
from ckptkit.keymap import compile_key_map
from ckptkit.matching import NamedValue, NameMatch, ValueSpec, match_names
from ckptkit.reading import inspection
from ckptkit.status import RestoreReport
from ckptkit.storage import layout, tiers

__all__ = ["SaverBackend"]

_IDENTITY = compile_key_map(None)


class SaverBackend:
    """Saves and restores the variables of a `tf.Graph` through a v1 `Saver`.

    Args:
        session: The `tf.compat.v1.Session` whose graph holds the variables; may be bound
            later with `bind` (the session hook gets it only once the session exists).
        graph: The graph, when there is no session yet; defaults to the session's graph.
        var_list: The variables to save: a list, or a dict ``{checkpoint name: variable}``;
            None means all saveable variables of the graph, as for `Saver`.
        meta_graph: Also write ``<prefix>-<step>.meta``, the graph without its Python
            source (`tf.compat.v1.train.import_meta_graph` reads it back).
    """

    def __init__(
        self,
        session: Any = None,
        *,
        graph: tf.Graph | None = None,
        var_list: Any = None,
        meta_graph: bool = True,
    ) -> None:
        if session is None and graph is None:
            raise TypeError("SaverBackend needs a session or a graph")
        self._session = session
        self.graph: tf.Graph = graph if graph is not None else session.graph
        self._var_list = var_list
        self._meta_graph = meta_graph
        self._saver: Any = None
        # Listing a graph's saveables costs ~15 ms per 1,000 variables: done once per graph
        # version (it changes when ops are added), and once per checkpoint for the match.
        self._programs: tuple[int, dict[str, Any], list[NamedValue]] | None = None
        self._matches: dict[tuple[str, int], NameMatch] = {}
        self._subsets: dict[frozenset[str], Any] = {}  # Savers for partial restores
        if self._program():
            self._saver = self._build(var_list)  # now, before anyone finalizes the graph

    def bind(self, session: Any) -> None:
        """Sets the session to run saves and restores in (its graph must be this graph)."""
        if session.graph is not self.graph:
            raise TypeError("the session runs another graph than the one this manager saves")
        self._session = session

    @property
    def session(self) -> Any:
        """The session saves and restores run in."""
        if self._session is None:
            raise TypeError(
                "no session yet: pass session= to CheckpointManager.for_session, or let the "
                "session hook bind it in after_create_session"
            )
        return self._session

    def read_step(self, step: Any) -> Any:
        """Runs a graph tensor or variable of this graph in the session; else returns `step`."""
        try:
            graph = step.graph
        except AttributeError:
            return step
        return self.session.run(step) if graph is self.graph else step

    tensorflow_version = tf.__version__
    cluster = None  # graph mode has no tf.distribute strategy

    def write(self, prefix: str) -> str:
        """Saves the graph's variables (and the ``.meta`` graph) to `prefix`.

        Raises:
            SaveError: TensorFlow failed to write (`DiskFullError` when out of space).
        """
        if self._saver is None:
            self._saver = self._build(self._var_list)
        try:
            with self.graph.as_default():  # the Saver checks for graph mode
                written = self._saver.save(
                    self.session, prefix, write_meta_graph=self._meta_graph, write_state=False
                )
        except tf.errors.OpError as e:
            raise layout.save_error(prefix, os.path.dirname(prefix), e) from e
        return str(written)

    def snapshot(self) -> Callable[[str], str]:
        """Graph mode saves synchronously: a session's variables are read when written.

        Raises:
            TrackableError: Always.
        """
        raise TrackableError(
            "graph-mode managers (for_session) save synchronously; pass async_save=False"
        )

    def compare(self, path: str, status: Any = None) -> RestoreReport:
        """Matches the checkpoint's names with the graph's variables, loading nothing.

        A graph with no variables first imports the checkpoint's ``.meta`` graph, so a graph
        can be restored without the Python code that built it.
        """
        return self._match(path).report

    def restore(
        self, path: str, *, expect_partial: bool, leave_out: frozenset[int] = frozenset()
    ) -> Any:
        """Restores `path` into the session: all variables, or the matched ones when partial.

        Raises:
            TrackableError: `leave_out` given: a graph-mode restore has no object graph.
        """
        if leave_out:
            raise TrackableError(
                f"exclude= and skip_mismatch= need an object-based checkpoint; {path} is "
                "restored by name in graph mode: pass var_list= with the variables to restore"
            )
        found = self._match(path)
        if found.report.unrestored_objects:
            # A Saver fails on any variable missing from the checkpoint; restore the subset.
            program = self._program()
            names = {key: program[key] for key, _ in found.pairs}
            if names and self.graph.finalized:
                raise TrackableError(
                    f"restoring only part of the graph's variables from {path} needs a Saver for "
                    "that part, and the graph is finalized (MonitoredTrainingSession does that); "
                    "pass var_list= with the variables the checkpoint holds instead"
                )
            subset = frozenset(names)
            if names and subset not in self._subsets:  # built once: each adds ops to the graph
                self._subsets[subset] = self._build(names)
            saver = self._subsets.get(subset)
        else:
            saver = self._saver
        try:
            if saver is not None:
                with self.graph.as_default():
                    saver.restore(self.session, tiers.readable(path))
        except (tf.errors.OpError, ValueError) as e:
            raise CorruptCheckpointError(
                f"TensorFlow could not load checkpoint {path}: {e}; its data may be damaged"
            ) from e
        return None

    def _match(self, path: str) -> NameMatch:
        if not self._program():
            self._import_meta_graph(path)
        key = (path, self.graph.version)
        if key not in self._matches:
            self._program()
            assert self._programs is not None
            variables = self._programs[2]
            self._matches = {
                key: match_names(path, _checkpoint_values(path), variables, _IDENTITY, loose=False)
            }
        return self._matches[key]

    def _program(self) -> dict[str, Any]:
        """``{checkpoint name: variable or saveable}`` as the Saver names them."""
        version = self.graph.version
        if self._programs is None or self._programs[0] != version:
            found = self._list_program()
            described = [NamedValue(name, "", _describe(value)) for name, value in found.items()]
            self._programs = (version, found, described)
        return self._programs[1]

    def _list_program(self) -> dict[str, Any]:
        with self.graph.as_default():
            var_list = self._var_list
            if var_list is None:
                var_list = tf.compat.v1.global_variables() + tf.compat.v1.get_collection(
                    tf.compat.v1.GraphKeys.SAVEABLE_OBJECTS
                )
            if not var_list:
                return {}
            if isinstance(var_list, Mapping):  # {name in the checkpoint: variable}, as given
                return dict(var_list)
            try:
                return name_saveables(var_list)
            except (TypeError, ValueError) as e:
                raise TrackableError(f"the Saver cannot save var_list: {e}") from e

    def _build(self, var_list: Any) -> Any:
        with self.graph.as_default():
            return tf.compat.v1.train.Saver(
                var_list, max_to_keep=None, save_relative_paths=True, allow_empty=False
            )

    def _import_meta_graph(self, path: str) -> None:
        meta = f"{path}.meta"
        if not tf.io.gfile.exists(meta):
            return
        with self.graph.as_default():
            try:
                self._saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
            except (tf.errors.OpError, ValueError, KeyError) as e:
                raise CorruptCheckpointError(
                    f"cannot import the graph of {meta}: {e}; build the graph in Python instead"
                ) from e


def _checkpoint_values(path: str) -> dict[str, ValueSpec]:
    """The checkpoint's values by the name a Saver looks them up by.

    For an object-based checkpoint that is the variable's name when saved, which is how a
    Saver restores one (`tf.compat.v1.train.Saver.restore` falls back to it).
    """
    graph = inspection.load_graph(path)
    if graph is not None:
        return {n.full_name: n.value for n in graph.nodes if n.value is not None and n.full_name}
    return inspection.value_specs(path)


def _describe(value: Any) -> ValueSpec:
    """Shape and dtype of what the Saver saves under a name, where they are known."""
    # In graph mode the Saver holds a variable's read tensor (or ref tensor); both carry them.
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, tf.DType) and dtype.base_dtype != tf.resource:
        return _spec(tf.TensorShape(value.shape), dtype)
    return ValueSpec(None, None)  # a partitioned variable or another saveable: not compared


def _spec(shape: tf.TensorShape, dtype: tf.DType) -> ValueSpec:
    dims = tuple(shape.as_list()) if shape.rank is not None else None
    known = dims if dims is not None and None not in dims else None
    return ValueSpec(known, dtype.base_dtype.name)
