"""A training loop that saves every step; every variable equals the step it was saved at.

Usage: train_forever.py DIR [--keep N] [--mib M] [--async] [--cache C] [--lease-secs S]. Prints "resumed N" (or "fresh"),
then "committed N" once a save of step N is committed: when its save returns, or with `--async`
(saves in the background) when the next one returns, which waits for it first. `--keep` sets max_to_keep (3), `--mib` adds a variable
of that many MiB so that a save takes long enough to be caught in the act; `--cache` and
`--lease-secs` set `Storage` for a remote DIR. Run and SIGKILLed by tests/test_faults.py,
tests/test_lock.py and tests/test_remote.py.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit

SHAPES = [(256, 256), (1024,), (64, 64, 16)]  # ~1.3 MiB: a save is most of each step


def variables(mib: int = 0) -> dict[str, tf.Variable]:
    shapes = [*SHAPES, (mib << 18,)] if mib else SHAPES
    return {f"v{i}": tf.Variable(tf.zeros(shape)) for i, shape in enumerate(shapes)}


def config(directory: str, keep: int = 3) -> ckptkit.CheckpointConfig:
    return ckptkit.CheckpointConfig(
        directory=directory,
        schedule=ckptkit.Schedule(every_steps=1),
        retention=ckptkit.Retention(max_to_keep=keep),
        restore=ckptkit.RestorePolicy(assertion="consumed"),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--mib", type=int, default=0)
    parser.add_argument("--async", dest="background", action="store_true")
    parser.add_argument("--cache")
    parser.add_argument("--lease-secs", type=float, default=60.0)
    args = parser.parse_args()
    state = variables(args.mib)
    step = tf.Variable(0, dtype=tf.int64)
    storage = ckptkit.Storage(cache_dir=args.cache, lease_secs=args.lease_secs)
    cfg = config(args.directory, args.keep).model_copy(
        update={"async_save": args.background, "storage": storage}
    )
    mgr = ckptkit.CheckpointManager(cfg, step=step, **state)
    result = mgr.restore_or_initialize()
    print(f"resumed {result.step}" if result.restored else "fresh", flush=True)
    in_flight = None
    while True:
        step.assign_add(1)
        for v in state.values():
            v.assign(tf.fill(v.shape, float(step.numpy())))
        if mgr.maybe_save(step):
            if in_flight is not None:
                print(f"committed {in_flight}", flush=True)
            in_flight = int(step.numpy())
            if not args.background:
                print(f"committed {in_flight}", flush=True)
                in_flight = None


if __name__ == "__main__":
    main()
