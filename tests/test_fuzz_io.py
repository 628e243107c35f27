"""Fuzzing the model-file reader: ``fastrnn.load`` and ``load_checkpoint`` either load a
file or raise ``ModelFileError`` (a ValueError), quickly, with bounded memory, and never
run code from the file.

* the corpus of nasty files in tests/data/nasty/ (written by tests/data/make_nasty.py,
  its expected outcomes in MANIFEST.json), each loaded under tracemalloc;
* hypothesis: random bytes, random mutations of a valid file (flips, insertions,
  deletions, truncations, splices), and valid zips whose JSON header has random values
  grafted in anywhere.
"""

import io
import json
import os
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import ModelFileError, load, load_checkpoint, optim  # noqa: E402
from fastrnn.io import _parameter_count, _parameter_shapes  # noqa: E402
from conftest import examples  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
NASTY = os.path.join(DATA, "nasty")
MANIFEST = json.load(open(os.path.join(NASTY, "MANIFEST.json")))
PAYLOAD_FLAG = "FASTRNN_NASTY_PAYLOAD_RAN"
SECONDS = 2.0            # generous: the slowest corpus file loads in a few ms
PEAK_BYTES = 8 << 20     # every corpus file is below 32 kB; loading one may use 8 MB


def attempt(fn, path):
    """``fn(path)``: 'ok' or 'refused' (ModelFileError); any other exception propagates.
    Returns (outcome, seconds, peak traced bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn(path)
        outcome = "ok"
    except ModelFileError as err:
        assert isinstance(err, ValueError) and str(err)
        outcome = "refused"
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, seconds, peak


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_nasty_corpus(name):
    path = os.path.join(NASTY, name)
    assert os.path.getsize(path) < 32 << 10, "keep the corpus small"
    expected = MANIFEST[name]
    want = {"load": ("ok", "ok"), "refuse": ("refused", "refused"),
            "refuse_checkpoint": ("ok", "refused")}[expected]
    for fn, outcome in zip((load, load_checkpoint), want):
        got, seconds, peak = attempt(fn, path)
        assert got == outcome, (fn.__name__, name)
        assert seconds < SECONDS, (fn.__name__, name, seconds)
        assert peak < PEAK_BYTES, (fn.__name__, name, peak)
    assert PAYLOAD_FLAG not in os.environ


def test_corpus_matches_its_script(tmp_path):
    """The committed corpus is what make_nasty.py writes (same names, same outcomes)."""
    sys.path.insert(0, DATA)
    try:
        import make_nasty
    finally:
        sys.path.remove(DATA)
    manifest = make_nasty.main(str(tmp_path))
    assert manifest == MANIFEST
    assert sorted(os.listdir(NASTY)) == sorted(os.listdir(tmp_path))
    # the pickle payload is live: unpickling it does set the flag (so the corpus test
    # above would notice if the reader ever ran it)
    import pickle
    raw = open(os.path.join(NASTY, "pickle_renamed.npz"), "rb").read()
    try:
        pickle.loads(raw)
        assert os.environ.pop(PAYLOAD_FLAG) == "1"
    finally:
        os.environ.pop(PAYLOAD_FLAG, None)


# ----------------------------------------------------------------------- hypothesis

VALID = open(os.path.join(NASTY, "valid.npz"), "rb").read()
REFERENCE, REFERENCE_OPT, _ = load_checkpoint(os.path.join(NASTY, "valid.npz"))
with zipfile.ZipFile(io.BytesIO(VALID)) as _zf:
    MEMBERS = {i.filename: _zf.read(i) for i in _zf.infolist()}
HEADER = json.loads(np.load(io.BytesIO(MEMBERS["__header__.npy"])).tobytes())


def same_as_reference(model, opt):
    assert model.config() == REFERENCE.config()
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), REFERENCE.named_parameters()):
        assert n1 == n2
        np.testing.assert_array_equal(p1.data, p2.data)
    if opt is not None:
        assert opt.state_dict()["param_groups"] == REFERENCE_OPT.state_dict()["param_groups"]


def check_file(path):
    """Both readers refuse the file or load it; nothing else, quickly."""
    results = []
    for fn in (load, load_checkpoint):
        start = time.perf_counter()
        try:
            results.append(fn(path))
        except ModelFileError:
            results.append(None)
        assert time.perf_counter() - start < SECONDS
    assert PAYLOAD_FLAG not in os.environ
    return results


@st.composite
def mutations(draw):
    raw = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        if not raw:
            break
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip":
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            raw[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("["), ord("9")]))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del raw[pos:pos + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del raw[pos:]
        else:                                   # copy a chunk of the file elsewhere
            n = draw(st.integers(1, 256))
            dst = draw(st.integers(0, max(len(raw) - 1, 0)))
            raw[dst:dst + n] = raw[pos:pos + n]
    return bytes(raw)


@settings(max_examples=examples(1500))
@given(data=mutations())
def test_mutated_files_are_refused_or_unchanged(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "mutated.npz"
    path.write_bytes(data)
    model, checkpoint = check_file(path)
    if model is not None:
        same_as_reference(model, None)
    if checkpoint is not None:
        same_as_reference(checkpoint[0], checkpoint[1])


@settings(max_examples=examples(400))
@given(data=st.binary(max_size=2000) | st.binary(max_size=500).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes_are_refused(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "random.npz"
    path.write_bytes(data)
    assert check_file(path) == [None, None]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["LSTM", "GRU", "RNN", "Adam", "SGD", "<f4", "|O", "float32",
                       "float64", "SequenceModel", "Seq2Seq", "ManyToOne"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


def paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


HEADER_PATHS = [p for p in paths(HEADER) if p]


@settings(max_examples=examples(600))
@given(where=st.lists(st.sampled_from(HEADER_PATHS), min_size=1, max_size=3),
       values=st.lists(JSON, min_size=3, max_size=3), delete=st.booleans())
def test_grafted_headers_are_refused_or_load(tmp_path_factory, where, values, delete):
    """A well-formed zip whose header has random JSON values put anywhere (CRCs valid,
    so only the reader's own checks stand between the values and the model)."""
    header = json.loads(json.dumps(HEADER))
    for path, value in zip(where, values):
        node = header
        try:
            for key in path[:-1]:
                node = node[key]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    text = json.dumps(header).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in MEMBERS.items():
            if name == "__header__.npy":
                data = _npy(text)
            zf.writestr(name, data)
    path = tmp_path_factory.getbasetemp() / "grafted.npz"
    path.write_bytes(buf.getvalue())
    check_file(path)


def _npy(raw: bytes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(raw, np.uint8))
    return buf.getvalue()


# ------------------------------------------------- the architecture-size guard is exact

@settings(max_examples=examples(60))
@given(cell=st.sampled_from(["rnn", "lstm", "gru"]), hidden=st.integers(1, 5),
       layers=st.integers(1, 3), bidirectional=st.booleans(),
       head=st.sampled_from(["many_to_many", "many_to_one", "one_to_many"]),
       vocab=st.none() | st.integers(1, 6), seq2seq=st.booleans())
def test_parameter_count_of_a_config_is_exact(cell, hidden, layers, bidirectional, head,
                                              vocab, seq2seq):
    """The reader refuses an architecture larger than the stored arrays before building
    it; for every real model the count it computes is the model's own, and so are the
    names, order and shapes it checks the file's arrays against."""
    if seq2seq:
        model = fastrnn.Seq2Seq.build(cell, src_vocab=vocab or 3, tgt_vocab=4,
                                      hidden_size=hidden, num_layers=layers, seed=0)
    else:
        model = fastrnn.SequenceModel.build(
            cell, input_size=None if vocab else 2, vocab_size=vocab, hidden_size=hidden,
            output_size=3, head=head, num_layers=layers, bidirectional=bidirectional, seed=0)
    assert _parameter_count(model.config()) == sum(p.data.size for p in model.parameters())
    assert list(_parameter_shapes(model.config()).items()) == \
        [(name, p.data.shape) for name, p in model.named_parameters()]


def test_save_load_round_trip_survives_the_guard(tmp_path):
    for model in (fastrnn.SequenceModel.build("lstm", vocab_size=7, embedding_dim=3,
                                              hidden_size=4, output_size=7, num_layers=2,
                                              seed=1),
                  fastrnn.Seq2Seq.build("gru", src_vocab=5, tgt_vocab=6, hidden_size=3,
                                        seed=2)):
        path = tmp_path / "m.npz"
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        fastrnn.save(model, path, opt)
        loaded, opt2, _ = load_checkpoint(path)
        np.testing.assert_equal(loaded.state_dict(), model.state_dict())
