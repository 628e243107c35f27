"""The cell-kind records agree with the layers and cells built from them."""

import doctest
import itertools

import numpy as np
import pytest

import fastrnn
from fastrnn import _core, _kinds, reference
from fastrnn._kinds import ALL_KINDS, KINDS, kind_of, parameter_shapes


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("layers,bidirectional,bias",
                         list(itertools.product([1, 3], [False, True], [False, True])))
def test_shapes_and_counts_are_the_layers(name, layers, bidirectional, bias):
    kind = KINDS[name]
    layer = getattr(fastrnn, name)(5, 7, num_layers=layers, bidirectional=bidirectional,
                                   bias=bias)
    want = [(n, p.shape) for n, p in layer.named_parameters()]
    assert parameter_shapes(kind, 5, 7, layers, bidirectional, bias) == want
    assert kind.parameter_count(5, 7, layers, bidirectional, bias) == sum(
        p.data.size for p in layer.parameters())
    assert layer.kind is kind
    if kind.in_torch:                       # the kinds with a one-step cell
        assert getattr(fastrnn, kind.torch_cell).kind is kind


def test_onnx_rows_are_a_permutation_of_the_gate_blocks():
    H = 3
    for kind in KINDS.values():
        if kind.onnx_op is None:
            with pytest.raises(ValueError, match="ONNX has no operator"):
                kind.onnx_rows(H)
            continue
        rows = kind.onnx_rows(H)
        assert sorted(rows) == list(range(kind.gates * H))
        assert [rows[b * H] // H for b in range(kind.gates)] == list(kind.onnx_blocks)
    lstm = KINDS["LSTM"]
    assert [lstm.gate_names[b] for b in lstm.onnx_blocks] == list("iofg")   # ONNX: i o f c


def test_kind_of_takes_any_case_and_refuses_others():
    assert kind_of("gru") is KINDS["GRU"]
    with pytest.raises(ValueError, match="unknown cell kind 'lstmp'"):
        kind_of("lstmp")


def test_kernel_ids_are_distinct_and_the_cells_use_them():
    assert sorted(k.kernel_id for k in KINDS.values()) == list(range(len(KINDS)))
    x = np.ones((2, 3), np.float32)
    for kind in (k for k in KINDS.values() if k.in_torch):
        cell = getattr(fastrnn, kind.torch_cell)(3, 4, seed=0)
        state = cell(x)
        assert isinstance(state, tuple) == kind.has_cell


def test_docstring_examples():
    result = doctest.testmod(_kinds)
    assert result.attempted >= 2 and result.failed == 0


def test_the_reference_states_the_same_gate_counts():
    assert reference.__name__ == "fastrnn.reference"   # independent of _kinds on purpose
    assert reference.NUM_GATES == {name: kind.gates for name, kind in KINDS.items()
                                   if kind.in_torch}


def test_the_kernels_agree_with_the_records():
    """The kernels' numbers, gate counts and kept-apart products are the records'."""
    variant_names = {("GRU", "reset_before"): "GRU_RB", ("LSTM", "peephole"): "LSTM_P",
                     ("LSTM", "layer_norm"): "LSTM_LN"}
    for kind in ALL_KINDS:
        name = variant_names.get((kind.name, kind.variant), kind.name.upper())
        assert getattr(_core, "KIND_" + name) == kind.kernel_id
        assert _core.kind_gates(kind.kernel_id) == kind.gates
        row = _core.kind_row(kind.kernel_id)
        assert (row["gates"], row["biases"], row["product_apart"], row["keeps_candidate"],
                row["scalar_sums"] > 0, row["reset_before"], row["peephole"],
                row["layer_norm"], row["loop_sums"] - row["scalar_sums"]) == (
            kind.gates, len(kind.biases), kind.product_apart, kind.keeps_candidate,
            bool(kind.scalars), kind.reset_before, kind.peephole, kind.layer_norm,
            # the vectors the loop sums: peepholes, FastGRNN's two biases (added in its
            # step); the layer-normalised LSTM's recurrent gain (4 rows) and the cell's
            # gain and bias (the input normalisation's are summed after the loop)
            6 if kind.layer_norm else
            sum(rows for _, rows, _ in kind.vectors) + 2 * kind.keeps_candidate)
    with pytest.raises(ValueError, match="kind must be one of"):
        _core.kind_gates(len(ALL_KINDS))
    T, B, I, H = 2, 1, 3, 4
    z = np.zeros
    for kind in ALL_KINDS:
        GH = kind.gates * H
        b_hh = z(GH) if len(kind.biases) == 2 else z(0)       # FastRNN: one bias
        args = (z((T * B, I)), z((GH, I)), z((GH, H)), z(GH), b_hh, np.full(T, B, np.intc),
                np.array([0, B], np.intc), z((B, H)), z((T, B, H)), 0, z((T * B, GH)))
        state = dict(c=z((B, H))) if kind.has_cell else {}
        if kind.layer_norm:         # its own entries
            with pytest.raises(ValueError, match="runs through ln_forward"):
                _core.forward(kind.kernel_id, *args, **state, Gh=z((B, GH)))
            continue
        if kind.peephole:
            state["peephole"] = z(3 * H)
        if kind.scalars:
            state["scalars"] = z(len(kind.scalars))
            with pytest.raises(ValueError, match="scalars are given with a FastRNN"):
                _core.forward(kind.kernel_id, *args)
        else:
            with pytest.raises(ValueError, match="scalars are given with a FastRNN"):
                _core.forward(kind.kernel_id, *args, **state, **(
                    dict(Gh=z((B, GH))) if kind.keeps_product else {}), scalars=z(2))
        apart = dict(Gh=z((B, GH)))
        if kind.keeps_product:
            _core.forward(kind.kernel_id, *args, **state, **apart)
            with pytest.raises(ValueError, match="Gh is given with a GRU"):
                _core.forward(kind.kernel_id, *args, **state)
        else:
            _core.forward(kind.kernel_id, *args, **state)
            with pytest.raises(ValueError, match="Gh is given with a GRU"):
                _core.forward(kind.kernel_id, *args, **state, **apart)
