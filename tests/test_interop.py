"""PyTorch in and out: from_torch / to_torch round trips, plain state_dicts without torch,
the import-torch command, and every refusal."""

import numpy as np
import pytest

import fastrnn
from fastrnn.cli import main

CONFIGS = [  # (name, nonlinearity, num_layers, bidirectional, batch_first, bias)
    ("RNN", "tanh", 1, False, False, True),
    ("RNN", "tanh", 2, True, True, False),
    ("RNN", "relu", 2, True, False, True),
    ("RNN", "relu", 1, False, True, True),
    ("LSTM", None, 1, False, False, True),
    ("LSTM", None, 2, True, True, True),
    ("LSTM", None, 2, False, False, False),
    ("LSTM", None, 1, True, True, True),
    ("GRU", None, 1, False, False, True),
    ("GRU", None, 2, True, True, True),
    ("GRU", None, 2, False, True, False),
    ("GRU", None, 1, True, False, True),
]


def _torch_layer(torch, name, nonlinearity, layers, bi, bf, bias, dtype, seed=0):
    torch.manual_seed(seed)
    kw = {"nonlinearity": nonlinearity} if name == "RNN" else {}
    m = getattr(torch.nn, name)(5, 6, num_layers=layers, bidirectional=bi, batch_first=bf,
                                bias=bias, **kw)
    return m.to(dtype)


def _state(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


def _same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_layer_round_trip(torch, cfg, dt):
    name, nl, layers, bi, bf, bias = cfg
    tm = _torch_layer(torch, name, nl, layers, bi, bf, bias, getattr(torch, dt))
    fm = fastrnn.from_torch(tm)
    assert type(fm) is getattr(fastrnn, name) and fm.dtype == np.dtype(dt)
    assert (fm.num_layers, fm.bidirectional, fm.batch_first, fm.bias) == (layers, bi, bf, bias)
    if name == "RNN":
        assert fm.nonlinearity == nl
    _same_weights(_state(tm), fm.state_dict())

    D = 2 if bi else 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5) if bf else (4, 3, 5)).astype(dt)
    h0 = rng.standard_normal((layers * D, 3, 6)).astype(dt)
    c0 = rng.standard_normal((layers * D, 3, 6)).astype(dt)
    st_t = (torch.from_numpy(h0), torch.from_numpy(c0)) if name == "LSTM" else \
        torch.from_numpy(h0)
    with torch.no_grad():
        yt, st = tm(torch.from_numpy(x), st_t)
    yf, sf = fm(x, (h0, c0) if name == "LSTM" else h0)
    tol = dict(rtol=1e-4, atol=1e-5) if dt == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(yf, yt.numpy(), **tol)
    for a, b in zip(sf if name == "LSTM" else [sf], st if name == "LSTM" else [st]):
        np.testing.assert_allclose(a, b.numpy(), **tol)

    back = fastrnn.to_torch(fm)
    assert type(back) is type(tm)
    assert (back.num_layers, back.bidirectional, back.batch_first, back.bias) == \
        (tm.num_layers, tm.bidirectional, tm.batch_first, tm.bias)
    _same_weights(_state(tm), _state(back))
    with torch.no_grad():
        yb, sb = back(torch.from_numpy(x), st_t)
    assert torch.equal(yb, yt)
    for a, b in zip(sb if name == "LSTM" else [sb], st if name == "LSTM" else [st]):
        assert torch.equal(a, b)
    # and fastrnn -> torch -> fastrnn
    again = fastrnn.from_torch(back)
    _same_weights(fm.state_dict(), again.state_dict())
    assert np.array_equal(again(x, (h0, c0) if name == "LSTM" else h0)[0], yf)


def test_to_torch_leaves_torch_rng_alone(torch):
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    fastrnn.to_torch(fastrnn.LSTM(4, 5, num_layers=2, seed=0))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name,nl", [("RNNCell", "tanh"), ("RNNCell", "relu"),
                                     ("LSTMCell", None), ("GRUCell", None)])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_round_trip(torch, name, nl, bias):
    torch.manual_seed(0)
    kw = {"nonlinearity": nl} if nl else {}
    tm = getattr(torch.nn, name)(4, 5, bias=bias, **kw)
    fm = fastrnn.from_torch(tm)
    assert type(fm) is getattr(fastrnn, name) and fm.bias == bias
    _same_weights(_state(tm), fm.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((3, 5)).astype(np.float32)
    state = (h, h * 0.5) if name == "LSTMCell" else h
    tstate = tuple(map(torch.from_numpy, state)) if name == "LSTMCell" else torch.from_numpy(h)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x), tstate)
    out = fm(x, state)
    for a, b in zip(out if name == "LSTMCell" else [out], ref if name == "LSTMCell" else [ref]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)
    back = fastrnn.to_torch(fm)
    assert type(back) is type(tm)
    _same_weights(_state(tm), _state(back))
    with torch.no_grad():
        again = back(torch.from_numpy(x), tstate)
    for a, b in zip(again if name == "LSTMCell" else [again],
                    ref if name == "LSTMCell" else [ref]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_round_trip(torch, bias):
    torch.manual_seed(0)
    tm = torch.nn.Linear(6, 3, bias=bias)
    fm = fastrnn.from_torch(tm)
    _same_weights(_state(tm), fm.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    np.testing.assert_allclose(fm(x), ref.numpy(), rtol=1e-5, atol=1e-6)
    back = fastrnn.to_torch(fm)
    _same_weights(_state(tm), _state(back))
    with torch.no_grad():
        assert torch.equal(back(torch.from_numpy(x)), ref)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_round_trip(torch, padding_idx):
    torch.manual_seed(0)
    tm = torch.nn.Embedding(9, 4, padding_idx=padding_idx)
    fm = fastrnn.from_torch(tm)
    assert fm.padding_idx == padding_idx
    _same_weights(_state(tm), fm.state_dict())
    t = np.array([[0, 2, 8], [1, 2, 3]])
    with torch.no_grad():
        ref = tm(torch.from_numpy(t))
    assert np.array_equal(fm(t), ref.numpy())
    back = fastrnn.to_torch(fm)
    assert back.padding_idx == padding_idx
    _same_weights(_state(tm), _state(back))


class _Parts:
    """A typical PyTorch model: embedding -> LSTM -> linear readout."""

    def __init__(self, torch, head, bi):
        torch.manual_seed(0)
        self.torch = torch
        self.emb = torch.nn.Embedding(11, 4)
        self.rnn = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=bi)
        self.fc = torch.nn.Linear(12 if bi else 6, 3)
        self.head, self.bi = head, bi

    def forward(self, tokens):
        with self.torch.no_grad():
            y, (h, _) = self.rnn(self.emb(self.torch.from_numpy(tokens)))
            if self.head == "many_to_one":
                f = self.torch.cat([h[-2], h[-1]], 1) if self.bi else h[-1]
                return self.fc(f).numpy()
            return self.fc(y).numpy()

    def state_dict(self):
        out = {}
        for p, m in (("emb", self.emb), ("rnn", self.rnn), ("fc", self.fc)):
            out.update({f"{p}.{k}": v for k, v in _state(m).items()})
        return out


@pytest.mark.parametrize("head,bi", [("many_to_one", True), ("many_to_one", False),
                                     ("many_to_many", False)])
def test_sequence_model_from_parts_and_state_dict(torch, tmp_path, head, bi):
    net = _Parts(torch, head, bi)
    tokens = np.random.default_rng(0).integers(0, 11, (3, 5))
    ref = net.forward(tokens)
    m1 = fastrnn.from_torch(net.rnn, readout=net.fc, embedding=net.emb, head=head)
    np.testing.assert_allclose(m1.forward(tokens), ref, rtol=1e-4, atol=1e-5)
    m2 = fastrnn.from_torch(net.state_dict(), head=head)             # a dict of arrays
    path = tmp_path / "weights.npz"
    np.savez(path, **net.state_dict())
    m3 = fastrnn.from_torch(path, head=head)                          # a file
    for m in (m2, m3):
        _same_weights(m1.state_dict(), m.state_dict())
        assert np.array_equal(m.forward(tokens), m1.forward(tokens))
    pt = tmp_path / "weights.pt"
    torch.save({k: torch.from_numpy(v) for k, v in net.state_dict().items()}, pt)
    _same_weights(m1.state_dict(), fastrnn.from_torch(pt, head=head).state_dict())
    # to_torch of a whole model: a ModuleDict of its parts, and back
    md = fastrnn.to_torch(m1)
    assert sorted(md.keys()) == ["embedding", "readout", "rnn"]
    _same_weights(_state(net.rnn), _state(md["rnn"]))
    back = fastrnn.from_torch(md, head=head)
    _same_weights(m1.state_dict(), back.state_dict())


def test_state_dict_without_torch(tmp_path):
    """Every kind converts from a plain state_dict of numpy arrays (no torch involved)."""
    cases = [fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, seed=1),
             fastrnn.LSTM(3, 4, bias=False, seed=1, dtype=np.float64),
             fastrnn.RNN(3, 4, nonlinearity="relu", seed=1),
             fastrnn.LSTMCell(3, 4, seed=1), fastrnn.RNNCell(3, 4, seed=1),
             fastrnn.GRUCell(3, 4, bias=False, seed=1), fastrnn.Linear(3, 4, seed=1)]
    for module in cases:
        kw = {"nonlinearity": "relu"} if getattr(module, "nonlinearity", "") == "relu" else {}
        path = tmp_path / "w.npz"
        np.savez(path, **module.state_dict())
        for src in (module.state_dict(), path):
            got = fastrnn.from_torch(src, **kw)
            assert type(got) is type(module) and repr(got) == repr(module)
            _same_weights(module.state_dict(), got.state_dict())
    emb = fastrnn.Embedding(7, 3, seed=1)
    got = fastrnn.from_torch(emb.state_dict(), kind="embedding")
    assert type(got) is fastrnn.Embedding
    _same_weights(emb.state_dict(), got.state_dict())
    g = fastrnn.from_torch(fastrnn.GRU(3, 4, seed=0).state_dict(), batch_first=True)
    assert g.batch_first


def test_sequence_model_state_dict_without_torch(tmp_path):
    m = fastrnn.SequenceModel.build("gru", vocab_size=9, embedding_dim=3, hidden_size=5,
                                    output_size=4, num_layers=2, head="one_to_many", seed=0)
    got = fastrnn.from_torch(m.state_dict(), head="one_to_many")
    assert type(got.head) is fastrnn.OneToMany and got.embedding is not None
    _same_weights(m.state_dict(), got.state_dict())
    t = np.arange(12).reshape(2, 6) % 9
    assert np.array_equal(got.forward(t), m.forward(t))


def test_cli_import_torch(tmp_path, capsys):
    m = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=5, output_size=2,
                                    head="many_to_one", bidirectional=True, seed=0)
    sd = {k.replace("head.readout.", "fc."): v for k, v in m.state_dict().items()}
    src, out = tmp_path / "weights.npz", tmp_path / "model.npz"
    np.savez(src, **sd)
    assert main(["import-torch", str(src), "--head", "many_to_one", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    got = fastrnn.load(out)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    assert np.array_equal(got.forward(x), m.forward(x))


@pytest.mark.parametrize("arrays,needle", [
    ({"rnn.weight_ih_l0": np.zeros((8, 3), np.float32),
      "rnn.weight_hh_l0": np.zeros((8, 2), np.float32),
      "conv.weight": np.zeros((3, 3, 3), np.float32)}, "conv.weight"),
    ({"rnn.weight_ih_l0": np.zeros((8, 3), np.float32),
      "rnn.weight_hh_l0": np.zeros((8, 2), np.float32)}, "holds a LSTM alone"),
    ({"a": np.zeros(3)}, "'weight'"),
])
def test_cli_import_torch_refuses(tmp_path, capsys, arrays, needle):
    src = tmp_path / "weights.npz"
    np.savez(src, **arrays)
    assert main(["import-torch", str(src), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "m.npz").exists()


def test_cli_import_torch_bad_files(tmp_path, capsys):
    out = str(tmp_path / "m.npz")
    assert main(["import-torch", str(tmp_path / "missing.npz"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    assert main(["import-torch", str(junk), "--out", out]) == 2
    assert "neither an .npz state_dict" in capsys.readouterr().err
    assert main(["import-torch", str(junk), "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err


# -- refusals ------------------------------------------------------------------------------

def test_lstm_proj_size_converts_both_ways(torch):
    """PyTorch's LSTMP, as a module and as a state_dict of arrays (parity of every
    configuration: tests/test_variants.py)."""
    lstm = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    for source in (lstm, {k: v.detach().numpy() for k, v in lstm.state_dict().items()}):
        layer = fastrnn.from_torch(source)
        assert (layer.hidden_size, layer.proj_size, layer.num_layers) == (4, 2, 2)
        assert layer.bidirectional
    back = fastrnn.to_torch(layer)
    assert back.proj_size == 2
    for name, p in lstm.state_dict().items():
        assert torch.equal(back.state_dict()[name], p)


def test_refuses_a_projection_of_the_wrong_shape():
    arrays = fastrnn.LSTM(3, 4, proj_size=2, seed=0).state_dict()
    arrays["weight_hr_l0"] = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="weight_hr_l0"):
        fastrnn.from_torch(arrays)


def test_refuses_unknown_modules(torch):
    for m in (torch.nn.Conv1d(2, 3, 3), torch.nn.Sequential(torch.nn.Linear(2, 2)),
              torch.nn.MultiheadAttention(8, 2)):
        with pytest.raises(TypeError, match=type(m).__name__):
            fastrnn.from_torch(m)

    class MyLSTM(torch.nn.LSTM):
        pass

    with pytest.raises(TypeError, match="MyLSTM.*subclass"):
        fastrnn.from_torch(MyLSTM(3, 4))
    with pytest.raises(ValueError, match="ModuleDict"):
        fastrnn.from_torch(torch.nn.ModuleDict({"rnn": torch.nn.GRU(2, 3),
                                                "other": torch.nn.Linear(3, 3)}))


def test_refuses_embedding_max_norm_and_half(torch):
    with pytest.raises(ValueError, match="max_norm"):
        fastrnn.from_torch(torch.nn.Embedding(5, 3, max_norm=1.0))
    with pytest.raises(TypeError, match="float16"):
        fastrnn.from_torch(torch.nn.GRU(3, 4).half())
    got = fastrnn.from_torch(torch.nn.GRU(3, 4).half(), dtype=np.float32)
    assert got.dtype == np.float32


def test_refuses_nonlinearity_mismatch(torch):
    with pytest.raises(ValueError, match="nonlinearity='relu'.*'tanh'"):
        fastrnn.from_torch(torch.nn.RNN(3, 4), nonlinearity="relu")
    with pytest.raises(ValueError, match="nonlinearity='tanh'.*'relu'"):
        fastrnn.from_torch(torch.nn.RNNCell(3, 4, nonlinearity="relu"), nonlinearity="tanh")
    with pytest.raises(ValueError, match="nonlinearity= applies to an RNN"):
        fastrnn.from_torch(torch.nn.LSTM(3, 4), nonlinearity="relu")
    assert fastrnn.from_torch(torch.nn.RNN(3, 4, nonlinearity="relu"),
                              nonlinearity="relu").nonlinearity == "relu"


def test_refuses_in_state_dicts():
    with pytest.raises(ValueError, match="nonlinearity= applies to an RNN"):
        fastrnn.from_torch(fastrnn.GRU(2, 3, seed=0).state_dict(), nonlinearity="relu")
    with pytest.raises(ValueError, match="kind='linear' or kind='embedding'"):
        fastrnn.from_torch({"weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match="G = 1"):
        fastrnn.from_torch({"weight_ih_l0": np.zeros((10, 2), np.float32),
                            "weight_hh_l0": np.zeros((10, 5), np.float32)})
    with pytest.raises(ValueError, match="weight_ih_l1"):       # shape mismatch named
        sd = fastrnn.LSTM(2, 3, num_layers=2, seed=0).state_dict()
        sd["weight_ih_l1"] = np.zeros((12, 7), np.float32)
        fastrnn.from_torch(sd)
    with pytest.raises(ValueError, match="exactly one recurrent layer"):
        a, b = fastrnn.GRU(2, 3, seed=0).state_dict(), fastrnn.GRU(2, 3, seed=1).state_dict()
        fastrnn.from_torch({**{"enc." + k: v for k, v in a.items()},
                            **{"dec." + k: v for k, v in b.items()}})
    with pytest.raises(TypeError, match="dtype"):
        fastrnn.from_torch({k: v.astype(np.float16) for k, v in
                            fastrnn.GRU(2, 3, seed=0).state_dict().items()})
    with pytest.raises(TypeError, match="from_torch takes a torch.nn module"):
        fastrnn.from_torch([1, 2, 3])
    with pytest.raises(TypeError, match="to_torch takes"):
        fastrnn.to_torch(object())
