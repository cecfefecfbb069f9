"""One worker of a MultiWorkerMirroredStrategy cluster (TF_CONFIG names it) training and saving.

Usage: cluster_worker.py DIR [--steps N] [--every-steps K | --every-secs S] [--mib M]
[--late SECS] [--step-secs SECS] [--forever] [--chief-file-limit MIB] [--preemption]
[--freeze-at-restore] [--async].

Prints one JSON object per line: ``{"restored": step or null, "values": [...]}`` after
`restore_or_initialize`; ``{"saved": step}`` after each save; ``{"error": class name,
"message": ...}`` when the manager raises (exit code 3); ``{"done": step, "values": [...],
"listed": [...]}`` at the end. `values` are the mirrored variable, the sum a `SyncOnRead`
variable reads as, and the step.

- `--late`: worker 1 sleeps after the first step, so that its clock runs behind the chief's.
- `--step-secs`: each step lasts at least that long.
- `--mib`: a variable of that many MiB, so that a save takes long enough to be caught in the act.
- `--forever`: train until killed, printing ``{"step": step}`` after each step and
  ``{"saving": step}`` before each save.
- `--chief-file-limit`: the chief's files may not grow past that many MiB (RLIMIT_FSIZE), so
  that its saves fail as on a full disk.
- `--preemption`: `CheckpointConfig(preemption=Preemption())`.
- `--freeze-at-restore`: worker 1 stops itself (SIGSTOP) before `restore_or_initialize`, as a
  frozen machine would.
- `--async`: `CheckpointConfig(async_save=True)`; `{"done": ...}` comes after `wait()`, so that
  its listing includes the last save.

Started by tests/test_distributed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--every-steps", type=int)
    parser.add_argument("--every-secs", type=float)
    parser.add_argument("--mib", type=int, default=0)
    parser.add_argument("--late", type=float, default=0.0)
    parser.add_argument("--step-secs", type=float, default=0.0)
    parser.add_argument("--forever", action="store_true")
    parser.add_argument("--chief-file-limit", type=int, default=0)
    parser.add_argument("--preemption", action="store_true")
    parser.add_argument("--freeze-at-restore", action="store_true")
    parser.add_argument("--async", dest="async_save", action="store_true")
    args = parser.parse_args()

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    worker = strategy.cluster_resolver.task_id
    with strategy.scope():
        mirrored = tf.Variable(0.0)
        on_read = tf.Variable(
            0.0,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM,
        )
        step = tf.Variable(0, dtype=tf.int64)
        big = tf.Variable(tf.zeros((args.mib << 18,)))
    config = ckptkit.CheckpointConfig(
        directory=args.directory,
        schedule=ckptkit.Schedule(every_steps=args.every_steps, every_secs=args.every_secs),
        retention=ckptkit.Retention(max_to_keep=3),
        restore=ckptkit.RestorePolicy(assertion="consumed"),
        preemption=ckptkit.Preemption() if args.preemption else None,
        async_save=args.async_save,
    )
    manager = ckptkit.CheckpointManager(
        config, mirrored=mirrored, on_read=on_read, step=step, big=big
    )

    def values() -> list[float]:
        return [float(mirrored.numpy()), float(on_read.numpy()), float(step.numpy())]

    @tf.function
    def train() -> None:
        def replica_step() -> None:
            context = tf.distribute.get_replica_context()
            # An all-reduce per step, as for gradients: the workers go step by step together.
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0)
            mirrored.assign_add(total / context.num_replicas_in_sync)
            on_read.assign_add(1.0)  # each worker adds 1; reading sums over the workers

        strategy.run(replica_step)
        step.assign_add(1)
        big.assign_add(tf.ones_like(big))

    try:
        if worker == 1 and args.freeze_at_restore:
            os.kill(os.getpid(), signal.SIGSTOP)
        result = manager.restore_or_initialize()
        say(restored=result.step if result.restored else None, values=values())
        if worker == 0 and args.chief_file_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit get EFBIG
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (args.chief_file_limit << 20, hard))
        while args.forever or int(step.numpy()) < args.steps:
            train()
            time.sleep(args.step_secs)
            now = int(step.numpy())
            if worker == 1 and now == 1:
                time.sleep(args.late)  # its schedule's clock starts later than the chief's
            if args.forever:
                say(step=now)
                if manager.due(now):
                    say(saving=now)
            if manager.maybe_save(now):
                say(saved=now)
        manager.wait()
    except ckptkit.CkptkitError as e:
        say(error=type(e).__name__, message=str(e))
        raise SystemExit(3) from e
    say(done=int(step.numpy()), values=values(), listed=[c.step for c in manager.checkpoints])
    manager.close()


if __name__ == "__main__":
    main()
