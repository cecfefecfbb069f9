"""Bench case (i): reading checkpoints without TensorFlow, against TensorFlow's own reader.

- ``inspect`` as a whole process: ``ckptkit inspect DIR --json`` of the 10,000-variable
  checkpoint of (b), against a process that imports TensorFlow and calls
  `tf.train.list_variables` and ``load_checkpoint(...).get_variable_to_dtype_map()``.
- ``ls`` as a whole process: ``ckptkit ls DIR``, against ``python -c "import ckptkit"``.
- In process (TensorFlow already imported for the baselines): `ckptkit.read_tensor` of one
  256 MiB variable against ``tf.train.load_checkpoint(p).get_tensor(key)``; and
  ``ckptkit.verify(p, full=True)`` of the 1 GiB checkpoint of (a) against reading every tensor
  with TensorFlow's reader (which checks the same crc32c).

Both sides read the same files from the page cache; dirty pages are flushed before each run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import tensorflow as tf
from timing import interleaved, report

import ckptkit

_TF_LIST = (
    "import tensorflow as tf, sys; p = sys.argv[1]; tf.train.list_variables(p); "
    "tf.train.load_checkpoint(p).get_variable_to_dtype_map()"
)


def _process(*args: str) -> None:
    subprocess.run(
        [sys.executable, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def bench_reading(reps: int, root: str, elems: int, n_small: int) -> dict[str, float]:
    """Case (i) on `n_small` small variables and 4 float32 variables of `elems`; the ratios."""
    many = os.path.join(root, "reading-many")
    small = [tf.Variable(tf.fill((16,), float(i))) for i in range(n_small)]
    ckptkit.CheckpointManager(many, vars=small).save(1)
    large = os.path.join(root, "reading-large")
    variables = {f"w{i}": tf.Variable(tf.random.normal((elems,))) for i in range(4)}
    ckptkit.CheckpointManager(large, **variables).save(1)
    del small, variables
    prefix = ckptkit.list_checkpoints(large)[-1].path
    key = "w0/.ATTRIBUTES/VARIABLE_VALUE"
    many_prefix = ckptkit.list_checkpoints(many)[-1].path

    print(f"(i) reading: {n_small} variables; 4 x {elems * 4 / 2**20:.0f} MiB")
    process_reps = max(reps, 5)
    ratios = {
        "i_inspect_process": report(
            "(i) inspect",
            interleaved(
                {
                    "ckptkit": lambda: _process("-m", "ckptkit", "inspect", many, "--json"),
                    "TF list+dtypes": lambda: _process("-c", _TF_LIST, many_prefix),
                },
                process_reps,
            ),
        ),
        "i_ls_process": report(
            "(i) ls",
            interleaved(
                {
                    "ckptkit": lambda: _process("-m", "ckptkit", "ls", many),
                    "import ckptkit": lambda: _process("-c", "import ckptkit"),
                },
                process_reps,
            ),
        ),
    }

    def read_all_with_tf() -> None:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)

    ratios["i_read_tensor"] = report(
        "(i) read_tensor",
        interleaved(
            {
                "ckptkit": lambda: ckptkit.read_tensor(prefix, key),
                "TF get_tensor": lambda: tf.train.load_checkpoint(prefix).get_tensor(key),
            },
            reps,
        ),
    )
    ratios["i_verify_full"] = report(
        "(i) verify full",
        interleaved(
            {
                "ckptkit": lambda: ckptkit.verify(prefix, full=True),
                "TF read all": read_all_with_tf,
            },
            reps,
        ),
    )
    return ratios
