"""Feeds ckptkit crafted ``.index``, manifest and data files; every outcome must be typed.

Usage: fuzz_files.py DIR FIRST COUNT. Case N damages the newest of two checkpoints with
`random.Random(N)`, then runs inspect, read_tensor, diff, verify --full, ls and a restore. Each
must succeed or raise a `CkptkitError`. Prints "case N KIND" before each case, so that when
TensorFlow aborts the process (SIGABRT) the caller knows which case did it, and a JSON summary
at the end; exits 1 if any case raised anything else. Run by tests/test_fuzz.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import index_table
import tensorflow as tf
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleEntryProto, BundleHeaderProto

import ckptkit


def variables() -> dict[str, tf.Variable]:
    return {
        "a": tf.Variable(tf.reshape(tf.range(16.0), (4, 4))),
        "b": tf.Variable([b"x", b"yy"]),
        "c": tf.Variable(tf.constant([1, 2, 3], tf.int64)),
    }


def make_pristine(directory: str) -> None:
    cfg = ckptkit.CheckpointConfig(directory=directory)
    with ckptkit.CheckpointManager(cfg, **variables()) as mgr:
        mgr.save(1)
        mgr.save(2, metrics={"loss": 0.5})


def mutate_entry(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One entry of the index changed in a way TensorFlow's writer never produces."""
    entries = [list(e) for e in index_table.entries(data)]
    i = rng.randrange(1, len(entries))
    kind = rng.choice(["bytes", "cut", "random", "dtype", "shape", "field", "slice", "header"])
    if kind == "bytes":
        value = bytearray(entries[i][1])
        for _ in range(rng.randint(1, 4)):
            value[rng.randrange(len(value))] = rng.randrange(256)
        entries[i][1] = bytes(value)
    elif kind == "cut":
        entries[i][1] = entries[i][1][: rng.randrange(len(entries[i][1]))]
    elif kind == "random":
        entries[i][1] = rng.randbytes(rng.randint(0, 40))
    elif kind == "header":
        header = BundleHeaderProto.FromString(entries[0][1])
        header.num_shards = rng.choice([0, -1, 2, 99_999, 100_000, 2**31 - 1])
        if rng.random() < 0.3:
            header.version.producer = rng.choice([0, 2, 1000])
        entries[0][1] = header.SerializeToString()
    else:
        entry = BundleEntryProto.FromString(entries[i][1])
        if kind == "dtype":
            entry.dtype = rng.choice([0, rng.randint(1, 30), rng.randint(100, 130), 2**31 - 1])
        elif kind == "shape":
            dims = entry.shape.dim
            choice = rng.randrange(4)
            if choice == 0:
                entry.shape.unknown_rank = True
            elif choice == 1:
                dims.add().size = rng.choice([-1, -5, -(2**40)])
            elif choice == 2:
                for _ in range(rng.randint(1, 300)):
                    dims.add().size = rng.choice([0, 1, 2, 2**31])
            else:
                for dim in dims:
                    dim.size = rng.choice([2**40, 2**62, 7, 0])
        elif kind == "field":
            name = rng.choice(["shard_id", "offset", "size", "crc32c"])
            value = rng.choice([-1, 1, 2**31 - 1, 10**6, 0])
            setattr(entry, name, value % 2**32 if name == "crc32c" else value)
        else:
            piece = entry.slices.add()
            for _ in range(rng.randint(0, 3)):
                extent = piece.extent.add()
                extent.start = rng.choice([0, -1, 5, 2**40])
                if rng.random() < 0.7:
                    extent.length = rng.choice([0, 1, -3, 2**40])
        entries[i][1] = entry.SerializeToString()
    return f"index-{kind}", index_table.table([(k, v) for k, v in entries])


def mutate_index(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    choice = rng.random()
    if choice < 0.6:
        return mutate_entry(data, rng)
    if choice < 0.85:  # damage the table's structure, with checksums TensorFlow accepts
        spans = index_table.blocks(data)
        offset, size = rng.choice(spans)
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[offset + rng.randrange(size)] = rng.randrange(256)
        if rng.random() < 0.1:
            out[offset + size] = rng.choice([1, 2, 255])  # block type: compressed, unknown
        return "index-block", index_table.fix_checksums(bytes(out), spans)
    if choice < 0.95:
        return "index-cut", data[: rng.randrange(len(data))]
    return "index-garbage", rng.randbytes(rng.randint(0, 600))


def mutate_manifest(text: bytes, rng: random.Random) -> tuple[str, bytes]:
    if rng.random() < 0.4:
        out = bytearray(text)
        for _ in range(rng.randint(1, 6)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return "manifest-bytes", bytes(out)
    body = json.loads(text)
    body.pop("checksum")
    field = rng.choice(["files", "size", "step", "checkpoint", "metrics", "format", "nested"])
    name = rng.choice(sorted(body["files"]))
    if field == "files":
        body["files"][rng.choice(["../x", "/etc/passwd", "", "ckpt-2.index\x00", "a" * 300])] = {
            "size": 1
        }
    elif field == "size":
        body["files"][name]["size"] = rng.choice([-1, 0, 10**15, "1", None, 1.5])
    elif field == "step":
        body["step"] = rng.choice([-1, "2", None, 2**70, 3])
    elif field == "checkpoint":
        body["checkpoint"] = rng.choice(["ckpt-1", "../ckpt-2", "", 7])
    elif field == "metrics":
        body["metrics"] = rng.choice([{"loss": "x"}, [], {"loss": 1e400}, None])
    elif field == "format":
        body["format"] = rng.choice([None, 1, "ckptkit-manifest/99"])
    else:
        body["metadata"] = {"deep": [[[[[]]]]] * 50}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    body["checksum"] = zlib.crc32(payload)
    return f"manifest-{field}", json.dumps(body, allow_nan=True).encode()


def mutate_data(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return "data-bytes", bytes(out)


def actions(directory: str) -> list[tuple[str, Callable[[], object]]]:
    one, two = os.path.join(directory, "ckpt-1"), os.path.join(directory, "ckpt-2")
    cfg = ckptkit.CheckpointConfig(directory=directory)
    found = [
        ("inspect", lambda: ckptkit.inspect(two)),
        ("load_graph", lambda: ckptkit.reading.inspection.load_graph(two)),
        ("diff", lambda: ckptkit.diff(one, two)),
        ("verify", lambda: ckptkit.verify(directory, full=True)),
        ("ls", lambda: ckptkit.list_checkpoints(directory)),
        ("restore", lambda: ckptkit.CheckpointManager(cfg, **variables()).restore_or_initialize()),
    ]
    for key in ("a", "b", "c", "_CHECKPOINTABLE_OBJECT_GRAPH"):
        found.append((f"read {key}", lambda key=key: ckptkit.read_tensor(two, key)))
    return found


def main() -> None:
    root, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pristine, work = os.path.join(root, "pristine"), os.path.join(root, "work")
    if not os.path.isdir(pristine):
        make_pristine(pristine)
    outcomes: Counter[str] = Counter()
    untyped: list[str] = []
    for n in range(first, first + count):
        rng = random.Random(n)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        target = rng.choice(["ckpt-2.index"] * 6 + ["ckpt-2.manifest.json"] * 3 + ["data"])
        if target == "data":
            target = "ckpt-2.data-00000-of-00001"
        path = os.path.join(work, target)
        with open(path, "rb") as f:
            original = f.read()
        mutate = {"i": mutate_index, "m": mutate_manifest, "d": mutate_data}[target[7]]
        kind, damaged = mutate(original, rng)
        with open(path, "wb") as f:
            f.write(damaged)
        print(f"case {n} {kind}", flush=True)
        for name, action in actions(work):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skipped checkpoints warn; that is expected
                try:
                    action()
                    outcomes["ok"] += 1
                except ckptkit.CkptkitError:
                    outcomes["typed error"] += 1
                except Exception as e:
                    outcomes["untyped"] += 1
                    untyped.append(f"case {n} {kind} {name}: {type(e).__name__}: {e}"[:300])
    with contextlib.suppress(OSError):
        shutil.rmtree(work)
    print(json.dumps({"cases": count, "outcomes": outcomes, "untyped": untyped}), flush=True)
    sys.exit(1 if untyped else 0)


if __name__ == "__main__":
    main()
