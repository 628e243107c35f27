"""Tests of fastrnn.io at the level of files: what the readers open (regular files only,
never blocking), how much they read and allocate (bounded by the file), how files are
written (one atomic-write helper: modes, symlinks, unique temporary files, leftovers of
killed writers, concurrent ONNX exports), and which error each kind of bad path gets."""

import hashlib
import io
import json
import os
import pathlib
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastrnn
from fastrnn import ModelFileError, load, load_checkpoint, optim, save
from fastrnn import io as fio
from fastrnn.io import ArrayFileError, atomic_write, npz_names, read_npy, read_npz
from test_io import assert_same_model, header_of, members, npy, small_model, with_header, \
    write_zip

REPO = pathlib.Path(__file__).resolve().parent.parent


def traced(fn, *args, **kwargs):
    """``(result or exception, seconds, peak traced bytes)`` of ``fn(*args, **kwargs)``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except Exception as err:        # noqa: BLE001 -- returned for the test to look at
        out = err
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, seconds, peak


def listing(directory):
    return sorted(os.listdir(directory))


# ------------------------------------------------------------- only regular files are read


def _without_blocking(fn, path):
    """What ``fn(path)`` raised, failing the test if it blocks on the FIFO ``path``."""
    result = {}

    def run():
        try:
            fn(path)
        except BaseException as err:        # noqa: BLE001
            result["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        # a writer lets the blocked open() return (then it reads an empty stream)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        t.join(10)
        pytest.fail(f"{fn.__name__} blocked on a FIFO")
    return result.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("reader", ["load", "load_checkpoint", "read_npz", "read_npy",
                                    "npz_names", "open_regular_file"])
def test_a_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    fn = getattr(fio, reader)
    err = _without_blocking(fn, fifo)
    assert isinstance(err, ModelFileError if "load" in reader else ArrayFileError), err
    assert str(fifo) in str(err) and "FIFO" in str(err) and "not a regular file" in str(err)


def test_dev_zero_and_dev_null_are_refused_unread():
    """In a child process with 2 GB of address space, so that a reader that does read
    /dev/zero fails with MemoryError instead of exhausting the machine."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    script = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        import fastrnn
        from fastrnn import io
        for name in ("load", "load_checkpoint", "read_npz", "read_npy", "npz_names"):
            fn = getattr(io, name)
            for path in ("/dev/zero", "/dev/null"):
                try:
                    fn(path)
                except ValueError as err:
                    assert "character device, not a regular file" in str(err), err
                    assert path in str(err), err
                    assert isinstance(err, (fastrnn.ModelFileError, io.ArrayFileError))
                else:
                    sys.exit(f"{name}({path}) returned")
        print("refused")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "refused"


def test_a_directory_missing_file_and_wrong_types(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    for fn in (load, load_checkpoint, read_npz, read_npy, npz_names):
        with pytest.raises(IsADirectoryError, match="dir.npz"):
            fn(tmp_path / "dir.npz")
        for missing in (tmp_path / "absent.npz", str(tmp_path / "absent.npz"),
                        os.fsencode(tmp_path / "absent.npz")):
            with pytest.raises(FileNotFoundError, match="absent.npz"):
                fn(missing)
        for wrong in (3, None, 2.5, ["model.npz"]):
            with pytest.raises(TypeError, match=r"path must be a file path \(str, bytes or "
                                                r"os\.PathLike\), got "):
                fn(wrong)


# --------------------------------------------------------------------- paths of all kinds


class PathOf:
    """An os.PathLike whose __fspath__ gives ``value`` (a str or bytes)."""

    def __init__(self, value):
        self.value = value

    def __fspath__(self):
        return self.value


def path_forms(path):
    return {"str": str(path), "bytes": os.fsencode(path), "Path": pathlib.Path(path),
            "PathLike-str": PathOf(str(path)), "PathLike-bytes": PathOf(os.fsencode(path))}


@pytest.mark.parametrize("form", list(path_forms("x")))
def test_every_kind_of_path_saves_and_loads(tmp_path, form):
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = path_forms(tmp_path / "model.npz")[form]
    save(model, path, opt, extra={"epoch": 2})
    assert_same_model(load(path), model)
    loaded, opt2, extra = load_checkpoint(path)
    assert_same_model(loaded, model)
    assert type(opt2) is optim.SGD and extra == {"epoch": 2}
    assert listing(tmp_path) == ["model.npz"]


def test_save_takes_the_object_first_and_the_old_order_with_a_warning(tmp_path):
    model = small_model()
    for path in path_forms(tmp_path / "model.npz").values():
        save(model, path)
        assert_same_model(load(path), model)
        with pytest.warns(DeprecationWarning, match=r"fastrnn.save\(path, model\) is "
                                                    r"deprecated.*torch.save\(obj, f\)"):
            save(path, small_model(seed=1))         # the order of earlier releases
        assert_same_model(load(path), small_model(seed=1))
    with pytest.warns(DeprecationWarning) as record:
        save(tmp_path / "model.npz", model)
    assert record[0].filename == __file__           # the caller's line, not fastrnn's
    with pytest.raises(TypeError, match=r"obj must be a fastrnn model or module .* got int"):
        save(3, model)
    with pytest.raises(TypeError, match=r"obj must be a fastrnn model or module .* got str"):
        save("model", tmp_path / "model.npz")
    with pytest.raises(TypeError, match=r"path must be a file path .* got int"):
        save(model, 3)
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        save(model, tmp_path / "dir")
    with pytest.raises(FileNotFoundError):
        save(model, tmp_path / "missing" / "model.npz")
    assert listing(tmp_path) == ["dir", "model.npz"] and listing(tmp_path / "dir") == []


class _Custom(fastrnn.Module):
    def __init__(self):
        super().__init__()
        self._register("w", np.ones(3, np.float32))


def test_a_module_fastrnn_cannot_build_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="a _Custom cannot be saved: fastrnn.save takes a "
                                        "SequenceModel"):
        save(_Custom(), tmp_path / "m.npz")
    with pytest.raises(TypeError, match="a _Custom cannot be saved"):
        _Custom().save(tmp_path / "m.npz")
    assert listing(tmp_path) == []


# ----------------------------------------------------------- memory bounded by the file


def raw_zip(n_entries, announced=None, zip64=False):
    """A zip of nothing but a central directory of ``n_entries`` one-letter entries (what
    zipfile lists before anything else), announcing ``announced`` of them."""
    entry = struct.pack(zipfile.structCentralDir, zipfile.stringCentralDir, 20, 3, 20, 0,
                        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = entry * n_entries
    count = n_entries if announced is None else announced
    tail = b""
    if zip64:
        tail = struct.pack(zipfile.structEndArchive64, zipfile.stringEndArchive64, 44, 45,
                           45, 0, 0, count, count, len(directory), 0)
        tail += struct.pack(zipfile.structEndArchive64Locator,
                            zipfile.stringEndArchive64Locator, 0, len(directory), 1)
        count = 0xFFFF
    eocd = struct.pack(zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0,
                       min(count, 0xFFFF), min(count, 0xFFFF), len(directory), 0, 0)
    return directory + tail + eocd


@pytest.mark.parametrize("case", ["counted", "count-lies", "zip64"])
def test_a_zip_of_many_entries_is_refused_before_it_is_listed(tmp_path, case):
    """200,000 entries: listing them took zipfile 1.2 s and 60 MB before the header was
    looked for."""
    n = 200_000
    data = {"counted": raw_zip(n, announced=0xFFFF), "count-lies": raw_zip(n, announced=3),
            "zip64": raw_zip(n, zip64=True)}[case]
    path = tmp_path / "many.npz"
    path.write_bytes(data)
    for fn, error in ((load, ModelFileError), (load_checkpoint, ModelFileError),
                      (read_npz, ArrayFileError), (npz_names, ArrayFileError)):
        err, seconds, peak = traced(fn, path)
        assert seconds < 0.5 and peak < 2 << 20, (fn.__name__, seconds, peak)
        assert isinstance(err, error), err
        assert "fastrnn reads at most" in str(err)


def test_a_model_of_as_many_members_as_allowed_still_loads(tmp_path):
    """The member limit leaves room for deep models with their optimizer's state."""
    model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=2, output_size=2,
                                        num_layers=60, bidirectional=True, seed=0)
    opt = optim.Adam(model.parameters(), amsgrad=True)
    model.fit(np.ones((2, 3, 2)), np.zeros((2, 3), np.int64), epochs=1, optimizer=opt,
              progress=False)
    save(model, tmp_path / "deep.npz", opt)
    assert_same_model(load_checkpoint(tmp_path / "deep.npz")[0], model)


def test_save_refuses_a_model_the_reader_would_refuse(tmp_path, monkeypatch):
    monkeypatch.setattr(fio, "MAX_MEMBERS", 6)             # the model has 6 arrays
    with pytest.raises(ValueError, match="more than a fastrnn model file holds"):
        save(small_model(), tmp_path / "m.npz")
    assert listing(tmp_path) == []


def _as_bytes_of(path, model, rename=False):
    """Rewrite the model file ``path``: every parameter stored as uint8 zeros (1 byte a
    value instead of 4 or 8), under its own names or, with ``rename``, all in one array
    ``param/blob`` of as many values; digests valid, so only the shapes, dtypes and names
    can give it away."""
    contents = {k: v for k, v in members(path).items() if not k.startswith("param/")}
    header = header_of(path)
    header["arrays"] = {}
    params = [(name, np.zeros(p.data.shape, np.uint8)) for name, p in model.named_parameters()]
    if rename:
        params = [("blob", np.zeros(sum(a.size for _, a in params), np.uint8))]
    for name, a in params:
        contents[f"param/{name}.npy"] = npy(a)
        header["arrays"][f"param/{name}"] = {"shape": list(a.shape), "dtype": "|u1",
                                             "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    write_zip(path, with_header(contents, header))
    return path.stat().st_size


@pytest.mark.parametrize("rename", [False, True], ids=["same-names", "one-blob"])
def test_parameters_stored_in_fewer_bytes_are_refused_before_the_model_is_built(
        tmp_path, monkeypatch, rename):
    """A float64 architecture whose parameters the file holds as bytes: the same number
    of values, an eighth of the memory.  Loaded, the model would take 8 times the file (an
    8.4 MB file: 159 MB); refused from the header, it is never built."""
    model = fastrnn.SequenceModel.build("lstm", input_size=64, hidden_size=96, output_size=4,
                                        dtype=np.float64, seed=0)
    path = tmp_path / "bytes.npz"
    save(model, path)
    size = _as_bytes_of(path, model, rename)

    def never(cfg):
        raise AssertionError("the model was built")

    for kind in (fastrnn.SequenceModel, fastrnn.Seq2Seq):
        monkeypatch.setattr(kind, "from_config", classmethod(lambda cls, cfg: never(cfg)))
    for fn in (load, load_checkpoint):
        err, seconds, peak = traced(fn, path)
        assert isinstance(err, ModelFileError), err
        assert "parameters do not fit the architecture" in str(err)
        assert peak < 2 * size, (fn.__name__, peak, size)


def test_a_valid_model_loads_within_a_small_multiple_of_its_size(tmp_path):
    model = fastrnn.SequenceModel.build("lstm", input_size=64, hidden_size=256,
                                        output_size=8, num_layers=2, seed=0)
    opt = optim.Adam(model.parameters())
    model.fit(np.ones((2, 3, 64)), np.zeros((2, 3), np.int64), epochs=1, optimizer=opt,
              progress=False)
    path = tmp_path / "big.npz"
    save(model, path, opt)
    size = path.stat().st_size
    got, _, peak = traced(load_checkpoint, path)
    assert_same_model(got[0], model)
    # the arrays read (the file), the model's parameters and their gradients (2/3 of it)
    # and the optimizer's copies of its state (2/3): 2.3 times the file, no array twice
    assert peak < 2.6 * size, (peak, size)


def deflated_zeros(path, arrays, big_name, big_bytes):
    """``arrays`` stored, plus ``big_name``: ``big_bytes`` of zeros as a deflated .npy
    member (written in chunks: a file of some kB per MB)."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                               "shape": (big_bytes,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, a in arrays.items():
            zf.writestr(name + ".npy", npy(a), compress_type=zipfile.ZIP_STORED)
        with zf.open(big_name + ".npy", "w", force_zip64=True) as f:
            f.write(head.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(big_bytes >> 20):
                f.write(chunk)


def test_read_npz_reads_only_the_members_asked_for(tmp_path):
    """A small file holding an unused 64 MiB member (deflated zeros): asked for x and y,
    the reader never touches it; asked for everything, it refuses it from the sizes the
    zip declares, without reading it."""
    x, y = np.arange(12.0).reshape(3, 4), np.arange(3)
    path = tmp_path / "data.npz"
    deflated_zeros(path, {"x": x, "y": y}, "unused", 64 << 20)
    size = path.stat().st_size
    assert size < 1 << 20
    got, seconds, peak = traced(read_npz, path, ["x", "y", "lengths"])
    assert sorted(got) == ["x", "y"]
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["y"], y)
    assert peak < 256 << 10, peak
    assert npz_names(path) == ["x", "y", "unused"]
    for kwargs in ({}, {"max_bytes": 32 << 20}):
        err, seconds, peak = traced(read_npz, path, **kwargs)
        assert isinstance(err, ArrayFileError) and "declare" in str(err), err
        assert seconds < 0.5 and peak < 256 << 10, (seconds, peak)


def test_a_state_dict_npz_is_read_within_bounds(tmp_path):
    """import-torch reads every member of an .npz state_dict: a 64 MiB member in a small
    file is refused from its declared size, unread; a FIFO is refused without blocking."""
    weights = fastrnn.RNN(2, 3, seed=0).state_dict()
    path = tmp_path / "weights.npz"
    deflated_zeros(path, weights, "huge", 64 << 20)
    err, seconds, peak = traced(fastrnn.torch_bridge.read_state_dict, path)
    assert isinstance(err, ValueError) and "declare" in str(err), err
    assert seconds < 0.5 and peak < 256 << 10, (seconds, peak)
    np.savez(path, **weights)
    got = fastrnn.torch_bridge.read_state_dict(os.fsencode(path))
    assert sorted(got) == sorted(weights)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.npz")
        err = _without_blocking(fastrnn.torch_bridge.read_state_dict, tmp_path / "fifo.npz")
        assert isinstance(err, ValueError) and "not a regular file" in str(err), err


def test_npy_headers_may_not_claim_more_than_their_bytes(tmp_path):
    """numpy.load allocates what a .npy header claims (800 MB here) before finding that
    the data is 800 bytes; these readers refuse first."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False,
                                               "shape": (10 ** 8,)})
    liar = head.getvalue() + bytes(800)
    (tmp_path / "liar.npy").write_bytes(liar)
    err, _, peak = traced(read_npy, tmp_path / "liar.npy")
    assert isinstance(err, ArrayFileError) and "declares 800000000 bytes" in str(err), err
    assert peak < 1 << 20
    write_zip(tmp_path / "liar.npz", {"x.npy": liar})
    err, _, peak = traced(read_npz, tmp_path / "liar.npz")
    assert isinstance(err, ArrayFileError) and "truncated" in str(err), err
    assert peak < 1 << 20


ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(24.0).reshape(2, 3, 4)),
    "bool": np.array([True, False, True]),
    "scalar": np.array(7, np.int8),
    "empty": np.zeros((0, 3)),
    "complex": np.array([1 + 2j, 3 - 4j]),
    "text": np.array(["ab", "cde"]),
    "records": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
    "big-endian": np.arange(5, dtype=">i8"),
}


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_read_npz_and_read_npy_give_what_numpy_load_gives(tmp_path, compressed):
    path = tmp_path / "all.npz"
    (np.savez_compressed if compressed else np.savez)(path, **ARRAYS)
    got = read_npz(path)
    with np.load(path) as f:
        want = {k: f[k] for k in f.files}
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert got[k].flags.f_contiguous == want[k].flags.f_contiguous, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        np.save(tmp_path / "one.npy", ARRAYS[k])
        one = read_npy(tmp_path / "one.npy")
        assert one.dtype == ARRAYS[k].dtype and one.shape == ARRAYS[k].shape, k
        np.testing.assert_array_equal(one, ARRAYS[k], err_msg=k)


def test_read_npz_refuses_pickles_and_damage(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.zeros(2), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArrayFileError, match="Python objects"):
        read_npz(path)
    assert list(read_npz(path, ["x"])) == ["x"]            # the other member is not read
    np.save(tmp_path / "obj.npy", np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(ArrayFileError, match="Python objects"):
        read_npy(tmp_path / "obj.npy")
    (tmp_path / "text.npz").write_text("not a zip\n")
    with pytest.raises(ArrayFileError, match="not a readable .npz"):
        read_npz(tmp_path / "text.npz")
    with pytest.raises(ArrayFileError, match="not a .npy file"):
        read_npy(tmp_path / "text.npz")
    good = tmp_path / "flip.npz"
    np.savez(good, x=np.arange(100.0))
    raw = bytearray(good.read_bytes())
    raw[200] ^= 0xFF                                      # in x's data: the CRC tells
    good.write_bytes(bytes(raw))
    with pytest.raises(ArrayFileError, match="cannot be read"):
        read_npz(good)


# --------------------------------------------------------------------------- atomic writes


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "model.npz"
    for mode in (0o600, 0o640, 0o444):
        save(small_model(), path)
        os.chmod(path, mode)
        save(small_model(seed=1), path)
        assert stat.S_IMODE(path.stat().st_mode) == mode
    assert listing(tmp_path) == ["model.npz"]


def test_a_new_file_gets_the_umask_mode_and_the_umask_is_never_changed(tmp_path,
                                                                         monkeypatch):
    """The umask is process-wide: changing it, even for an instant, gives files that other
    threads create meanwhile the wrong mode.  save never calls os.umask."""
    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError("os.umask was called")

        monkeypatch.setattr(os, "umask", no_umask)
        save(small_model(), tmp_path / "model.npz")
        monkeypatch.undo()
        assert stat.S_IMODE((tmp_path / "model.npz").stat().st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks here")
def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    save(small_model(seed=0), real_dir / "model.npz")
    os.chmod(real_dir / "model.npz", 0o600)
    link = tmp_path / "current.npz"
    link.symlink_to(os.path.join("store", "model.npz"))
    new = small_model(seed=1)
    save(new, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("store", "model.npz")
    assert_same_model(load(real_dir / "model.npz"), new)
    assert stat.S_IMODE((real_dir / "model.npz").stat().st_mode) == 0o600
    assert listing(tmp_path) == ["current.npz", "store"]
    assert listing(real_dir) == ["model.npz"]
    # a dangling link: the file is created where it points
    dangling = tmp_path / "next.npz"
    dangling.symlink_to(os.path.join("store", "next.npz"))
    save(new, dangling)
    assert dangling.is_symlink() and (real_dir / "next.npz").is_file()


def test_atomic_write_refuses_devices_and_cleans_up_on_any_exception(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        with atomic_write(os.devnull) as f:
            f.write(b"x")
    for error in (OSError("disk full"), KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(error)):
            with atomic_write(tmp_path / "out.bin") as f:
                f.write(b"half")
                raise error
        assert listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="stale files are found by process id")
def test_temporary_files_of_killed_writers_are_removed_by_the_next_save(tmp_path):
    """A save killed with kill -9 cannot clean up after itself; the next save of the same
    file removes what it left (its process is gone), and nothing else."""
    path = tmp_path / "model.npz"
    script = textwrap.dedent("""
        import sys, time
        import numpy as np
        import fastrnn

        def stuck(f, *args, **kwargs):
            f.write(b"PK\x03\x04 half a file")
            f.flush()
            print("writing", flush=True)
            time.sleep(120)

        np.savez = stuck
        fastrnn.save(fastrnn.SequenceModel.build(
            "lstm", input_size=3, hidden_size=4, output_size=2, seed=0), sys.argv[1])
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(path)],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert child.stdout.readline().strip() == "writing"
        left = listing(tmp_path)
        assert len(left) == 1 and left[0].endswith(".tmp")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert listing(tmp_path) == left                     # what kill -9 leaves
    save(small_model(), path)
    assert listing(tmp_path) == ["model.npz"]
    assert left[0].startswith(".model.npz.fastrnn-") and f"-{child.pid}-" in left[0]
    # files that are not stale: a live process's, another target's, someone's own
    live = left[0].replace(f"-{child.pid}-", f"-{os.getppid()}-")
    other = left[0].replace(".model.npz.", ".other.npz.")
    mine = ".model.npz.fastrnn-notes.tmp"
    for name in (live, other, mine):
        (tmp_path / name).write_bytes(b"keep")
    save(small_model(seed=1), path)
    assert listing(tmp_path) == sorted(["model.npz", live, other, mine])
    assert_same_model(load(path), small_model(seed=1))


# ------------------------------------------------------------------------------ ONNX files


def test_export_onnx_writes_atomically_and_leaves_other_files_alone(tmp_path):
    onnx = pytest.importorskip("onnx")
    layer = fastrnn.GRU(3, 4, seed=0)
    path = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.tmp").write_bytes(b"the user's own file")
    fastrnn.export_onnx(layer, path)
    assert (tmp_path / "m.onnx.tmp").read_bytes() == b"the user's own file"
    os.chmod(path, 0o600)
    fastrnn.export_onnx(layer, os.fsencode(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    onnx.checker.check_model(onnx.load(str(path)))
    assert listing(tmp_path) == ["m.onnx", "m.onnx.tmp"]
    with pytest.raises(TypeError, match="path must be a file path"):
        fastrnn.export_onnx(layer, 3)


def test_concurrent_exports_to_one_path_all_succeed_and_readers_see_whole_files(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    models = [fastrnn.GRU(3, 4, seed=i) for i in range(4)]
    fastrnn.export_onnx(models[0], path)
    errors, bad_reads, done = [], [], threading.Event()

    def export(model):
        for _ in range(8):
            try:
                fastrnn.export_onnx(model, path)
            except Exception as err:        # noqa: BLE001
                errors.append(err)

    def read():
        while not done.is_set():
            try:
                onnx.checker.check_model(onnx.load(str(path)))
            except Exception as err:        # noqa: BLE001
                bad_reads.append(err)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=export, args=(m,)) for m in models]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == [] and bad_reads == []
    assert listing(tmp_path) == ["m.onnx"]


# ------------------------------------------------------------------ the architecture check


def test_the_architecture_check_names_what_does_not_fit(tmp_path):
    model = small_model()
    path = tmp_path / "m.npz"
    save(model, path)
    contents, header = members(path), header_of(path)
    h = json.loads(json.dumps(header))
    h["model"]["rnn"]["num_layers"] = 10 ** 9            # names it cannot list
    write_zip(tmp_path / "deep.npz", with_header(contents, h))
    with pytest.raises(ModelFileError, match="architecture cannot be built: .*more than a "
                                             "model file holds"):
        load(tmp_path / "deep.npz")
    h = json.loads(json.dumps(header))
    h["model"]["rnn"]["bidirectional"] = True
    write_zip(tmp_path / "bi.npz", with_header(contents, h))
    with pytest.raises(ModelFileError, match=r"do not fit the architecture: missing "
                                             r"\['rnn.weight_ih_l0_reverse'"):
        load(tmp_path / "bi.npz")
