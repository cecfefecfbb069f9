"""ckptkit against plain TensorFlow, on the same state, in the same process, interleaved.

Cases: (a) one large state (~1 GiB of float32 in 4 variables); (b) many small variables
(10,000). For each, save and restore through `ckptkit.CheckpointManager` and through plain
`tf.train.CheckpointManager` / `tf.train.Checkpoint.restore`, alternating which goes first,
then prints medians and the ratio ckptkit / plain. Also times `ckptkit.inspect` against
`tf.train.list_variables` on (b).

    python benchmarks/bench.py [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(pairs: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Runs each callable `reps` times, alternating which one goes first."""
    names = list(pairs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            times[name].append(timed(pairs[name]))
    return times


def report(label: str, times: dict[str, list[float]]) -> float:
    ours, plain = (statistics.median(v) for v in times.values())
    ratio = ours / plain
    print(
        f"{label:<32} ckptkit {ours * 1e3:9.1f} ms  plain {plain * 1e3:9.1f} ms  ratio {ratio:.3f}"
    )
    return ratio


def bench_case(name: str, state: dict[str, tf.Variable], reps: int, root: str) -> dict[str, float]:
    plain_dir, ours_dir = os.path.join(root, f"{name}-plain"), os.path.join(root, f"{name}-ckptkit")
    config = ckptkit.CheckpointConfig(
        directory=ours_dir, retention=ckptkit.Retention(max_to_keep=2)
    )
    plain_root = tf.train.Checkpoint(**state)
    plain = tf.train.CheckpointManager(
        plain_root, **config.tf_manager_kwargs() | {"directory": plain_dir}
    )
    ours = ckptkit.CheckpointManager(config, **state)
    counter = iter(range(1, 10**6))

    def save_plain() -> None:
        plain.save(checkpoint_number=next(counter))

    def save_ours() -> None:
        ours.save(next(counter))

    results = {}
    save_plain(), save_ours()  # warm-up: first-call tracing and directory creation
    results["save"] = report(
        f"({name}) save", interleaved({"ckptkit": save_ours, "plain": save_plain}, reps)
    )

    plain_path = plain.latest_checkpoint

    def restore_plain() -> None:
        plain_root.restore(plain_path).expect_partial()

    def restore_ours() -> None:
        ours.restore(assertion="existing_objects_matched")

    restore_plain(), restore_ours()
    results["restore"] = report(
        f"({name}) restore", interleaved({"ckptkit": restore_ours, "plain": restore_plain}, reps)
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    large_elems = 2**22 if args.quick else 2**26  # per variable; 4 variables: 64 MiB or 1 GiB
    n_small = 1000 if args.quick else 10_000
    print(f"TensorFlow {tf.__version__}, ckptkit {ckptkit.__version__}, {args.reps} reps, medians")
    root = tempfile.mkdtemp(prefix="ckptkit-bench-")
    try:
        large = {f"w{i}": tf.Variable(tf.random.normal((large_elems,))) for i in range(4)}
        gib = sum(v.shape.num_elements() * 4 for v in large.values()) / 2**30
        print(f"(a) large: 4 float32 variables, {gib:.2f} GiB")
        ratios = {f"a_{k}": v for k, v in bench_case("a", large, args.reps, root).items()}
        del large

        small = {"vars": [tf.Variable(tf.fill((16,), float(i))) for i in range(n_small)]}
        print(f"(b) many: {n_small} float32 variables of 16 elements")
        ratios |= {f"b_{k}": v for k, v in bench_case("b", small, args.reps, root).items()}

        path = ckptkit.list_checkpoints(os.path.join(root, "b-ckptkit"))[-1].path
        inspect_times = interleaved(
            {
                "ckptkit": lambda: ckptkit.inspect(path),
                "plain": lambda: tf.train.list_variables(path),
            },
            max(args.reps, 7),
        )
        ratios["b_inspect"] = report("(b) inspect vs list_variables", inspect_times)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    goals = {"a_save": 1.05, "a_restore": 1.05, "b_save": 1.05, "b_restore": 1.05, "b_inspect": 1.2}
    print("\nratio goals (ckptkit / plain):")
    for key, goal in goals.items():
        verdict = "ok" if ratios[key] <= goal else "OVER"
        print(f"  {key:<10} {ratios[key]:.3f}  goal <= {goal}  {verdict}")


if __name__ == "__main__":
    main()
