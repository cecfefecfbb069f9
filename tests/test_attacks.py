"""Attacks on ckptkit from files it did not write and from other users of the machine.

Each test reproduces one finding of a hostile review (crafted files written by the test, a
child process with an address-space limit where memory is the point, a second uid where one
exists) and asserts what ckptkit does now: a typed error naming the file, nothing deleted,
nothing read outside, memory bounded by the files' sizes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable

import h5py
import numpy as np
import pytest
import tensorflow as tf
from forked import ForkedWorker
from helpers import equal_to, fill, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleEntryProto
from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph
from workers import index_table

import ckptkit
from ckptkit import cli
from ckptkit.reading.inspection import load_graph
from ckptkit.storage import fs, layout
from ckptkit.storage.lease import Lease

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
GRAPH_KEY = OBJECT_GRAPH_KEY.encode()


def plain_tf_run(directory: str) -> None:
    """ckpt-1 and ckpt-2 written by tf.train.CheckpointManager: no ckptkit manifest to check."""
    v = tf.Variable(tf.zeros((4,)))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=v), directory, max_to_keep=None)
    for step in (1, 2):
        v.assign(tf.fill((4,), float(step)))
        manager.save(checkpoint_number=step)


def edit_entry(index: str, key: bytes, **changes: object) -> None:
    """Rewrites one entry of `index` (with valid block checksums): `shape` and proto fields."""
    with open(index, "rb") as f:
        entries = index_table.entries(f.read())
    for i, (k, value) in enumerate(entries):
        if k == key:
            entry = BundleEntryProto.FromString(value)
            shape = changes.pop("shape", None)
            if shape is not None:
                del entry.shape.dim[:]
                for size in shape:  # type: ignore[attr-defined]
                    entry.shape.dim.add().size = size
            for name, new in changes.items():
                setattr(entry, name, new)
            entries[i] = (k, entry.SerializeToString())
    with open(index, "wb") as f:
        f.write(index_table.table(entries))


# --- Index entries claiming more values than their bytes (SIGSEGV in TensorFlow) ------------

BOMBS = {
    # TensorFlow allocates 24 bytes a string before comparing sizes: 48 GB, then SIGSEGV.
    "two billion strings": (GRAPH_KEY, {"shape": [2_000_000_000]}),
    # The claimed bytes fit the values, but lie far past the end of the data file.
    "two billion strings in two billion bytes": (
        GRAPH_KEY,
        {"shape": [2_000_000_000], "size": 2_000_000_000},
    ),
    "a float vector of a billion values": (
        b"v/.ATTRIBUTES/VARIABLE_VALUE",
        {"shape": [1_000_000_000]},
    ),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_an_index_claiming_more_values_than_bytes_is_damage_and_restore_walks_back(
    tmp_path, capsys, bomb
) -> None:
    directory = str(tmp_path / "run")
    plain_tf_run(directory)
    newest = os.path.join(directory, "ckpt-2")
    key, changes = BOMBS[bomb]
    edit_entry(newest + ".index", key, **dict(changes))
    assert os.path.getsize(newest + ".index") < 1000

    report = ckptkit.verify(newest)  # the cheap check sees it
    assert not report.ok
    assert "values" in str(report.checkpoints[0].problems[0]) or "ends at byte" in str(
        report.checkpoints[0].problems[0]
    )
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"ckpt-2\.index.*claims|ends at byte"):
        ckptkit.inspect(newest)
    assert cli.main(["verify", newest, "--full"]) == cli.EXIT_DAMAGED
    assert cli.main(["inspect", newest]) == cli.EXIT_USAGE
    assert "ckpt-2.index" in capsys.readouterr().err

    v = tf.Variable(tf.zeros((4,)))
    cfg = ckptkit.CheckpointConfig(directory=directory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ckptkit.CheckpointManager(cfg, v=v).restore_or_initialize()
    assert result.step == 1
    assert [path for path, _ in result.skipped] == [newest]
    assert [float(x) for x in v.numpy()] == [1.0] * 4
    assert any(issubclass(w.category, ckptkit.CheckpointSkippedWarning) for w in caught)


@pytest.fixture(scope="module")
def plain_pristine(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("plain") / "run")
    plain_tf_run(directory)
    return directory


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        [GRAPH_KEY, b"v/.ATTRIBUTES/VARIABLE_VALUE", b"save_counter/.ATTRIBUTES/VARIABLE_VALUE"]
    ),
    shape=st.lists(st.sampled_from([0, 1, 3, 4, 1000, 2**31, 2**40]), max_size=3),
    size=st.one_of(st.none(), st.sampled_from([0, 1, 16, 2**31, 2**62])),
    offset=st.one_of(st.none(), st.sampled_from([0, 8, 200, 2**40])),
)
def test_fuzzed_claimed_sizes_give_typed_errors_only(
    plain_pristine, tmp_path, key, shape, size, offset
) -> None:
    directory = tempfile.mkdtemp(dir=tmp_path)
    shutil.copytree(plain_pristine, directory, dirs_exist_ok=True)
    newest = os.path.join(directory, "ckpt-2")
    changes: dict[str, object] = {"shape": shape}
    if size is not None:
        changes["size"] = size
    if offset is not None:
        changes["offset"] = offset
    edit_entry(newest + ".index", key, **changes)
    cfg = ckptkit.CheckpointConfig(directory=directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for action in (
            lambda: ckptkit.inspect(newest),
            lambda: ckptkit.verify(newest, full=True),
            lambda: ckptkit.read_tensor(newest, key.decode()),
            lambda: ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,)))).restore(),
        ):
            with contextlib.suppress(ckptkit.CkptkitError):
                action()


# --- Object graphs: references out of range, routes without end, keys thousands deep -------


def write_bundle(prefix: str, graph: TrackableObjectGraph, value: tf.Tensor) -> None:
    """A checkpoint of one variable `v` with the object graph `graph`, however crafted."""
    keys = [OBJECT_GRAPH_KEY, "v/.ATTRIBUTES/VARIABLE_VALUE"]
    tensors = [tf.constant(graph.SerializeToString()), value]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys, shape_and_slices=["", ""], tensors=tensors)


def graph_of(prefix: str) -> TrackableObjectGraph:
    graph = TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(prefix).get_tensor(OBJECT_GRAPH_KEY))
    return graph


def test_an_object_graph_reference_out_of_range_is_damage_and_restore_walks_back(
    tmp_path,
) -> None:
    directory = str(tmp_path / "run")
    plain_tf_run(directory)
    newest = os.path.join(directory, "ckpt-2")
    graph = graph_of(newest)
    graph.nodes[0].children[0].node_id = 999
    write_bundle(newest, graph, tf.fill((4,), 2.0))

    assert not ckptkit.verify(newest).ok  # the cheap check reads the graph too
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"refers to node 999"):
        load_graph(newest)
    for verify in ("cheap", "off"):
        v = tf.Variable(tf.zeros((4,)))
        cfg = ckptkit.CheckpointConfig(
            directory=directory, restore=ckptkit.RestorePolicy(verify=verify)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ckptkit.CheckpointSkippedWarning)
            assert ckptkit.CheckpointManager(cfg, v=v).restore().step == 1
        assert [float(x) for x in v.numpy()] == [1.0] * 4


def test_inspect_bounds_the_routes_and_depth_it_builds_from_a_crafted_graph(tmp_path) -> None:
    # 30,000 nodes, each with two children that are both the next node: 2**30000 routes to
    # the last one, in a 500 KB graph; and a value key 8,000 levels deep.
    graph = TrackableObjectGraph()
    count = 30_000
    for i in range(count):
        node = graph.nodes.add()
        if i + 1 < count:
            for name in ("a", "b"):
                child = node.children.add()
                child.node_id, child.local_name = i + 1, name
    deep = "/".join(["d"] * 8000)
    attribute = graph.nodes[-1].attributes.add()
    attribute.name, attribute.checkpoint_key = (
        "VARIABLE_VALUE",
        f"{deep}/.ATTRIBUTES/VARIABLE_VALUE",
    )
    prefix = str(tmp_path / "bomb")
    write_bundle(prefix, graph, tf.zeros((4,)))
    assert os.path.getsize(prefix + ".data-00000-of-00001") < 700_000

    for args in (["inspect", prefix], ["inspect", prefix, "--json"]):
        worker = ForkedWorker("bounded_cli.py", "512", *args)
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr[-2000:]
        outcome = json.loads(stdout.strip().splitlines()[-1])
        assert outcome["status"] == 0, stderr[-2000:]
        assert outcome["out_chars"] < 64 << 20


# --- Another user on the machine ------------------------------------------------------------

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to a second uid needs root (CI runs as root)"
)


@pytest.fixture
def shared_dir():
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    top = tempfile.mkdtemp()
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top)


def test_the_lock_file_is_private_whatever_the_umask(shared_dir) -> None:
    cfg = ckptkit.CheckpointConfig(directory=os.path.join(shared_dir, "run"))
    old = os.umask(0o000)
    try:
        with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as mgr:
            mgr.save(1)
            lock = os.path.join(cfg.directory, ".ckptkit.lock")
            assert os.stat(lock).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


@needs_root
def test_a_user_who_can_only_read_the_lock_file_cannot_stop_the_writer(shared_dir) -> None:
    directory = os.path.join(shared_dir, "run")
    cfg = ckptkit.CheckpointConfig(directory=directory)
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as mgr:
        mgr.save(1)
    os.chmod(directory, 0o755)
    lock = os.path.join(directory, ".ckptkit.lock")
    stdout, _ = ForkedWorker("other_user.py", lock).communicate(timeout=60)
    assert stdout == f"open: errno {errno.EACCES}\n"  # 0600: not even readable
    os.chmod(lock, 0o644)  # as an older ckptkit (or a umask) left it: readable by all
    attacker = ForkedWorker("other_user.py", lock)
    try:
        assert attacker.stdout.readline() == "flock: held\n"  # what stopped the owner before
        assert attacker.stdout.readline() == f"write lock: errno {errno.EBADF}\n"
        assert attacker.stdout.readline() == "holding\n"
        v = tf.Variable(0.0)
        with ckptkit.CheckpointManager(cfg, v=v) as mgr:
            assert mgr.restore_or_initialize().step == 1
            mgr.save(2)
        assert os.stat(lock).st_mode & 0o777 == 0o600  # made private again
    finally:
        attacker.kill()
        attacker.communicate(timeout=60)


# --- A shared cache root ---------------------------------------------------------------------


def staged_run(directory: str, cache: str) -> None:
    """ckpt-1 and ckpt-2 of `state()` saved to the remote `directory` through `cache`."""
    cfg = ckptkit.CheckpointConfig(directory=directory, storage=ckptkit.Storage(cache_dir=cache))
    variables = state()
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        for step in (1, 2):
            fill(variables, step)
            mgr.save(step)


@pytest.mark.parametrize("owner", ["me, writable by all", "another user"])
def test_a_cache_folder_others_can_write_is_not_read(s3_dir, shared_dir, owner) -> None:
    if owner == "another user" and os.geteuid() != 0:
        pytest.skip("handing a folder to a second uid needs root (CI runs as root)")
    mine = os.path.join(shared_dir, "mine")
    staged_run(s3_dir, mine)
    # Another user got to the shared cache first: a copy of the same checkpoint, manifest and
    # sizes as the remote ones, its values replaced.
    planted = os.path.join(shared_dir, "planted")
    shutil.copytree(mine, planted)
    data = os.path.join(planted, "ckpt-2.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.write(b"\xff" * os.path.getsize(data))
    if owner == "another user":
        for path in (planted, *(os.path.join(planted, n) for n in os.listdir(planted))):
            os.chown(path, NOBODY, NOBODY)
        os.chmod(planted, 0o700)
    else:
        os.chmod(planted, 0o777)
    before = {n: os.stat(os.path.join(planted, n)).st_mtime_ns for n in os.listdir(planted)}

    cfg = ckptkit.CheckpointConfig(directory=s3_dir, storage=ckptkit.Storage(cache_dir=planted))
    variables = state()
    with pytest.warns(
        UserWarning, match=r"local cache .*planted.* is not used: (other users|it belongs)"
    ):
        result = ckptkit.CheckpointManager(cfg, **variables).restore()
    assert result.step == 2
    assert not result.skipped
    assert equal_to(variables, 2)  # the remote's values, not the planted ones
    assert {n: os.stat(os.path.join(planted, n)).st_mtime_ns for n in os.listdir(planted)} == before


def test_a_cache_folder_is_created_private(s3_dir, shared_dir) -> None:
    old = os.umask(0o000)
    try:
        staged_run(s3_dir, os.path.join(shared_dir, "cache"))
    finally:
        os.umask(old)
    assert os.stat(os.path.join(shared_dir, "cache")).st_mode & 0o777 == 0o700


# --- Keras files that read other files, hang, or claim gigabytes ----------------------------

KEY = "layers/dense/vars/0"


def weights_file(path: str, make: Callable[[h5py.File], None] | None = None) -> str:
    """A .weights.h5 as Keras lays one out; `make` adds or replaces `KEY` (crafted)."""
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars")
        if make is None:
            f[KEY] = np.arange(6, dtype="float32").reshape(2, 3)
        else:
            make(f)
    return path


def crafted(kind: str, tmp: str) -> tuple[str, str]:
    """The file of attack `kind`, and the text no output may contain (a secret read outside)."""
    secret = os.path.join(tmp, "id_rsa")
    with open(secret, "wb") as f:
        f.write(b"PRIVATE-KEY-" * 8)
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    path = os.path.join(tmp, f"{kind.replace(' ', '_')}.weights.h5")
    if kind == "external dataset":
        weights_file(path, lambda f: f.create_dataset(KEY, (96,), "u1", external=[(secret, 0, 96)]))
    elif kind == "external dataset on a FIFO":
        weights_file(path, lambda f: f.create_dataset(KEY, (96,), "u1", external=[(fifo, 0, 96)]))
    elif kind == "virtual dataset on a FIFO":
        layout = h5py.VirtualLayout(shape=(96,), dtype="u1")
        layout[:] = h5py.VirtualSource(fifo, "data", shape=(96,))
        weights_file(path, lambda f: f.create_virtual_dataset(KEY, layout))
    elif kind == "soft link":
        weights_file(path, lambda f: f.__setitem__(KEY, h5py.SoftLink("/elsewhere")))
    elif kind == "external link":
        weights_file(path, lambda f: f.__setitem__(KEY, h5py.ExternalLink(secret, "/x")))
    elif kind == "shape bomb":  # 3 GiB declared, nothing stored: a 4 KB file
        weights_file(path, lambda f: f.create_dataset(KEY, (805_306_368,), "f4", chunks=(4096,)))
    else:  # a .keras whose weights member inflates 1000-fold
        path = os.path.join(tmp, "bomb.keras")
        with (
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open("model.weights.h5", "w") as member,
        ):
            for _ in range(384):  # more than the child may allocate
                member.write(bytes(1 << 20))
    return path, "PRIVATE-KEY"


KERAS_ATTACKS = [
    "external dataset",
    "external dataset on a FIFO",
    "virtual dataset on a FIFO",
    "soft link",
    "external link",
    "shape bomb",
    "zip bomb",
]


@pytest.mark.parametrize("kind", KERAS_ATTACKS)
def test_crafted_keras_files_are_refused_without_reading_outside(tmp_path, kind) -> None:
    path, secret = crafted(kind, str(tmp_path))
    assert os.path.getsize(path) < 1 << 20
    good = weights_file(str(tmp_path / "good.weights.h5"))
    for args in (
        ["inspect", path, "--tensor", KEY, "--json"],
        ["inspect", path, "--json"],
        ["diff", path, good],
    ):
        # A child with 256 MiB more address space than it starts with: a file that makes a
        # command allocate what it claims, or block on a FIFO, fails here instead.
        worker = ForkedWorker("bounded_cli.py", "256", *args)
        stdout, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr[-2000:]
        outcome = json.loads(stdout.strip().splitlines()[-1])
        assert outcome["status"] == cli.EXIT_USAGE, (args, stderr[-2000:])
        assert secret not in stdout
        assert secret not in stderr
        message = stderr.strip().splitlines()[-1]
        assert os.path.basename(path) in message
        if kind != "zip bomb":
            assert KEY in message, message
        if kind.endswith("bomb"):
            assert "not a file Keras wrote" in message, message  # refused, not read out of memory


# --- Smaller ones: a long state file, a lease edited to never expire ------------------------


def test_a_state_file_of_80000_entries_reads_in_one_pass(tmp_path) -> None:
    # 80,000 entries, each listed twice: reading was quadratic (121 s for `ckptkit ls`).
    names = [f"ckpt-{i}" for i in range(80_000)]
    lines = [f'all_model_checkpoint_paths: "{n}"' for n in names * 2]
    (tmp_path / "checkpoint").write_text(
        f'model_checkpoint_path: "{names[-1]}"\n' + "\n".join(lines)
    )
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(layout.read_state(str(tmp_path))))
    reader.start()
    reader.join(60)  # a bound, not a timing: one pass takes about a second
    assert not reader.is_alive()
    state = found[0]
    assert isinstance(state, layout.DirectoryState)
    assert [os.path.basename(p) for p, _ in state.entries] == names


@pytest.mark.parametrize("expires", ["Infinity", "NaN", "1e300", '"soon"'])
def test_a_lease_edited_to_never_expire_expires_by_its_age(s3_dir, expires) -> None:
    path = f"{s3_dir}/.ckptkit.lease"
    fs.makedirs(s3_dir)
    record = f'{{"token": "x", "pid": 1, "host": "h", "expires": {expires}}}'
    fs.write_atomic(path, record.encode())
    now = time.time()
    with pytest.raises(ckptkit.DirectoryLockedError, match="holder unknown"):
        Lease(s3_dir, 60.0, clock=lambda: now).acquire()
    later = Lease(s3_dir, 60.0, clock=lambda: now + 61)  # its age is past one lease duration
    later.acquire()
    assert later.held
    later.release()


def test_key_map_rules_are_not_run_on_a_megabyte_key(tmp_path) -> None:
    # A name-based checkpoint with a 1 MB key: "(.*)/(.*)/kernel" backtracked for 25 minutes.
    prefix = str(tmp_path / "src" / "model.ckpt-1")
    huge = "a/" * 500_000 + "x"
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=["dense/kernel", huge],
        shape_and_slices=["", ""],
        tensors=[tf.zeros((2, 2)), tf.zeros((1,))],
    )
    rules = [(r"(.*)/(.*)/kernel", r"\1/\2/w")]
    outcome: list[BaseException] = []

    def convert() -> None:
        try:
            ckptkit.convert(prefix, str(tmp_path / "dst"), key_map=rules)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=convert, daemon=True)
    worker.start()
    worker.join(60)  # a bound, not a timing: the refusal is immediate
    assert not worker.is_alive()
    assert isinstance(outcome[0], ckptkit.KeyMapError)
    assert "1000001 characters" in str(outcome[0])
    assert not os.path.exists(tmp_path / "dst" / "checkpoint")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 11), st.integers(-3, 15), st.sampled_from(["a", "b", "v"])),
        max_size=40,
    ),
    slots=st.lists(st.tuples(st.integers(0, 11), st.integers(-3, 15)), max_size=3),
    depth=st.integers(1, 300),
)
def test_fuzzed_object_graphs_give_typed_errors_only(tmp_path, capsys, edges, slots, depth) -> None:
    # Twelve nodes; children, slot references and a value key of any depth, ids in range or not.
    graph = TrackableObjectGraph()
    nodes = [graph.nodes.add() for _ in range(12)]
    for parent, child, name in edges:
        ref = nodes[parent].children.add()
        ref.node_id, ref.local_name = child, name
    for original, slot in slots:
        ref = nodes[0].slot_variables.add()
        ref.original_variable_node_id, ref.slot_variable_node_id = original, slot
    attribute = nodes[-1].attributes.add()
    attribute.name = "VARIABLE_VALUE"
    attribute.checkpoint_key = "/".join(["d"] * depth) + "/.ATTRIBUTES/VARIABLE_VALUE"
    prefix = os.path.join(tempfile.mkdtemp(dir=tmp_path), "ckpt-1")
    write_bundle(prefix, graph, tf.zeros((4,)))
    cfg = ckptkit.CheckpointConfig(directory=os.path.dirname(prefix))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for action in (
            lambda: load_graph(prefix),
            lambda: ckptkit.verify(prefix, full=True),
            lambda: cli.main(["inspect", prefix]),
            lambda: ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,)))).restore(),
        ):
            with contextlib.suppress(ckptkit.CkptkitError):
                action()
    capsys.readouterr()
