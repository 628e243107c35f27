"""Variational dropout (Gal & Ghahramani 2016): ``input_dropout`` on every layer's input
and ``recurrent_dropout`` on h entering the recurrent product, one mask per sequence, the
same at every step, in training only.  Against the NumPy reference given the masks the
layer drew (float64 to 1e-10), against central differences with the masks held fixed,
and seeded like the rest of fastrnn."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastrnn
from fastrnn import _engine
from fastrnn import reference as ref
from _tools import FD_TOL, central_differences
from _tools import PARITY_TOL as TOL

T, B, I, H = 6, 5, 3, 4
SORTED_LENGTHS = np.array([6, 5, 3, 2, 1])     # longest first: the kernels' own row order
P_IN, P_REC, SEED = 0.2, 0.3, 5


def _masks(layer, dtype):
    """The masks ``layer.forward_train`` draws first (its generator, seeded as the layer
    seeds it, in the layer's order): per layer its input mask, then per direction its
    recurrent mask."""
    rng = np.random.default_rng(np.random.SeedSequence(SEED).spawn(1)[0])
    D, P = layer.num_directions, layer.state_size
    inputs, recurrent = [], []
    for k in range(layer.num_layers):
        width = layer.input_size if k == 0 else D * P
        m = _engine.dropout_mask(rng, (B, width), layer.input_dropout, dtype) \
            if layer.input_dropout else None
        inputs.append(None if m is None else np.broadcast_to(m, (T, B, width)))
        recurrent += [_engine.dropout_mask(rng, (B, P), layer.recurrent_dropout, dtype)
                      for _ in range(D)]
    return inputs, recurrent


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode,options", [("RNN", {}), ("LSTM", {}), ("GRU", {}),
                                          ("LSTM", {"proj_size": 2})],
                         ids=["rnn", "lstm", "gru", "lstm_proj"])
def test_masks_match_the_reference(mode, options, bidirectional, dtype):
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=bidirectional,
                                   recurrent_dropout=P_REC, input_dropout=P_IN, dtype=dtype,
                                   seed=SEED, **options)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    inputs, recurrent = _masks(layer, np.float64)
    y, _, backward = layer.forward_train(x, lengths=SORTED_LENGTHS)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_r, _, _, cache = ref.stack_forward(mode, x.astype(np.float64), params, num_layers=2,
                                         bidirectional=bidirectional, lengths=SORTED_LENGTHS,
                                         input_masks=inputs, recurrent_masks=recurrent)
    assert_allclose(y, y_r, **TOL[dtype])
    dy = np.random.default_rng(1).standard_normal(y.shape)
    layer.zero_grad()
    dx, _ = backward(dy.astype(dtype))
    dx_r, _, _, grads = ref.stack_backward(dy, None, None, cache)
    assert_allclose(dx, dx_r, **TOL[dtype])
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads[name], err_msg=name, **TOL[dtype])


def test_inference_has_no_dropout():
    plain = fastrnn.LSTM(I, H, num_layers=2, seed=1)
    regular = fastrnn.LSTM(I, H, num_layers=2, recurrent_dropout=0.5, input_dropout=0.5,
                           seed=1)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    assert np.array_equal(regular(x)[0], plain(x)[0])
    assert np.array_equal(regular.forward_states(x).y, plain(x)[0])


def test_masks_are_seeded_and_per_sequence():
    def run(seed):
        layer = fastrnn.GRU(I, H, recurrent_dropout=0.5, input_dropout=0.5, seed=seed)
        x = np.ones((T, B, I), np.float32)
        return layer.forward_train(x)[0]

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    # one input mask per sequence: with every step's input equal, a row whose input is
    # dropped entirely (all features) runs as with zero input at every step
    layer = fastrnn.RNN(1, H, input_dropout=0.5, seed=0, dtype=np.float64)
    y = layer.forward_train(np.ones((T, 64, 1)))[0]
    zero = layer(np.zeros((T, 64, 1)))[0]
    dropped = np.all(np.isclose(y, zero), axis=(0, 2))
    assert 10 < dropped.sum() < 54                    # about half the rows, all steps


def test_config_and_files_keep_the_regularisers(tmp_path):
    model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=8, output_size=3,
                                        recurrent_dropout=0.25, input_dropout=0.1, seed=0)
    fastrnn.save(model, tmp_path / "m.npz")
    loaded = fastrnn.load(tmp_path / "m.npz")
    assert (loaded.rnn.recurrent_dropout, loaded.rnn.input_dropout) == (0.25, 0.1)
    assert "recurrent_dropout" not in fastrnn.LSTM(2, 8).config()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"recurrent_dropout": 1.0}, ValueError, "recurrent_dropout"),
    ({"recurrent_dropout": -0.1}, ValueError, "recurrent_dropout"),
    ({"input_dropout": "0.5"}, TypeError, "input_dropout"),
    ({"recurrent_dropout": 0.2, "reset_after": False}, ValueError, "reset_after=False"),
])
def test_bad_regularisers(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastrnn.GRU(I, H, **kwargs)


# ------------------------------------------------------------------------- zoneout

Z_H, Z_C = 0.3, 0.5


def _zone_arrays(layer, dtype, train=True):
    """The zoneout arrays ``layer.forward_train`` draws (its generator, seeded as the layer
    seeds it), per layer-direction, or its rates at inference."""
    rng = np.random.default_rng(np.random.SeedSequence(SEED).spawn(1)[0])
    lstm = layer.kind.has_cell
    return [_engine.zoneout_arrays(rng, train, T, B, (layer.state_size, H),
                                   (layer.zoneout, layer.zoneout_cell), lstm, dtype)
            for _ in range(layer.num_layers * layer.num_directions)]


def _broadcast(zones):
    """Rates (1, B, .) as the reference reads them: one row per step."""
    return [tuple(None if z is None else np.broadcast_to(z, (T,) + z.shape[1:]) for z in pair)
            for pair in zones]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode,options", [("RNN", {}), ("LSTM", {}), ("GRU", {}),
                                          ("LSTM", {"proj_size": 2}),
                                          ("GRU", {"reset_after": False})],
                         ids=["rnn", "lstm", "gru", "lstm_proj", "gru_reset_before"])
def test_zoneout_matches_the_reference(mode, options, bidirectional, dtype):
    layer = getattr(fastrnn, mode)(I, H, num_layers=2, bidirectional=bidirectional,
                                   zoneout=Z_H, dtype=dtype, seed=SEED, **options)
    if layer.kind.has_cell:
        layer.zoneout_cell = Z_C
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    reference = dict(num_layers=2, bidirectional=bidirectional, lengths=SORTED_LENGTHS,
                     reset_after=options.get("reset_after", True))
    zones = _zone_arrays(layer, np.float64)
    y, _, backward = layer.forward_train(x, lengths=SORTED_LENGTHS)
    y_r, _, _, cache = ref.stack_forward(mode, x.astype(np.float64), params,
                                         zoneout=zones, **reference)
    assert_allclose(y, y_r, **TOL[dtype])
    dy = np.random.default_rng(1).standard_normal(y.shape)
    layer.zero_grad()
    dx, _ = backward(dy.astype(dtype))
    dx_r, _, _, grads = ref.stack_backward(dy, None, None, cache)
    assert_allclose(dx, dx_r, **TOL[dtype])
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, grads[name], err_msg=name, **TOL[dtype])
    # inference: the expectation z * h_prev + (1 - z) * h_new at every step
    y_inf, state = layer(x, lengths=SORTED_LENGTHS)
    y_e, h_e, c_e, _ = ref.stack_forward(mode, x.astype(np.float64), params,
                                         zoneout=_broadcast(_zone_arrays(layer, np.float64,
                                                                         False)),
                                         **reference)
    assert_allclose(y_inf, y_e, **TOL[dtype])
    assert_allclose(state[1] if layer.kind.has_cell else state, c_e if layer.kind.has_cell
                    else h_e, **TOL[dtype])


# the regularisers of the finite-difference checks, and the generator's seed of the data
FD_CASES = [pytest.param({"recurrent_dropout": P_REC, "input_dropout": P_IN}, 2,
                         id="dropout"),
            pytest.param({"zoneout": Z_H, "recurrent_dropout": P_REC}, 3, id="zoneout")]


@pytest.mark.parametrize("options,data_seed", FD_CASES)
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU", "FastGRNN"])
def test_gradients_against_central_differences(mode, options, data_seed):
    """With the masks held fixed (the layer's generator restored before every pass)."""
    layer = getattr(fastrnn, mode)(I, 3, num_layers=2, bidirectional=True, dtype=np.float64,
                                   seed=SEED, **options)
    rng = np.random.default_rng(data_seed)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([2, 6, 1, 4, 6])
    R = rng.standard_normal((T, B, 6))
    start = layer._dropout_rng.bit_generator.state

    def run():
        layer._dropout_rng.bit_generator.state = start
        return layer.forward_train(x, lengths=lengths)

    def loss():
        return float(np.sum(run()[0] * R))

    layer.zero_grad()
    dx, _ = run()[2](R)
    assert_allclose(dx, central_differences(loss, x), **FD_TOL)
    for name, p in layer.named_parameters():
        assert_allclose(p.grad, central_differences(loss, p.data), err_msg=name, **FD_TOL)


def test_zoneout_one_keeps_the_initial_state():
    """zoneout=1 in training: every unit keeps its previous value, so h stays h0."""
    layer = fastrnn.GRU(I, H, zoneout=0.999999, dtype=np.float64, seed=0)
    h0 = np.random.default_rng(0).standard_normal((1, B, H))
    y, h_n, _ = layer.forward_train(np.ones((T, B, I)), h0)
    assert_allclose(h_n, h0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="zoneout_cell"):
        fastrnn.GRU(I, H, zoneout_cell=0.1)
    with pytest.raises(ValueError, match="zoneout"):
        fastrnn.LSTM(I, H, zoneout=1.5)
    config = fastrnn.LSTM(I, H, zoneout=0.1, zoneout_cell=0.5).config()
    assert (config["zoneout"], config["zoneout_cell"]) == (0.1, 0.5)


@pytest.mark.parametrize("options", [{"zoneout": 0.5}, {"recurrent_dropout": 0.5}],
                         ids=["zoneout", "recurrent_dropout"])
def test_one_row_lstm_keeps_its_regularisers(options):
    """A float32 LSTM over one row (H a multiple of 16, enough steps: the fused one-row
    loop's case) applies zoneout and recurrent dropout as any other: the fused loop has
    neither, so it is not used."""
    layer = fastrnn.LSTM(3, 16, seed=0, **options)
    x = np.random.default_rng(0).standard_normal((10, 1, 3)).astype(np.float32)
    pair = np.concatenate([x, x], axis=1)
    assert_allclose(layer(x[:, 0])[0], layer(pair)[0][:, 0], rtol=1e-5, atol=1e-6)
    start = layer._dropout_rng.bit_generator.state
    y1, _, backward = layer.forward_train(x)
    layer.zero_grad()
    backward(np.ones_like(y1))
    one = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer._dropout_rng.bit_generator.state = start
    ref64 = fastrnn.LSTM(3, 16, dtype=np.float64, seed=0, **options)
    ref64.load_state_dict({k: v.astype(np.float64) for k, v in layer.state_dict().items()})
    ref64._dropout_rng.bit_generator.state = start
    y2, _, backward64 = ref64.forward_train(x.astype(np.float64))   # no fused loop in f64
    ref64.zero_grad()
    backward64(np.ones_like(y2))
    assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
    for name, p in ref64.named_parameters():
        assert_allclose(one[name], p.grad, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_stepper_streams_zoneout_as_the_whole_sequence(cell):
    model = fastrnn.SequenceModel.build(cell, input_size=I, hidden_size=H, output_size=2,
                                        num_layers=2, zoneout=0.5, seed=0)
    x = np.random.default_rng(4).standard_normal((B, T, I)).astype(np.float32)
    stepper = model.stepper(batch_size=B)
    out = np.stack([stepper.step(x[:, t]).copy() for t in range(T)], axis=1)
    assert_allclose(out, model.forward(x), rtol=1e-5, atol=1e-6)


def test_rates_are_checked_wherever_they_are_set():
    layer = fastrnn.LSTM(I, H, seed=0)
    for name in ("recurrent_dropout", "input_dropout", "zoneout", "zoneout_cell"):
        with pytest.raises(ValueError, match=name):
            setattr(layer, name, 1.5)
        setattr(layer, name, 0.25)
        assert getattr(layer, name) == 0.25
    with pytest.raises(ValueError, match="zoneout_cell"):
        fastrnn.GRU(I, H).zoneout_cell = 0.1
    with pytest.raises(ValueError, match="reset_after=False"):
        fastrnn.GRU(I, H, reset_after=False).recurrent_dropout = 0.1
