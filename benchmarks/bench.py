"""ckptkit against plain TensorFlow, on the same state, in the same process, interleaved.

Cases: (a) one large state (~1 GiB of float32 in 4 variables); (b) many small variables
(10,000). For each, save and restore through `ckptkit.CheckpointManager` and through plain
`tf.train.CheckpointManager` / `tf.train.Checkpoint.restore` (and, for saves, a bare
`tf.train.Checkpoint.write`, the floor; and `durable=True` against that write with its files
and folder fsynced: unsynced writes vary several-fold from call to call on this machine, synced
ones do not), rotating which goes first, then prints medians and the ratios ckptkit / plain.
Baselines make the checks ckptkit makes: restores are against
`Checkpoint.restore(...).assert_existing_objects_matched()` (the unchecked restore printed
beside it), and `ckptkit.inspect` on (b) against `tf.train.list_variables` plus the dtype map
(`list_variables` alone beside it). (c) `model.fit` of a tiny model for 2,000 batches with
`ckptkit.keras.CheckpointCallback` (saving every epoch) against the same fit without callbacks
and with Keras's `BackupAndRestore`, (d) graph-mode saves and restores of 2,000 variables of
32 KiB (64 MiB) through `CheckpointManager.for_session` against a plain
`tf.compat.v1.train.Saver`, printing ckptkit's fixed cost per restore, and (e) async saves
of the state of (a): the time `save` blocks training and the time to commit, against a sync
save; the step rate of a training loop (a dense model holding the same state) saving every K
steps (not on its last), async and sync, against the same loop without saves; the same loop on
four `tf.Variable`s with ckptkit's async saves against TensorFlow's own async checkpoint
(`CheckpointOptions(experimental_enable_async_checkpoint=True)`; it fails on a Keras 3 model);
and the peak extra host memory (RSS) while an async save is in flight, as a multiple of the
state's size.
(f) saves on a 2-worker MultiWorkerMirroredStrategy cluster of two processes on this machine
(256 MiB each), against TensorFlow's chief + ``workertemp`` pattern, and the time an async save
blocks each worker there against the sync save (see `cluster_case.py`).
(g) saves of the state of (a), a data file per variable (`max_shard_bytes`), to an S3 server on
this machine (moto, its own process): staged through ckptkit against a local write of the same
files plus a raw fsspec put, and ckptkit one file at a time, the blocking time of an async
save there against one to a local directory, and a restore with nothing cached against
fsspec's batched get plus a plain restore (see `remote_case.py`).
(h) `ckptkit.average` of 5 checkpoints of the state of (a), time and peak memory, against
tensor2tensor's way of averaging (all sums in memory at once; see `average_case.py`); and the
time to resume: a new process restoring the state of (a), against a plain TensorFlow script
doing the same (see `resume_case.py`).
(i) reading without TensorFlow: `ckptkit inspect` and `ckptkit ls` as whole processes,
`read_tensor` of 256 MiB and `verify(full=True)` of the state of (a), against TensorFlow's
reader (see `reading_case.py`).

Dirty pages are flushed (`os.sync`) before every timed repetition, outside the timed region,
so that one case's writeback does not land in the next one's time.

    python benchmarks/bench.py [--reps 7] [--quick] [--only a|e|f|g|h|i]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
from average_case import bench_average
from cluster_case import bench_cluster
from reading_case import bench_reading
from remote_case import bench_remote
from resume_case import bench_resume
from timing import interleaved, report, timed

import ckptkit

GOALS = {
    "a_save": 1.05,
    "a_durable": 1.05,  # durable=True, over a bare write whose files and folder are fsynced
    "a_restore": 1.05,
    "b_save": 1.05,
    "b_durable": 1.05,
    "b_restore": 1.05,
    "b_inspect": 1.0,  # against list_variables + the dtype map (ckptkit gives dtypes too)
    "c_fit": 1.02,
    "d_save": 1.05,
    "d_restore": 1.2,  # 2,000 variables, 64 MiB: the fixed cost per restore is printed
    "e_blocked": 0.05,  # an async save's time in save(), over a sync save's
    "e_commit": 1.1,  # an async save's time until committed, over a sync save's
    "e_loop_async": 1 / 0.9,  # seconds per step with async saves every K, over no saves
    "e_loop_vs_tf": 1.0,  # the same on tf.Variables, over TensorFlow's own async checkpoint
    "f_cluster": 1.1,  # a 2-worker cluster's save, over TensorFlow's chief + workertemp pattern
    "f_async_blocked": 0.1,  # an async cluster save's time in save(), over a sync cluster save's
    "g_staged_save": 1 / 0.8,  # a save to s3:// over a local write + raw fsspec put (>= 0.8x)
    "g_async_blocked": 1.2,  # an async save's blocking time to s3://, over one to a local dir
    "g_cold_restore": 1.1,  # a restore from s3:// with nothing cached, over fsspec get + read
    "h_average": 1.1,  # averaging 5 checkpoints (float64 sums), over t2t's way (float32 sums)
    "h_resume": 1.05,  # a new process restoring (a)'s state, over a plain TensorFlow script
    "i_inspect_process": 0.15,  # `ckptkit inspect` of (b), over a TF list_variables process
    "i_ls_process": 1.5,  # `ckptkit ls`, over `python -c "import ckptkit"`
    "i_read_tensor": 1.0,  # one 256 MiB variable, over TF's load_checkpoint(p).get_tensor
    "i_verify_full": 1.0,  # verify full=True of (a), over reading each tensor with TF's reader
}


def bench_case(name: str, state: dict[str, object], reps: int, root: str) -> dict[str, float]:
    """Save and restore of `state` through ckptkit and through plain TensorFlow."""
    config = ckptkit.CheckpointConfig(
        directory=os.path.join(root, f"{name}-ckptkit"), retention=ckptkit.Retention(max_to_keep=2)
    )
    ours = ckptkit.CheckpointManager(config, **state)
    durable = ckptkit.CheckpointManager(
        config.model_copy(
            update={"directory": os.path.join(root, f"{name}-durable"), "durable": True}
        ),
        **state,
    )
    plain_root = tf.train.Checkpoint(**state)
    plain = tf.train.CheckpointManager(
        plain_root, **config.tf_manager_kwargs() | {"directory": os.path.join(root, f"{name}-tf")}
    )
    bare_root = tf.train.Checkpoint(**state)
    bare_prefix = os.path.join(root, f"{name}-write", "ckpt")
    counter = iter(range(1, 10**6))
    bare_written: list[str] = []

    def bare_write() -> None:
        # The floor: TensorFlow's write alone, to new files, keeping 2 like the managers do.
        bare_written.append(bare_root.write(f"{bare_prefix}-{next(counter)}"))
        if len(bare_written) > 2:
            for old in tf.io.gfile.glob(bare_written.pop(0) + ".*"):
                tf.io.gfile.remove(old)

    def bare_write_synced() -> None:
        # The floor of a durable save: the write, then its files and folder on disk.
        bare_write()
        folder = os.path.dirname(bare_prefix)
        for path in [*tf.io.gfile.glob(bare_written[-1] + ".*"), folder]:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    saves: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: ours.save(next(counter)),
        "tf.train.CheckpointManager.save": lambda: plain.save(checkpoint_number=next(counter)),
        "bare write": bare_write,
        "ckptkit durable=True": lambda: durable.save(next(counter)),
        "bare write+fsync": bare_write_synced,
    }
    for run in saves.values():  # warm-up: first-call tracing and directory creation
        run()
    save_medians = interleaved(saves, reps)
    plain_save = save_medians["tf.train.CheckpointManager.save"]
    durable_save = save_medians.pop("ckptkit durable=True")
    synced = save_medians.pop("bare write+fsync")
    results = {"save": report(f"({name}) save", save_medians)}
    # How long a write takes to reach the page cache varies several-fold from call to call
    # here (64 MiB: 40 to 160 ms for the same call); a write that ends on disk does not.
    results["durable"] = durable_save / synced
    print(
        f"({name}) durable=True save {durable_save * 1e3:8.1f} ms | bare write+fsync "
        f"{synced * 1e3:8.1f} ms (ratio {results['durable']:.3f})"
    )
    latest = ours.latest
    assert latest is not None
    for level, full in (("cheap", False), ("full", True)):
        took = statistics.median(
            timed(lambda full=full: ckptkit.verify(latest.path, full=full)) for _ in range(reps)
        )
        results[f"verify_{level}"] = took / plain_save
        print(
            f"({name}) verify {level:<5} {took * 1e3:8.1f} ms "
            f"(ratio {took / plain_save:.3f} to tf.train.CheckpointManager.save)",
            flush=True,
        )

    plain_path = plain.latest_checkpoint
    # Like with like: ckptkit asserts existing_objects_matched, so the first baseline does too;
    # the old baseline (no check) is printed beside it.
    restores: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: ours.restore(assertion="existing_objects_matched"),
        "tf restore+assert": lambda: plain_root.restore(
            plain_path
        ).assert_existing_objects_matched(),
        "tf restore, no check": lambda: plain_root.restore(plain_path).expect_partial(),
    }
    for run in restores.values():
        run()
    results["restore"] = report(f"({name}) restore", interleaved(restores, reps))
    return results


def bench_fit(reps: int, root: str, batches: int) -> float:
    """`fit` with the callback against `fit` without callbacks; returns the ratio."""
    import keras
    import numpy as np

    from ckptkit.keras import CheckpointCallback

    epochs, batch_size = 4, 8
    x = np.random.default_rng(0).normal(size=(batches // epochs * batch_size, 8))
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")

    def fit(*callbacks: keras.callbacks.Callback) -> None:
        model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=list(callbacks))

    fit()  # trace once
    ours = CheckpointCallback(os.path.join(root, "c-ckptkit"))  # removes its backups after fit
    keras_backup = keras.callbacks.BackupAndRestore(os.path.join(root, "c-keras"))
    runs: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: fit(ours),
        "no callback": fit,
        "keras BackupAndRestore": lambda: fit(keras_backup),
    }
    print(f"(c) fit: {batches} batches of {batch_size}, {epochs} epochs, a save per epoch")
    return report("(c) fit", interleaved(runs, reps))


def bench_graph(reps: int, root: str, n_vars: int, shape: tuple[int, int]) -> dict[str, float]:
    """Graph mode: `CheckpointManager.for_session` against a plain v1 `Saver`; returns ratios."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.train.get_or_create_global_step()
        for i in range(n_vars):
            v1.get_variable(f"layer_{i}/kernel", shape, initializer=v1.ones_initializer())
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    config = ckptkit.CheckpointConfig(
        directory=os.path.join(root, "d-ckptkit"), prefix="model.ckpt", retention={"max_to_keep": 5}
    )
    manager = ckptkit.CheckpointManager.for_session(config, session)
    with graph.as_default():
        saver = v1.train.Saver(max_to_keep=5)  # writes .meta and the state file too
    plain_prefix = os.path.join(root, "d-plain", "model.ckpt")
    os.makedirs(os.path.dirname(plain_prefix))
    counter = iter(range(1, 1_000_000))

    def plain_save() -> None:
        with graph.as_default():
            saver.save(session, plain_prefix, global_step=next(counter))

    saves: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: manager.save(next(counter)),
        "tf.compat.v1.train.Saver": plain_save,
    }
    mib = n_vars * shape[0] * shape[1] * 4 / 2**20
    print(
        f"(d) graph mode: {n_vars} float32 variables of {shape[0]}x{shape[1]} ({mib:.0f} MiB), "
        ".meta graphs, keep 5"
    )
    results = {"save": report("(d) save", interleaved(saves, reps))}
    # Alternate between the two newest checkpoints, so no restore reuses the last one's match.
    ours = [info.path for info in manager.checkpoints[-2:]]
    plain = list(saver.last_checkpoints[-2:])
    turn = iter(range(1_000_000))

    def plain_restore() -> None:
        with graph.as_default():
            saver.restore(session, plain[next(turn) % 2])

    restores: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: manager.restore(path=ours[next(turn) % 2]),
        "tf.compat.v1.train.Saver": plain_restore,
    }
    medians = interleaved(restores, reps)
    overhead = medians["ckptkit"] - medians["tf.compat.v1.train.Saver"]
    results["restore"] = report("(d) restore", medians)
    print(f"(d) restore: ckptkit's fixed cost over Saver.restore {overhead * 1e3:.1f} ms")
    manager.close()
    session.close()
    return results


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def peak_rss(every: float = 0.002) -> Iterator[list[int]]:
    """Samples this process's RSS while the block runs; yields [baseline, peak] (bytes)."""
    found = [_rss(), _rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            found[1] = max(found[1], _rss())
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found[1] = max(found[1], _rss())


def dense_model(width: int) -> tuple[object, object, Callable[[], None]]:
    """Four dense layers of `width` x `width`, SGD, and a compiled train step on one batch."""
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(width, use_bias=False) for _ in range(4)]
    model = keras.Sequential([keras.Input((width,)), *layers])
    optimizer = keras.optimizers.SGD(1e-6)
    batch = tf.random.normal((8, width))

    @tf.function
    def train_step() -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(batch) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    return model, optimizer, train_step


def variable_state(width: int) -> tuple[list[tf.Variable], Callable[[], None]]:
    """Four `width` x `width` float32 `tf.Variable`s and a compiled SGD step updating each.

    Plain variables, for TensorFlow's own async checkpoint: with a Keras 3 model its second
    async save fails (Keras's `_copy_trackable_to_cpu` creates a `tf.Variable` inside the
    `tf.function` that copies the state, TensorFlow 2.21 / Keras 3.15).
    """
    tf.random.set_seed(0)
    weights = [tf.Variable(tf.random.normal((width, width), stddev=width**-0.5)) for _ in range(4)]
    batch = tf.random.normal((8, width))

    @tf.function
    def train_step() -> None:
        with tf.GradientTape() as tape:
            out = batch
            for w in weights:
                out = tf.matmul(out, w)
            loss = tf.reduce_mean(out**2)
        for w, grad in zip(weights, tape.gradient(loss, weights), strict=True):
            w.assign_sub(1e-6 * grad)

    return weights, train_step


def run_loop(
    train_step: Callable[[], None],
    steps: int,
    every: int,
    save: Callable[[], object] | None,
    wait: Callable[[], object],
) -> None:
    """`steps` training steps, a save every `every` (none on the last), then `wait`.

    A job waits for its last save once per run, not once per K steps, so that wait is not part
    of the step rate; the save at the step before is still waited for here if it has not
    committed by the end.
    """
    for step in range(1, steps + 1):
        train_step()
        if save is not None and step % every == 0 and step < steps:
            save()
    wait()


def bench_async_against_tf(reps: int, root: str, width: int, steps: int, every: int) -> float:
    """(e) The loop with ckptkit's async saves against TensorFlow's own, on `tf.Variable`s."""
    weights, train_step = variable_state(width)
    train_step()
    ours = ckptkit.CheckpointManager(
        ckptkit.CheckpointConfig(
            directory=os.path.join(root, "e-vars-ckptkit"),
            retention=ckptkit.Retention(max_to_keep=2),
            async_save=True,
        ),
        weights=weights,
    )
    checkpoint = tf.train.Checkpoint(weights=weights)
    theirs = tf.train.CheckpointManager(checkpoint, os.path.join(root, "e-vars-tf"), max_to_keep=2)
    in_background = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)
    counter = iter(range(1, 10**6))
    loops: dict[str, Callable[[], object]] = {
        "ckptkit async": lambda: run_loop(
            train_step, steps, every, lambda: ours.save(next(counter)), ours.wait
        ),
        "TF async checkpoint": lambda: run_loop(
            train_step,
            steps,
            every,
            lambda: theirs.save(checkpoint_number=next(counter), options=in_background),
            checkpoint.sync,
        ),
        "no saves": lambda: run_loop(train_step, steps, every, None, lambda: None),
    }
    medians = interleaved(loops, min(reps, 3))
    ours.close()
    ratio = medians["ckptkit async"] / medians["TF async checkpoint"]
    print(
        f"(e) tf.Variable state of 4 x {width}x{width}, loop of {steps} steps, a save every "
        f"{every}: ckptkit async {steps / medians['ckptkit async']:6.2f} steps/s | TensorFlow's "
        f"async checkpoint {steps / medians['TF async checkpoint']:6.2f} steps/s | no saves "
        f"{steps / medians['no saves']:6.2f} steps/s (s/step ratio {ratio:.3f})",
        flush=True,
    )
    return ratio


def bench_async(reps: int, root: str, width: int, steps: int, every: int) -> dict[str, float]:
    """(e) Async saves of a dense model's state, which real training steps update."""
    model, optimizer, train_step = dense_model(width)
    size = sum(int(w.numpy().nbytes) for w in model.weights)
    train_step()
    config = ckptkit.CheckpointConfig(
        directory=os.path.join(root, "e-sync"), retention=ckptkit.Retention(max_to_keep=2)
    )
    sync = ckptkit.CheckpointManager(config, model=model, optimizer=optimizer)
    background = ckptkit.CheckpointManager(
        config.model_copy(update={"directory": os.path.join(root, "e-async"), "async_save": True}),
        model=model,
        optimizer=optimizer,
    )
    counter = iter(range(1, 10**6))
    print(f"(e) async: a dense model of 4 x {width}x{width} float32, {size / 2**30:.2f} GiB")

    blocked, committed, synced = [], [], []
    for _ in range(reps):
        synced.append(timed(lambda: sync.save(next(counter))))
        os.sync()
        start = time.perf_counter()
        background.save(next(counter))
        blocked.append(time.perf_counter() - start)
        background.wait()
        committed.append(time.perf_counter() - start)
    sync_save = statistics.median(synced)
    results = {
        "blocked": statistics.median(blocked) / sync_save,
        "commit": statistics.median(committed) / sync_save,
    }
    print(
        f"(e) sync save {sync_save * 1e3:8.1f} ms | async: in save() "
        f"{statistics.median(blocked) * 1e3:8.1f} ms (ratio {results['blocked']:.4f}), "
        f"until committed {statistics.median(committed) * 1e3:8.1f} ms "
        f"(ratio {results['commit']:.3f})",
        flush=True,
    )

    def loop(save: Callable[[int], object] | None) -> None:
        run_loop(
            train_step,
            steps,
            every,
            None if save is None else lambda: save(next(counter)),
            background.wait,
        )

    loops: dict[str, Callable[[], object]] = {
        "no saves": lambda: loop(None),
        "async": lambda: loop(background.save),
        "sync": lambda: loop(sync.save),
    }
    medians = interleaved(loops, min(reps, 3))  # a loop is ~25 s at full size
    for kind in ("async", "sync"):
        results[f"loop_{kind}"] = medians[kind] / medians["no saves"]
    print(
        f"(e) loop of {steps} steps, a save every {every} (not on the last): no saves "
        f"{steps / medians['no saves']:6.2f} steps/s | async {steps / medians['async']:6.2f} "
        f"steps/s ({1 / results['loop_async']:.3f} of no saves) | sync "
        f"{steps / medians['sync']:6.2f} steps/s ({1 / results['loop_sync']:.3f})",
        flush=True,
    )

    sync.close()
    background.close()
    # In fresh processes: TensorFlow's CPU allocator keeps what it grew to, so only a process
    # that has not saved yet shows what a save in flight adds.
    peaks = {kind: _peak_in_subprocess(width, every, kind, root) for kind in ("none", "async")}
    results["rss"] = (peaks["async"] - peaks["none"]) / size
    print(
        f"(e) peak RSS of a fresh process over {every} steps: {peaks['none'] / 2**30:.2f} GiB "
        f"without a save, {results['rss']:+.2f} x the state's size with an async save in flight",
        flush=True,
    )
    return results


def _peak_in_subprocess(width: int, every: int, kind: str, root: str) -> int:
    command = [sys.executable, __file__, "--rss-probe", kind, "--width", str(width)]
    command += ["--every", str(every), "--dir", os.path.join(root, f"e-rss-{kind}")]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def rss_probe(kind: str, width: int, every: int, directory: str) -> None:
    """Prints the peak RSS over `every` train steps after one, with an async save or none."""
    model, optimizer, train_step = dense_model(width)
    train_step()
    manager = ckptkit.CheckpointManager(
        ckptkit.CheckpointConfig(directory=directory, async_save=True),
        model=model,
        optimizer=optimizer,
    )
    with peak_rss() as rss:
        if kind == "async":
            manager.save(1)
        for _ in range(every):
            train_step()  # updates every variable: a snapshot's buffers get copied
        manager.close()
    print(rss[1])


def bench_a_to_d(
    reps: int, root: str, large_elems: int, n_small: int, quick: bool
) -> dict[str, float]:
    """Cases (a) to (d); returns their ratios by goal name."""
    large = {f"w{i}": tf.Variable(tf.random.normal((large_elems,))) for i in range(4)}
    print(f"(a) large: 4 float32 variables, {4 * large_elems * 4 / 2**30:.2f} GiB")
    ratios = {f"a_{k}": v for k, v in bench_case("a", dict(large), reps, root).items()}
    del large

    small = {"vars": [tf.Variable(tf.fill((16,), float(i))) for i in range(n_small)]}
    print(f"(b) many: {n_small} float32 variables of 16 elements")
    ratios |= {f"b_{k}": v for k, v in bench_case("b", dict(small), reps, root).items()}

    path = ckptkit.list_checkpoints(os.path.join(root, "b-ckptkit"))[-1].path
    # Like with like: ckptkit.inspect gives dtypes too; TF's names and shapes alone beside it.
    inspects: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: ckptkit.inspect(path),
        "TF list+dtypes": lambda: (
            tf.train.list_variables(path),
            tf.train.load_checkpoint(path).get_variable_to_dtype_map(),
        ),
        "tf.train.list_variables": lambda: tf.train.list_variables(path),
    }
    ratios["b_inspect"] = report("(b) inspect", interleaved(inspects, max(reps, 9)))
    ratios["c_fit"] = bench_fit(reps, root, batches=400 if quick else 2000)
    # 2,000 variables of 32 KiB (64 MiB): a fixed per-restore cost is not the whole time.
    graph = bench_graph(reps, root, n_vars=200 if quick else 2000, shape=(64, 128))
    return ratios | {f"d_{k}": v for k, v in graph.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions per measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        choices=["a", "e", "f", "g", "h", "i"],
        help="run one case only (a: cases (a) to (d), which share their state)",
    )
    parser.add_argument("--rss-probe", choices=["none", "async"], help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--every", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_probe:
        rss_probe(args.rss_probe, args.width, args.every, args.dir)
        return
    large_elems = 2**22 if args.quick else 2**26  # per variable; 4 variables: 64 MiB or 1 GiB
    n_small = 1000 if args.quick else 10_000
    print(f"TensorFlow {tf.__version__}, ckptkit {ckptkit.__version__}, {args.reps} reps, medians")
    root = tempfile.mkdtemp(prefix="ckptkit-bench-")
    width = 2048 if args.quick else 8192  # 4 layers: 64 MiB or 1 GiB
    steps, every = (40, 10) if args.quick else (60, 20)
    ratios: dict[str, float] = {}
    try:
        if args.only in (None, "a"):
            ratios |= bench_a_to_d(args.reps, root, large_elems, n_small, args.quick)
        if args.only in (None, "e"):
            async_ratios = bench_async(args.reps, root, width, steps, every)
            ratios |= {f"e_{k}": v for k, v in async_ratios.items()}
            ratios["e_loop_vs_tf"] = bench_async_against_tf(args.reps, root, width, steps, every)
        if args.only in (None, "f"):
            ratios |= bench_cluster(args.reps, root, mib=16 if args.quick else 256)
        if args.only in (None, "g"):
            ratios |= bench_remote(args.reps, root, large_elems)
        if args.only in (None, "h"):
            ratios |= bench_average(min(args.reps, 3), root, large_elems)
            ratios |= bench_resume(max(args.reps, 5), root, large_elems)
        if args.only in (None, "i"):
            ratios |= bench_reading(args.reps, root, large_elems, n_small)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nratio goals (ckptkit over the first baseline of each line):")
    for key, goal in GOALS.items():
        if key not in ratios:
            continue
        verdict = "ok" if ratios[key] <= goal else "OVER"
        print(f"  {key:<10} {ratios[key]:.3f}  goal <= {goal}  {verdict}")


if __name__ == "__main__":
    main()
