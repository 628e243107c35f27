"""Tests of the sequence heads through a whole SequenceModel: forward outputs and every
gradient against PyTorch modules with the same weights (float64, 1e-10), finite
differences of ``forward_train``'s backward, and ``sample_logits``.

Tests taking the ``torch`` fixture (tests/conftest.py) are skipped without PyTorch, unless
FASTRNN_REQUIRE_TORCH=1, when a missing torch fails them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn.heads import ManyToMany, ManyToOne, OneToMany, sample_logits
from fastrnn.losses import softmax
from _tools import FD_TOL, PARITY_TOL, central_differences

N, T, I, H, C = 4, 5, 3, 4, 3
LENGTHS = np.array([3, 5, 1, 4])          # unsorted, min 1, max T
TOL = PARITY_TOL[np.float64]
HEADS = ["many_to_many", "many_to_one", "one_to_many"]
HEAD_CLASSES = {"many_to_many": ManyToMany, "many_to_one": ManyToOne,
                "one_to_many": OneToMany}


def build(cell, head, num_layers=1, bidirectional=False, vocab=None, seed=0, size=None):
    I_, H_, C_ = size or (I, H, C)
    kwargs = dict(input_size=I_) if vocab is None else dict(vocab_size=vocab,
                                                             embedding_dim=I_)
    return fastrnn.SequenceModel.build(cell, hidden_size=H_, output_size=C_, head=head,
                                       num_layers=num_layers, bidirectional=bidirectional,
                                       dtype=np.float64, seed=seed, **kwargs)


class TorchTwin:
    """The PyTorch network a SequenceModel stands for, with the model's weights."""

    def __init__(self, torch, model):
        self.torch, self.model = torch, model
        r = model.rnn
        cls = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[r.mode]
        extra = {"nonlinearity": r.nonlinearity} if r.mode == "RNN" else {}
        self.rnn = cls(r.input_size, r.hidden_size, num_layers=r.num_layers,
                       bidirectional=r.bidirectional, batch_first=True,
                       **extra).double()
        lin = model.head.readout
        self.readout = torch.nn.Linear(lin.in_features, lin.out_features).double()
        self.embedding = None
        if model.embedding is not None:
            e = model.embedding
            self.embedding = torch.nn.Embedding(e.num_embeddings, e.embedding_dim).double()
        sd = model.state_dict()
        for prefix, module in (("rnn.", self.rnn), ("head.readout.", self.readout),
                               ("embedding.", self.embedding)):
            if module is not None:
                module.load_state_dict({k[len(prefix):]: torch.tensor(v)
                                        for k, v in sd.items() if k.startswith(prefix)})

    def named_parameters(self):
        """(fastrnn name, torch parameter) pairs."""
        for prefix, module in (("rnn.", self.rnn), ("head.readout.", self.readout),
                               ("embedding.", self.embedding)):
            if module is not None:
                for name, p in module.named_parameters():
                    yield prefix + name, p

    def forward(self, x, lengths=None, state0=None):
        torch = self.torch
        nn = torch.nn.utils.rnn
        xt = torch.tensor(x)
        if self.embedding is not None:
            xt = self.embedding(xt)
        seq = xt if lengths is None else nn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        y, state = self.rnn(seq, state0)
        if lengths is not None:
            y, _ = nn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        if self.model.head.per_step:
            return self.readout(y)
        h_n = state[0] if isinstance(state, tuple) else state
        feat = (torch.cat([h_n[-2], h_n[-1]], dim=1) if self.rnn.bidirectional
                else h_n[-1])
        return self.readout(feat)


def inputs(model, seed=1, n=N, t=T):
    rng = np.random.default_rng(seed)
    if model.embedding is not None:
        return rng.integers(0, model.embedding.num_embeddings, (n, t))
    return rng.standard_normal((n, t, model.rnn.input_size))


def out_shape(model, n=N, t=T):
    C_ = model.head.out_features
    return (n, t, C_) if model.head.per_step else (n, C_)


# --------------------------------------------------------------------- PyTorch parity


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, False),
                                                      (2, True)],
                         ids=["L1", "L1-bi", "L2", "L2-bi"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("head", HEADS)
def test_head_matches_torch(torch, head, cell, num_layers, bidirectional, lengths):
    model = build(cell, head, num_layers, bidirectional, seed=3)
    assert type(model.head) is HEAD_CLASSES[head]
    twin = TorchTwin(torch, model)
    x = inputs(model)
    R = np.random.default_rng(2).standard_normal(out_shape(model))

    out_t = twin.forward(x, lengths)
    out_t.backward(torch.tensor(R))
    model.zero_grad()
    out, state, backward = model.forward_train(x, lengths)
    assert out.shape == out_shape(model)
    assert_allclose(out, out_t.detach().numpy(), **TOL)
    assert_allclose(model.forward(x, lengths), out, **TOL)
    backward(R)
    names = [n for n, _ in model.named_parameters()]
    grads = dict(model.named_parameters())
    checked = []
    for name, p in twin.named_parameters():
        assert_allclose(grads[name].grad, p.grad.numpy(), err_msg=name, **TOL)
        checked.append(name)
    assert sorted(checked) == sorted(names)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_head_with_initial_state_matches_torch(torch, head, cell):
    """The gradient of the initial state (``backward``'s return value) as well."""
    model = build(cell, head, num_layers=2, bidirectional=True, seed=4)
    twin = TorchTwin(torch, model)
    x = inputs(model, seed=5)
    rng = np.random.default_rng(6)
    h0 = rng.standard_normal((4, N, H))
    c0 = rng.standard_normal((4, N, H))
    R = rng.standard_normal(out_shape(model))
    th0 = torch.tensor(h0, requires_grad=True)
    tc0 = torch.tensor(c0, requires_grad=True)
    out_t = twin.forward(x, LENGTHS, (th0, tc0) if cell == "lstm" else th0)
    out_t.backward(torch.tensor(R))
    state0 = (h0, c0) if cell == "lstm" else h0
    out, _, backward = model.forward_train(x, LENGTHS, state0)
    assert_allclose(out, out_t.detach().numpy(), **TOL)
    dstate0 = backward(R)
    if cell == "lstm":
        assert_allclose(dstate0[0], th0.grad.numpy(), **TOL)
        assert_allclose(dstate0[1], tc0.grad.numpy(), **TOL)
    else:
        assert_allclose(dstate0, th0.grad.numpy(), **TOL)
    for name, p in twin.named_parameters():
        assert_allclose(dict(model.named_parameters())[name].grad, p.grad.numpy(),
                        err_msg=name, **TOL)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("head", HEADS)
def test_token_model_matches_torch(torch, head, lengths):
    model = build("gru", head, vocab=7, seed=8)
    twin = TorchTwin(torch, model)
    x = inputs(model, seed=9)
    R = np.random.default_rng(10).standard_normal(out_shape(model))
    out_t = twin.forward(x, lengths)
    out_t.backward(torch.tensor(R))
    out, _, backward = model.forward_train(x, lengths)
    assert_allclose(out, out_t.detach().numpy(), **TOL)
    backward(R)
    grads = dict(model.named_parameters())
    assert "embedding.weight" in grads
    for name, p in twin.named_parameters():
        assert_allclose(grads[name].grad, p.grad.numpy(), err_msg=name, **TOL)


def test_many_to_one_reads_the_last_valid_step():
    """Without PyTorch: the features are h_n of the top layer (both directions)."""
    model = build("gru", "many_to_one", num_layers=2, bidirectional=True, seed=1)
    x = inputs(model)
    _, h_n = model.rnn(np.swapaxes(x, 0, 1), None, LENGTHS)
    feat = np.concatenate([h_n[-2], h_n[-1]], axis=1)
    assert_allclose(model.forward(x, LENGTHS), model.head.readout(feat), rtol=1e-14)
    y, _ = model.rnn(np.swapaxes(x, 0, 1), None, LENGTHS)
    for b, L in enumerate(LENGTHS):           # forward half: the output at the last step
        assert_allclose(feat[b, :H], y[L - 1, b, :H], rtol=1e-14)
        assert_allclose(feat[b, H:], y[0, b, H:], rtol=1e-14)


def test_many_to_one_backward_hands_back_zeros_without_memory():
    """The readout reads the final state only: ``dy`` (and an LSTM's ``dc_n``) are zeros
    of their shapes that hold no memory; ``lengths`` is taken and not read."""
    head = ManyToOne(2 * H, C, num_directions=2, seed=0)
    rng = np.random.default_rng(3)
    y = rng.standard_normal((T, N, 2 * H))
    h_n, c_n = rng.standard_normal((2, 4, N, H))
    for state in (h_n, (h_n, c_n)):
        out, backward = head.forward_train(y, state, LENGTHS)
        np.testing.assert_array_equal(out, head.forward_train(y, state)[0])
        np.testing.assert_array_equal(out, head(y, state, LENGTHS))
        dy, dstate = backward(np.ones_like(out))
        zeros = [dy] + ([dstate[1]] if isinstance(state, tuple) else [])
        for z, like in zip(zeros, (y, c_n)):
            assert z.shape == like.shape and z.dtype == like.dtype
            assert not any(z.strides) and not z.any()
        dh = dstate[0] if isinstance(state, tuple) else dstate
        assert not dh[:2].any() and dh[2:].any()


# ------------------------------------------------------------------ finite differences


def fd_check(model, x, lengths, state0, R, eps=1e-6):
    def loss():
        out, _, _ = model.forward_train(x, lengths, state0)
        return float(np.sum(out * R))

    model.zero_grad()
    _, _, backward = model.forward_train(x, lengths, state0)
    dstate0 = backward(R)
    arrays = [(name, p.data, p.grad) for name, p in model.named_parameters()]
    if isinstance(state0, tuple):
        arrays += [("h0", state0[0], dstate0[0]), ("c0", state0[1], dstate0[1])]
    else:
        arrays.append(("h0", state0, dstate0))
    for name, a, analytic in arrays:
        assert_allclose(analytic, central_differences(loss, a, eps), **FD_TOL, err_msg=name)


@pytest.mark.parametrize("lengths", [None, [2, 3, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True),
                                                ("rnn", True), ("lstm", True)],
                         ids=["lstm", "gru-bi", "rnn-bi", "lstm-bi"])
@pytest.mark.parametrize("head", HEADS)
def test_forward_train_finite_differences(head, cell, bidirectional, lengths):
    n, t = 3, 3
    model = build(cell, head, num_layers=2, bidirectional=bidirectional, seed=11,
                  size=(2, 2, 2))
    rng = np.random.default_rng(12)
    x = rng.standard_normal((n, t, 2))
    LD = 2 * model.rnn.num_directions
    h0 = rng.standard_normal((LD, n, 2))
    state0 = (h0, rng.standard_normal((LD, n, 2))) if cell == "lstm" else h0
    R = rng.standard_normal(out_shape(model, n, t))
    lengths = None if lengths is None else np.array(lengths)
    fd_check(model, x, lengths, state0, R)


def test_token_model_finite_differences():
    model = build("lstm", "many_to_many", vocab=4, seed=13, size=(2, 2, 3))
    rng = np.random.default_rng(14)
    x = rng.integers(0, 4, (2, 3))
    h0 = rng.standard_normal((1, 2, 2))
    fd_check(model, x, np.array([3, 2]), (h0, np.zeros_like(h0)),
             rng.standard_normal((2, 3, 3)))


# ----------------------------------------------------------------------- construction


def test_head_validation():
    rnn = fastrnn.GRU(3, 4, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match=r"head.in_features must equal .*=8, got 4"):
        fastrnn.SequenceModel(rnn, ManyToMany(4, 2))
    with pytest.raises(ValueError, match=r"head.num_directions must equal the rnn's \(2\)"):
        fastrnn.SequenceModel(rnn, ManyToOne(8, 2))
    with pytest.raises(ValueError, match="num_directions must be 1 or 2, got 3"):
        ManyToOne(8, 2, num_directions=3)
    with pytest.raises(TypeError, match="head must be a fastrnn head"):
        fastrnn.SequenceModel(rnn, fastrnn.Linear(8, 2))
    with pytest.raises(TypeError, match="every part must have the rnn's dtype"):
        fastrnn.SequenceModel(rnn, ManyToMany(8, 2, dtype=np.float64))
    head = ManyToOne(8, 5, num_directions=2)
    assert head.config() == {"type": "ManyToOne", "in_features": 8, "out_features": 5,
                             "num_directions": 2}
    assert not head.per_step and ManyToMany(3, 2).per_step and OneToMany(3, 2).per_step
    assert repr(ManyToMany(3, 2)) == "ManyToMany(3, 2)"
    assert [n for n, _ in head.named_parameters()] == ["readout.weight", "readout.bias"]


# ----------------------------------------------------------------------- sample_logits


def test_sample_logits_temperature_zero_and_top1_are_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 7))
    best = logits.argmax(axis=1)
    np.testing.assert_array_equal(sample_logits(logits, rng, temperature=0), best)
    np.testing.assert_array_equal(sample_logits(logits, rng, temperature=0, top_k=3), best)
    for temperature in (0.1, 1.0, 10.0):
        got = sample_logits(logits, rng, temperature=temperature, top_k=1)
        np.testing.assert_array_equal(got, best)
    # a very low temperature concentrates on the argmax too
    np.testing.assert_array_equal(sample_logits(logits * 1e3, rng, temperature=1e-3), best)


def test_sample_logits_is_reproducible_with_a_seed():
    logits = np.random.default_rng(1).standard_normal((200, 6))
    a = sample_logits(logits, np.random.default_rng(42), temperature=1.5, top_k=4)
    b = sample_logits(logits, np.random.default_rng(42), temperature=1.5, top_k=4)
    c = sample_logits(logits, np.random.default_rng(43), temperature=1.5, top_k=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (200,) and a.dtype.kind == "i"
    assert a.min() >= 0 and a.max() < 6
    # one generator gives a stream of different draws
    rng = np.random.default_rng(42)
    assert not np.array_equal(sample_logits(logits, rng), sample_logits(logits, rng))


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.5, None), (2.0, None),
                                               (1.0, 3), (0.7, 2)])
def test_sample_logits_frequencies_match_softmax(temperature, top_k):
    draws = 100_000
    logits = np.array([1.0, -0.5, 2.0, 0.3, -2.0, 0.9])
    z = logits / temperature
    if top_k is not None:
        z = np.where(z < np.sort(z)[-top_k], -np.inf, z)
    p = softmax(z)
    samples = sample_logits(np.tile(logits, (draws, 1)), np.random.default_rng(7),
                            temperature=temperature, top_k=top_k)
    freq = np.bincount(samples, minlength=6) / draws
    sigma = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-12), (freq, p)
    if top_k is not None:
        assert np.all(freq[p == 0] == 0)              # never outside the top k


def test_sample_logits_float32_and_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, -np.inf]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = sample_logits(logits, np.random.default_rng(0), temperature=1.0)
    np.testing.assert_array_equal(got, [0, 1])
