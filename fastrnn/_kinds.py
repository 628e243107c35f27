"""What each recurrent cell kind is, as data: one frozen record a kind.

Every table that once spelled a kind out -- its gate count, whether it carries a cell
state, the mode number of the one-step kernel, its parameter names and shapes, its ONNX
operator and gate order, its PyTorch classes -- reads it from here.  A new kind is one
record plus its kernels (``_core``) and its reference (``reference``).

>>> from fastrnn._kinds import KINDS
>>> lstm = KINDS["LSTM"]
>>> lstm.gates, lstm.has_cell, lstm.gate_names
(4, True, ('i', 'f', 'g', 'o'))
>>> lstm.parameter_count(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
9728
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Kind", "KINDS", "VARIANTS", "ALL_KINDS", "kind_of", "layer_kind",
           "parameter_shapes", "suffix"]


@dataclass(frozen=True)
class Kind:
    """One recurrent cell kind.

    ``gates`` G (the gate width is G*H); ``has_cell`` whether the state is ``(h, c)``;
    ``kernel_id`` its number in the kernels (``KIND_*`` of ``_core``, the ``mode`` of
    ``_step.step`` and ``_step.cell_call``); ``product_apart`` whether its step keeps the
    recurrent product h @ W_hh.T apart from the gates (a workspace ``Gh`` and a training
    cache ``Hn``), because a gate multiplies part of it (GRU);
    ``gate_names`` PyTorch's order of the stacked gate blocks; ``onnx_blocks`` the
    blocks of PyTorch's order that make ONNX's order (LSTM ``iofc``, GRU ``zrh``);
    ``torch_layer``/``torch_cell`` the ``torch.nn`` class names.

    A *variant* (``variant`` names the option that makes it) computes a kind's cell
    another way, with its own kernels: ``reset_before`` the GRU whose reset gate scales
    h before the recurrent product, ``vectors`` extra per-unit parameters of shape
    ``(rows, H)`` (the LSTM's peepholes; the layer-normalised LSTM's gains and biases)
    with the constant they start from (None: drawn as the weights are),
    ``layer_norm`` the LSTM of Ba et al. (2016), with its own kernels
    (``_core.ln_forward``, ``_core.ln_backward``), ``onnx_attributes`` what its ONNX node
    says.
    """

    name: str
    gates: int
    has_cell: bool
    kernel_id: int
    gate_names: tuple[str, ...]
    onnx_blocks: tuple[int, ...] | None     # None: no ONNX operator computes the kind
    product_apart: bool = False
    #: the names of its bias vectors (each of G*H values) and of its trainable scalars
    #: with their initial values (kept before a sigmoid, as FastRNN and FastGRNN do)
    biases: tuple[str, ...] = ("bias_ih", "bias_hh")
    scalars: tuple[tuple[str, float], ...] = ()
    in_torch: bool = True                   # torch.nn has the layer and the cell
    one_step: bool = True                   # _step has a one-step kernel for it
    keeps_candidate: bool = False           # training keeps h~ in a cache Ht (FastGRNN)
    variant: str = ""                       # "" for the kind itself
    reset_before: bool = False              # GRU: r scales h before the product
    #: (name, rows, initial value or None): (rows, H) parameters, in registration order
    vectors: tuple[tuple[str, int, float | None], ...] = ()
    layer_norm: bool = False
    onnx_attributes: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        """The kind and its variant, for messages ('GRU', 'GRU (reset_before)')."""
        return self.name + (f" ({self.variant})" if self.variant else "")

    @property
    def peephole(self) -> bool:
        """Whether the gates read the cell state (the LSTM's ``peephole=True``)."""
        return self.variant == "peephole"

    @property
    def keeps_product(self) -> bool:
        """Whether a step keeps a product apart: the workspace Gh and the training cache
        Hn (the GRU: W_hn h + b_hn; the GRU with r before the product: r * h)."""
        return self.product_apart or self.reset_before

    @property
    def torch_layer(self) -> str | None:
        return self.name if self.in_torch else None

    @property
    def torch_cell(self) -> str | None:
        return self.name + "Cell" if self.in_torch else None

    @property
    def onnx_op(self) -> str | None:
        return self.name if self.onnx_blocks is not None else None

    def onnx_rows(self, hidden_size: int) -> np.ndarray:
        """Row indices that take the stacked gates (G*H rows) to ONNX's order."""
        if self.onnx_blocks is None:
            raise ValueError(f"ONNX has no operator for {self.name}")
        H = hidden_size
        return np.concatenate([np.arange(b * H, (b + 1) * H) for b in self.onnx_blocks])

    def cell_shapes(self, input_size: int, hidden_size: int, bias: bool = True,
                    suffix: str = "", w_rank: int | None = None,
                    u_rank: int | None = None,
                    proj_size: int = 0) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of one cell's parameters, in registration order.  With
        ``w_rank``/``u_rank`` (FastRNN, FastGRNN) W_ih = weight_ih2 @ weight_ih1 and
        W_hh = weight_hh2 @ weight_hh1, factors of that rank; with ``proj_size`` P (an
        LSTM, PyTorch's LSTMP) h has P values: weight_hh (G*H, P) and the projection
        weight_hr (P, H), last as PyTorch registers it."""
        G = self.gates * hidden_size
        state = proj_size or hidden_size
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for name, cols, rank in (("weight_ih", input_size, w_rank),
                                 ("weight_hh", state, u_rank)):
            if rank is None:
                shapes.append((name + suffix, (G, cols)))
            else:
                shapes += [(name + "1" + suffix, (rank, cols)), (name + "2" + suffix, (G, rank))]
        if bias:
            shapes += [(name + suffix, (G,)) for name in self.biases]
        shapes += [(name + suffix, (rows, hidden_size)) for name, rows, _ in self.vectors]
        if proj_size:
            shapes.append(("weight_hr" + suffix, (proj_size, hidden_size)))
        return shapes + [(name + suffix, (1,)) for name, _ in self.scalars]

    def parameter_count(self, input_size: int, hidden_size: int, num_layers: int = 1,
                        bidirectional: bool = False, bias: bool = True,
                        proj_size: int = 0) -> int:
        """Number of values in a layer's parameters."""
        return sum(int(np.prod(shape)) for _, shape in parameter_shapes(
            self, input_size, hidden_size, num_layers, bidirectional, bias,
            proj_size=proj_size))


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("RNN", gates=1, has_cell=False, kernel_id=0, gate_names=("h",), onnx_blocks=(0,)),
    Kind("LSTM", gates=4, has_cell=True, kernel_id=1, gate_names=("i", "f", "g", "o"),
         onnx_blocks=(0, 3, 1, 2)),
    Kind("GRU", gates=3, has_cell=False, kernel_id=2, gate_names=("r", "z", "n"),
         onnx_blocks=(1, 0, 2), product_apart=True,
         onnx_attributes=(("linear_before_reset", 1),)),
    # Kusupati et al. 2018, with EdgeML's names and initial values (before the sigmoid)
    Kind("FastRNN", gates=1, has_cell=False, kernel_id=3, gate_names=("h",),
         onnx_blocks=None, biases=("bias_update",),
         scalars=(("alpha", -3.0), ("beta", 3.0)), in_torch=False, one_step=False),
    Kind("FastGRNN", gates=1, has_cell=False, kernel_id=4, gate_names=("h",),
         onnx_blocks=None, biases=("bias_gate", "bias_update"),
         scalars=(("zeta", 1.0), ("nu", -4.0)), in_torch=False, one_step=False,
         keeps_candidate=True),
)}


#: the variants, by (kind name, option): the same parameters (and more, for ``vectors``),
#: another cell; neither is in torch.nn, and their one step runs the sequence kernel
VARIANTS: dict[tuple[str, str], Kind] = {(k.name, k.variant): k for k in (
    # Cho et al. 2014: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn); ONNX's default GRU
    Kind("GRU", gates=3, has_cell=False, kernel_id=5, gate_names=("r", "z", "n"),
         onnx_blocks=(1, 0, 2), in_torch=False, one_step=False, variant="reset_before",
         reset_before=True, onnx_attributes=(("linear_before_reset", 0),)),
    # Gers & Schmidhuber 2000: i, f read p_i * c_{t-1}, p_f * c_{t-1}; o reads p_o * c_t
    Kind("LSTM", gates=4, has_cell=True, kernel_id=6, gate_names=("i", "f", "g", "o"),
         onnx_blocks=(0, 3, 1, 2), in_torch=False, one_step=False, variant="peephole",
         vectors=(("peephole", 3, None),)),
    # Ba, Kiros & Hinton 2016: G = LN(W_ih x) + LN(W_hh h), h = o * tanh(LN(c)); each
    # normalisation with a gain (starting at 1) and a bias (at 0), which are its biases
    Kind("LSTM", gates=4, has_cell=True, kernel_id=7, gate_names=("i", "f", "g", "o"),
         onnx_blocks=None, product_apart=True, biases=(), in_torch=False, one_step=False,
         variant="layer_norm", layer_norm=True,
         vectors=(("ln_ih_weight", 4, 1.0), ("ln_ih_bias", 4, 0.0),
                  ("ln_hh_weight", 4, 1.0), ("ln_hh_bias", 4, 0.0),
                  ("ln_cell_weight", 1, 1.0), ("ln_cell_bias", 1, 0.0))),
)}

#: every record the kernels have a number for
ALL_KINDS: tuple[Kind, ...] = (*KINDS.values(), *VARIANTS.values())


_BY_UPPER_NAME = {name.upper(): kind for name, kind in KINDS.items()}


def layer_kind(name: str, *, reset_after: bool = True, peephole: bool = False,
               layer_norm: bool = False) -> Kind:
    """The record a layer or cell of kind ``name`` computes with, given its options: the
    GRU's ``reset_after=False``, the LSTM's ``peephole=True`` and ``layer_norm=True`` are
    variants (one at a time).

    >>> layer_kind("GRU", reset_after=False).label
    'GRU (reset_before)'
    """
    kind = KINDS[name]
    if not reset_after:
        if name != "GRU":
            raise ValueError(f"reset_after is an option of the GRU, not of {name}")
        kind = VARIANTS["GRU", "reset_before"]
    if peephole:
        if name != "LSTM":
            raise ValueError(f"peephole is an option of the LSTM, not of {name}")
        kind = VARIANTS["LSTM", "peephole"]
    if layer_norm:
        if name != "LSTM":
            raise ValueError(f"layer_norm is an option of the LSTM, not of {name}")
        if peephole:
            raise ValueError("an LSTM takes peephole=True or layer_norm=True, not both")
        kind = VARIANTS["LSTM", "layer_norm"]
    return kind


def kind_of(name: str) -> Kind:
    """The record of ``name`` ('RNN', 'LSTM', 'GRU', 'FastRNN', 'FastGRNN', any case), or
    ValueError."""
    kind = _BY_UPPER_NAME.get(str(name).upper())
    if kind is None:
        raise ValueError(f"unknown cell kind {name!r}; one of "
                         f"{', '.join(repr(k.lower()) for k in KINDS)}")
    return kind


def suffix(layer: int, direction: int) -> str:
    """PyTorch's parameter-name suffix of layer ``layer``, direction 0 or 1."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def layer_directions(num_layers: int, bidirectional: bool) -> Iterator[tuple[int, int]]:
    """``(layer, direction)`` in PyTorch's parameter order."""
    for k in range(num_layers):
        for d in range(2 if bidirectional else 1):
            yield k, d


def parameter_shapes(kind: Kind, input_size: int, hidden_size: int, num_layers: int = 1,
                     bidirectional: bool = False, bias: bool = True,
                     w_rank: int | None = None, u_rank: int | None = None,
                     proj_size: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of a stacked layer's parameters, in PyTorch's order."""
    D = 2 if bidirectional else 1
    out = []
    for k, d in layer_directions(num_layers, bidirectional):
        out += kind.cell_shapes(input_size if k == 0 else D * (proj_size or hidden_size),
                                hidden_size, bias, suffix(k, d), w_rank, u_rank, proj_size)
    return out
