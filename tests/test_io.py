"""Tests of fastrnn.io: round trips of every kind of model, exact resumption from a
checkpoint, atomic writes, and refusal of truncated, altered, foreign and malicious files
(quickly, without running code)."""

import io
import json
import math
import os
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

import fastrnn
from fastrnn import ModelFileError, load, load_checkpoint, optim, save
from fastrnn.losses import CrossEntropyLoss

# ----------------------------------------------------------------------------- models


def _manual(rnn, head, loss="cross_entropy", embedding=None):
    return fastrnn.SequenceModel(rnn, head, loss, embedding)


MODELS = {
    "rnn-tanh-m2m": lambda: fastrnn.SequenceModel.build(
        "rnn", input_size=3, hidden_size=4, output_size=2, seed=0),
    "rnn-relu-m2o-bi": lambda: fastrnn.SequenceModel.build(
        "rnn", input_size=3, hidden_size=4, output_size=5, head="many_to_one",
        nonlinearity="relu", bidirectional=True, seed=1),
    "lstm-m2o-L2-bi-f64": lambda: fastrnn.SequenceModel.build(
        "lstm", input_size=3, hidden_size=4, output_size=3, head="many_to_one",
        num_layers=2, bidirectional=True, dtype=np.float64, seed=2),
    "lstm-m2m-L2-dropout": lambda: fastrnn.SequenceModel.build(
        "lstm", input_size=3, hidden_size=4, output_size=3, num_layers=2, dropout=0.25,
        seed=3),
    "gru-o2m-tokens": lambda: fastrnn.SequenceModel.build(
        "gru", vocab_size=9, embedding_dim=3, hidden_size=4, output_size=9,
        head="one_to_many", seed=4),
    "gru-tokens-padding-f64": lambda: _manual(
        fastrnn.GRU(3, 4, num_layers=2, dtype=np.float64, seed=5),
        fastrnn.ManyToMany(4, 6, dtype=np.float64, seed=6),
        CrossEntropyLoss(ignore_index=5),
        fastrnn.Embedding(6, 3, padding_idx=0, dtype=np.float64, seed=7)),
    "lstm-batch-first-mse-nobias": lambda: _manual(
        fastrnn.LSTM(3, 4, bias=False, batch_first=True, seed=8),
        fastrnn.ManyToOne(4, 2, seed=9), "mse"),
    "gru-bce-bi": lambda: fastrnn.SequenceModel.build(
        "gru", input_size=3, hidden_size=4, output_size=2, loss="bce_with_logits",
        bidirectional=True, seed=10),
}


def model_inputs(model, n=5, t=6, seed=0):
    rng = np.random.default_rng(seed)
    if model.embedding is not None:
        return rng.integers(0, model.embedding.num_embeddings, (n, t))
    return rng.standard_normal((n, t, model.rnn.input_size))


def small_model(seed=0):
    return fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=4, output_size=2,
                                       seed=seed)


@pytest.fixture
def saved(tmp_path):
    """A small model with an Adam state, saved: ``(path, model)``."""
    model = small_model()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x = model_inputs(model, 4, 5)
    model.fit(x, np.zeros((4, 5), np.int64), epochs=1, optimizer=opt, progress=False)
    path = tmp_path / "model.npz"
    save(model, path, opt, extra={"epoch": 1})
    return path, model


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert a.config() == b.config()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


# -------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", list(MODELS))
def test_sequence_model_round_trip(tmp_path, name):
    model = MODELS[name]()
    path = tmp_path / f"{name}.npz"
    save(model, path)
    loaded = load(path)
    assert_same_model(model, loaded)
    assert repr(loaded) == repr(model)
    assert loaded.rnn.batch_first == model.rnn.batch_first
    x = model_inputs(model)
    lengths = np.array([6, 2, 5, 1, 3])
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    np.testing.assert_array_equal(loaded.forward(x, lengths), model.forward(x, lengths))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    if model.embedding is not None:
        assert loaded.embedding.padding_idx == model.embedding.padding_idx
    if model.loss.name == "cross_entropy":
        assert loaded.loss.ignore_index == model.loss.ignore_index
    # a str path works as well as a Path, and a second save overwrites
    save(loaded, str(path))
    assert_same_model(load(str(path)), model)


def test_seq2seq_round_trip(tmp_path):
    for cell, layers in (("gru", 2), ("lstm", 1), ("rnn", 1)):
        model = fastrnn.Seq2Seq.build(cell, src_vocab=7, tgt_vocab=8, hidden_size=5,
                                      embedding_dim=3, num_layers=layers, bos_token=2,
                                      seed=3)
        path = tmp_path / f"s2s-{cell}.npz"
        save(model, path)
        loaded = load(path)
        assert_same_model(model, loaded)
        assert loaded.bos_token == 2
        src = np.random.default_rng(0).integers(0, 7, (6, 4))
        np.testing.assert_array_equal(loaded.predict(src, max_length=5, eos_token=3),
                                      model.predict(src, max_length=5, eos_token=3))
        tgt = np.random.default_rng(1).integers(0, 8, (6, 3))
        assert loaded.evaluate(src, tgt) == model.evaluate(src, tgt)


F64 = np.float64
#: every kind of module saved on its own, with an input it takes
MODULES = {
    "lstm-L2-bi-f64": (lambda: fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True,
                                            dtype=F64, seed=0), "seq"),
    "lstm-proj-peephole": (lambda: fastrnn.LSTM(3, 4, proj_size=2, peephole=True,
                                                seed=1), "seq"),
    "gru-reset-before-batch-first": (lambda: fastrnn.GRU(3, 4, reset_after=False,
                                                         batch_first=True, seed=2), "seq"),
    "rnn-relu-reverse-zoneout": (lambda: fastrnn.RNN(3, 4, nonlinearity="relu",
                                                     reverse=True, zoneout=0.1, seed=3),
                                 "seq"),
    "fastgrnn-low-rank": (lambda: fastrnn.FastGRNN(3, 4, w_rank=2, u_rank=3, seed=4), "seq"),
    "lstm-layer-norm": (lambda: fastrnn.LSTM(3, 4, num_layers=2, layer_norm=True, seed=18),
                        "seq"),
    "lstmcell-layer-norm": (lambda: fastrnn.LSTMCell(3, 4, layer_norm=True, seed=19), "step"),
    "fastrnn": (lambda: fastrnn.FastRNN(3, 4, dtype=F64, seed=5), "seq"),
    "rnncell-relu": (lambda: fastrnn.RNNCell(3, 4, nonlinearity="relu", seed=6), "step"),
    "lstmcell-peephole-f64": (lambda: fastrnn.LSTMCell(3, 4, peephole=True, dtype=F64,
                                                       seed=7), "step"),
    "grucell-nobias-reset-before": (lambda: fastrnn.GRUCell(3, 4, bias=False,
                                                            reset_after=False, seed=8),
                                    "step"),
    "linear-nobias": (lambda: fastrnn.Linear(3, 2, bias=False, seed=9), "step"),
    "embedding-padding": (lambda: fastrnn.Embedding(6, 3, padding_idx=0, seed=10), "tokens"),
    "relu": (lambda: fastrnn.ReLU(), "step"),
    "layernorm": (lambda: fastrnn.LayerNorm(3, dtype=F64), "batch"),
    "attention-pooling": (lambda: fastrnn.AttentionPooling(3, 2, seed=11), "batch"),
    "residual": (lambda: fastrnn.Residual(fastrnn.Linear(3, 3, seed=12)), "batch"),
    "concatenate": (lambda: fastrnn.Concatenate(fastrnn.GRU(3, 2, seed=13),
                                                fastrnn.Linear(3, 2, seed=14)), "batch"),
    "bidirectional": (lambda: fastrnn.Bidirectional(fastrnn.LSTM(3, 2, seed=15),
                                                    merge_mode="sum"), "batch"),
    "many-to-one-head-bi": (lambda: fastrnn.ManyToOne(8, 2, num_directions=2, seed=16),
                            "head"),
    "one-to-many-head": (lambda: fastrnn.OneToMany(3, 5, dtype=F64, seed=17), "batch"),
}


def module_output(module, how):
    rng = np.random.default_rng(0)
    dtype = next((p.dtype for p in module.parameters()), np.dtype(np.float32))
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    if how == "seq":
        out = module(x)
        return out[0] if isinstance(out, tuple) else out
    if how == "step":
        out = module(x[0])
        return np.concatenate(out) if isinstance(out, tuple) else out
    if how == "tokens":
        return module(rng.integers(0, 6, (5, 4)))
    if how == "head":
        return module(None, rng.standard_normal((2, 5, 4)).astype(dtype))
    # blocks and combinators take (x, lengths); a per-step head (y, state) reads y only
    return module(x, np.array([4, 1, 3, 2, 4]))


@pytest.mark.parametrize("name", list(MODULES))
def test_module_round_trip(tmp_path, name):
    make, how = MODULES[name]
    module = make()
    path = tmp_path / f"{name}.npz"
    module.save(path)                                   # Module.save is fastrnn.save
    loaded = load(path)
    assert type(loaded) is type(module) and repr(loaded) == repr(module)
    assert fastrnn.io._architecture(loaded) == fastrnn.io._architecture(module)
    sa, sb = module.state_dict(), loaded.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    np.testing.assert_array_equal(module_output(loaded, how), module_output(module, how))
    header = header_of(path)
    assert header["model"]["type"] == type(module).__name__
    assert sorted(header["arrays"]) == sorted(f"param/{k}" for k in sa)


def test_module_checkpoint_resumes(tmp_path):
    """A layer saved with its optimizer comes back with both: the next step is the same."""
    layer = fastrnn.GRU(3, 4, dtype=F64, seed=0)
    opt = optim.Adam(layer.parameters(), lr=1e-2)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))

    def step(layer, opt):
        opt.zero_grad()
        y, _, backward = layer.forward_train(x)
        backward(y)                                     # the gradient of sum(y**2) / 2
        opt.step()

    step(layer, opt)
    fastrnn.save(layer, tmp_path / "gru.npz", opt, extra={"epoch": 1})
    loaded, opt2, extra = load_checkpoint(tmp_path / "gru.npz")
    assert type(opt2) is optim.Adam and extra == {"epoch": 1}
    step(layer, opt)
    step(loaded, opt2)
    for (k, a), b in zip(layer.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_a_module_file_whose_arrays_do_not_fit_is_refused(tmp_path):
    path = tmp_path / "cell.npz"
    fastrnn.LSTMCell(3, 4, seed=0).save(path)
    contents = members(path)
    header = header_of(path)
    header["model"]["hidden_size"] = 5                  # the arrays are (16, 3) ...
    refuses_file = tmp_path / "altered.npz"
    write_zip(refuses_file, with_header(contents, header))
    refuses(refuses_file, "parameters do not fit the architecture")
    header["model"] = {**header["model"], "type": "LSTMCel"}
    write_zip(refuses_file, with_header(contents, header))
    refuses(refuses_file, "unknown model type")


def test_checkpoint_contents(tmp_path):
    model = small_model()
    path = tmp_path / "plain.npz"
    save(model, path)
    m, opt, extra = load_checkpoint(path)
    assert opt is None and extra is None
    assert_same_model(m, model)
    extra = {"epoch": np.int64(3), "logs": {"loss": np.float32(0.5), "acc": [1, 2.5]},
             "name": "run-1", "flags": (True, None)}
    save(model, path, extra=extra)
    _, _, got = load_checkpoint(path)
    assert got == {"epoch": 3, "logs": {"loss": 0.5, "acc": [1, 2.5]}, "name": "run-1",
                   "flags": [True, None]}
    # JSON has no nan or inf: written as null, so that an inf validation loss is logged
    save(model, path, extra={"loss": float("nan"), "val": [np.float32("inf"), -math.inf]})
    assert load_checkpoint(path)[2] == {"loss": None, "val": [None, None]}
    before = path.read_bytes()
    with pytest.raises(ValueError, match="extra must be JSON-serialisable"):
        save(model, path, extra={"model": model})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["plain.npz"]


# ------------------------------------------------------------------------- resumption


OPTIMIZERS = {
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adam-amsgrad-wd": lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2),
    "sgd-nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "rmsprop-centered": lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
}


def resume_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((24, 6, 3)), rng.integers(0, 2, (24, 6))


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_resumed_training_equals_uninterrupted_training(tmp_path, opt_name):
    """shuffle=False: every epoch sees the batches in the same order, so 1 epoch, save,
    load, 1 epoch is 2 epochs, bit for bit -- if the optimizer's state comes back."""
    x, y = resume_data()
    kwargs = dict(batch_size=5, shuffle=False, progress=False, clip_norm=1.0)
    straight = small_model()
    straight.fit(x, y, epochs=2, optimizer=OPTIMIZERS[opt_name](straight.parameters()),
                 **kwargs)

    first = small_model()
    opt = OPTIMIZERS[opt_name](first.parameters())
    first.fit(x, y, epochs=1, optimizer=opt, **kwargs)
    path = tmp_path / "ck.npz"
    save(first, path, opt, extra={"epoch": 0})
    resumed, opt2, extra = load_checkpoint(path)
    assert type(opt2) is type(opt) and extra == {"epoch": 0}
    assert opt2.param_groups[0]["params"] == resumed.parameters()
    resumed.fit(x, y, epochs=1, optimizer=opt2, **kwargs)
    assert_same_model(straight, resumed)

    # without the optimizer's state (a fresh optimizer) the result differs: the test
    # above does look at that state
    fresh = load(path)
    fresh.fit(x, y, epochs=1, optimizer=OPTIMIZERS[opt_name](fresh.parameters()), **kwargs)
    assert any(not np.array_equal(a, b) for a, b in
               zip(fresh.state_dict().values(), straight.state_dict().values()))


def test_resumed_shuffled_training_with_a_seed_per_fit_call(tmp_path):
    """With shuffling, ``fit(seed=s)`` draws each call's epoch orders from a new
    generator seeded by s; it is not saved in the checkpoint.  Resuming is exact when the
    interrupted run was itself made of fit calls with their own seeds."""
    x, y = resume_data()
    kwargs = dict(batch_size=5, progress=False)
    straight = small_model()
    opt = optim.Adam(straight.parameters(), lr=1e-2)
    straight.fit(x, y, epochs=1, optimizer=opt, seed=1, **kwargs)
    straight.fit(x, y, epochs=1, optimizer=opt, seed=2, **kwargs)

    first = small_model()
    opt = optim.Adam(first.parameters(), lr=1e-2)
    first.fit(x, y, epochs=1, optimizer=opt, seed=1, **kwargs)
    path = tmp_path / "ck.npz"
    save(first, path, opt)
    resumed, opt2, _ = load_checkpoint(path)
    resumed.fit(x, y, epochs=1, optimizer=opt2, seed=2, **kwargs)
    assert_same_model(straight, resumed)

    # one fit(epochs=2, seed=1) shuffles its second epoch differently from fit(seed=1)
    # called again, so it is not what a resumed run reproduces
    two = small_model()
    two.fit(x, y, epochs=2, optimizer=optim.Adam(two.parameters(), lr=1e-2), seed=1,
            **kwargs)
    again = load(path)
    again.fit(x, y, epochs=1, optimizer=load_checkpoint(path)[1], seed=1, **kwargs)
    assert any(not np.array_equal(a, b) for a, b in
               zip(two.state_dict().values(), again.state_dict().values()))


def test_checkpoint_keeps_changed_hyper_parameters(tmp_path):
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = resume_data()
    model.fit(x, y, epochs=1, optimizer=opt, progress=False)
    opt.param_groups[0]["lr"] = 0.025                   # as a scheduler would
    path = tmp_path / "ck.npz"
    save(model, path, opt)
    _, opt2, _ = load_checkpoint(path)
    assert opt2.param_groups[0]["lr"] == 0.025 and opt2.param_groups[0]["momentum"] == 0.9
    for i, st in opt.state.items():
        np.testing.assert_array_equal(opt2.state[i]["momentum_buffer"],
                                      st["momentum_buffer"])


# ---------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()],
                         ids=["oserror", "interrupt"])
def test_save_is_atomic(tmp_path, monkeypatch, error):
    path = tmp_path / "model.npz"
    old_model = small_model(seed=0)
    save(old_model, path)
    original = path.read_bytes()
    real_savez = np.savez

    def failing_savez(file, *args, **kwargs):
        real_savez(io.BytesIO(), *args, **kwargs)      # the arrays are fine...
        file.write(b"PK\x03\x04 half a file")          # ...the disk is not
        raise error

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(type(error)):
        save(small_model(seed=1), path)
    with pytest.raises(type(error)):
        save(small_model(seed=1), tmp_path / "new.npz")
    monkeypatch.undo()
    assert path.read_bytes() == original               # the old file is intact
    assert os.listdir(tmp_path) == ["model.npz"]       # and no temporary file is left
    assert_same_model(load(path), old_model)


def test_save_into_a_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        save(small_model(), tmp_path / "no" / "such" / "dir.npz")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------- refused files


def refuses(path, match=None):
    """load and load_checkpoint both raise ModelFileError, fast."""
    for fn in (load, load_checkpoint):
        start = time.perf_counter()
        with pytest.raises(ModelFileError, match=match) as info:
            fn(path)
        assert time.perf_counter() - start < 1.0
        assert isinstance(info.value, ValueError)
    return str(info.value)


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def header_of(path):
    raw = members(path)["__header__.npy"]
    return json.loads(np.load(io.BytesIO(raw)).tobytes())


def npy(a, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def write_zip(path, contents):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)


def with_header(contents, header):
    text = json.dumps(header).encode()
    return {**contents, "__header__.npy": npy(np.frombuffer(text, np.uint8))}


def data_offset(path, name):
    """Where the bytes of member ``name`` start in the zip file (stored, uncompressed)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    fn_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                 info.header_offset + 30])
    assert info.compress_type == zipfile.ZIP_STORED
    return info.header_offset + 30 + fn_len + extra_len, info.file_size


def test_missing_file(tmp_path):
    for fn in (load, load_checkpoint):
        with pytest.raises(FileNotFoundError):
            fn(tmp_path / "absent.npz")


@pytest.mark.parametrize("keep", [0, 1, 21, 100, 0.5, -100, -22, -1],
                         ids=lambda k: f"keep{k}")
def test_truncated_file(saved, keep):
    path, _ = saved
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path.write_bytes(raw[:n])
    refuses(path)


def test_flipped_byte_in_an_array(saved):
    path, _ = saved
    start, size = data_offset(path, "param/rnn.weight_hh_l0.npy")
    raw = bytearray(path.read_bytes())
    raw[start + size - 5] ^= 0x10                         # in the float data
    path.write_bytes(bytes(raw))
    refuses(path)


def test_altered_array_with_a_valid_zip(saved):
    """An array changed and the zip rewritten (so its CRC is right): the digest tells."""
    path, _ = saved
    contents = members(path)
    a = np.load(io.BytesIO(contents["param/head.readout.bias.npy"]))
    contents["param/head.readout.bias.npy"] = npy(a + 1)
    write_zip(path, contents)
    refuses(path, "altered")


def test_every_flipped_byte_is_refused_or_harmless(tmp_path):
    """Flip bytes all over a small file: each load raises ModelFileError or gives the very
    same model and optimizer (zip fields that nothing reads, such as timestamps)."""
    model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=2, output_size=2,
                                        seed=0)
    opt = optim.Adam(model.parameters())
    model.fit(np.ones((2, 3, 2)), np.zeros((2, 3), np.int64), epochs=1, optimizer=opt,
              progress=False)
    path = tmp_path / "small.npz"
    save(model, path, opt)
    raw = path.read_bytes()
    refused = tried = 0
    for i in range(0, len(raw), 7):
        bad = bytearray(raw)
        bad[i] ^= 0xFF if i % 2 else 0x01
        path.write_bytes(bytes(bad))
        tried += 1
        try:
            loaded, opt2, _ = load_checkpoint(path)
        except ModelFileError:
            refused += 1
            continue
        assert_same_model(loaded, model)
        assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert refused > 0.7 * tried


def test_zip_without_header(tmp_path):
    path = tmp_path / "nohead.npz"
    write_zip(path, {"param/rnn.weight_ih_l0.npy": npy(np.zeros((16, 3), np.float32))})
    refuses(path, "no header")


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.arange(5.0), bias=np.zeros(2))
    refuses(path, "not a fastrnn model file")
    path2 = tmp_path / "foreign2.npz"
    np.savez(path2, __header__=np.frombuffer(b'{"format": "other"}', np.uint8))
    refuses(path2, "not a fastrnn model file")
    path3 = tmp_path / "array.npz"                      # a lone .npy, renamed
    np.save(tmp_path / "array.npy", np.arange(3))
    os.replace(tmp_path / "array.npy", path3)
    refuses(path3)


def test_plain_text_and_empty_and_directory(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are not the weights you are looking for\n" * 20)
    refuses(path, "not a fastrnn model file")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refuses(empty)


def test_header_claiming_a_huge_shape(saved, tmp_path):
    path, _ = saved
    contents = members(path)
    header = header_of(path)
    header["arrays"]["param/rnn.weight_ih_l0"]["shape"] = [10 ** 6, 10 ** 6]
    write_zip(path, with_header(contents, header))
    refuses(path, "more than the file holds")
    # the array member's own .npy header claims it as well
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                              "shape": (10 ** 6, 10 ** 6)})
    contents["param/rnn.weight_ih_l0.npy"] = (buf.getvalue()
                                              + np.zeros((16, 3), np.float32).tobytes())
    header["arrays"]["param/rnn.weight_ih_l0"]["shape"] = [16, 3]
    write_zip(path, with_header(contents, header))
    refuses(path, "the header declares")
    # the header member itself claims to be huge
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                              "shape": (2 ** 44,)})
    write_zip(tmp_path / "hugeheader.npz",
              {"__header__.npy": buf.getvalue() + b'{"format": "fastrnn-model"}'})
    refuses(tmp_path / "hugeheader.npz", "header cannot be read")


def test_header_variants_are_refused(saved, tmp_path):
    path, _ = saved
    contents = members(path)
    header = header_of(path)
    cases = {
        "newer": ({**header, "format_version": 99}, "format version 99"),
        "no arrays": ({k: v for k, v in header.items() if k != "arrays"}, "lists no arrays"),
        "list": ([1, 2, 3], "not a fastrnn model file"),
        "unknown model": ({**header, "model": {**header["model"], "type": "Transformer"}},
                          "unknown model type"),
        "bad config": ({**header, "model": {**header["model"], "rnn": {"type": "LSTM"}}},
                       "architecture cannot be built"),
        "malformed entry": ({**header, "arrays": {**header["arrays"],
                                                  "param/x": {"shape": "big"}}},
                            "malformed"),
        "negative shape": ({**header, "arrays": {**header["arrays"], "param/head.readout.bias":
                                                 {**header["arrays"]["param/head.readout.bias"],
                                                  "shape": [-2]}}}, "refused dtype or shape"),
        "unknown optimizer": ({**header, "optimizer": {**header["optimizer"],
                                                       "type": "__import__"}},
                              "unknown optimizer"),
    }
    for name, (h, match) in cases.items():
        p = tmp_path / f"{name}.npz"
        write_zip(p, with_header(contents, h))
        if name == "unknown optimizer":            # only load_checkpoint reads it
            load(p)
            with pytest.raises(ModelFileError, match=match):
                load_checkpoint(p)
        else:
            refuses(p, match)
    p = tmp_path / "missing.npz"
    write_zip(p, {k: v for k, v in contents.items() if k != "param/rnn.bias_ih_l0.npy"})
    refuses(p, "is missing")
    p = tmp_path / "not-utf8.npz"
    write_zip(p, {**contents, "__header__.npy": npy(np.frombuffer(b"\xff\xfe{", np.uint8))})
    refuses(p, "header cannot be read")
    p = tmp_path / "wrong shape.npz"                # consistent, but not the architecture's
    bias = np.zeros(5, np.float32)
    h = json.loads(json.dumps(header))
    h["arrays"]["param/head.readout.bias"] = {"shape": [5], "dtype": "<f4", "sha256":
                                              __import__("hashlib").sha256(
                                                  bias.tobytes()).hexdigest()}
    write_zip(p, with_header({**contents, "param/head.readout.bias.npy": npy(bias)}, h))
    refuses(p, "parameters do not fit the architecture")


class Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickles_never_run(saved, tmp_path):
    path, _ = saved
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Marker(marker))
    # the control: unpickling does create the marker
    pickle.loads(payload).close()
    assert marker.exists()
    marker.unlink()

    renamed = tmp_path / "pickle.npz"
    renamed.write_bytes(payload)
    refuses(renamed)
    evil = np.array([Marker(marker)], dtype=object)
    contents = members(path)
    header = header_of(path)
    # an object array as the header
    p1 = tmp_path / "objheader.npz"
    write_zip(p1, {**contents, "__header__.npy": npy(evil, allow_pickle=True)})
    refuses(p1, "header cannot be read")
    # an object array as a parameter, declared as such
    p2 = tmp_path / "objparam.npz"
    h = json.loads(json.dumps(header))
    h["arrays"]["param/head.readout.bias"]["dtype"] = "|O"
    write_zip(p2, with_header({**contents, "param/head.readout.bias.npy":
                               npy(evil, allow_pickle=True)}, h))
    refuses(p2, "refused dtype")
    # ...or declared as floats
    p3 = tmp_path / "objparam2.npz"
    h["arrays"]["param/head.readout.bias"]["dtype"] = "<f4"
    h["arrays"]["param/head.readout.bias"]["shape"] = [1]
    write_zip(p3, with_header({**contents, "param/head.readout.bias.npy":
                               npy(evil, allow_pickle=True)}, h))
    refuses(p3)
    # a pickle-protocol optimizer state entry
    p4 = tmp_path / "objoptim.npz"
    write_zip(p4, {**contents, "optim/0/exp_avg.npy": npy(evil, allow_pickle=True)})
    refuses(p4)
    assert not marker.exists()


def test_a_valid_file_still_loads_after_all_that(saved):
    path, model = saved
    loaded, opt, extra = load_checkpoint(path)
    assert_same_model(loaded, model)
    assert extra == {"epoch": 1} and type(opt) is optim.Adam
    assert ModelFileError.__mro__[1] is ValueError
