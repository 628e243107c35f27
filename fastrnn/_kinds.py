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

__all__ = ["Kind", "KINDS", "kind_of", "parameter_shapes", "suffix"]


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
    """

    name: str
    gates: int
    has_cell: bool
    kernel_id: int
    gate_names: tuple[str, ...]
    onnx_blocks: tuple[int, ...]
    product_apart: bool = False

    @property
    def torch_layer(self) -> str:
        return self.name

    @property
    def torch_cell(self) -> str:
        return self.name + "Cell"

    @property
    def onnx_op(self) -> str:
        return self.name

    def onnx_rows(self, hidden_size: int) -> np.ndarray:
        """Row indices that take the stacked gates (G*H rows) to ONNX's order."""
        H = hidden_size
        return np.concatenate([np.arange(b * H, (b + 1) * H) for b in self.onnx_blocks])

    def cell_shapes(self, input_size: int, hidden_size: int, bias: bool = True,
                    suffix: str = "") -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of one cell's parameters, in registration order."""
        G = self.gates * hidden_size
        shapes: list[tuple[str, tuple[int, ...]]] = [
            ("weight_ih" + suffix, (G, input_size)), ("weight_hh" + suffix, (G, hidden_size))]
        if bias:
            shapes += [("bias_ih" + suffix, (G,)), ("bias_hh" + suffix, (G,))]
        return shapes

    def parameter_count(self, input_size: int, hidden_size: int, num_layers: int = 1,
                        bidirectional: bool = False, bias: bool = True) -> int:
        """Number of values in a layer's parameters."""
        return sum(int(np.prod(shape)) for _, shape in parameter_shapes(
            self, input_size, hidden_size, num_layers, bidirectional, bias))


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("RNN", gates=1, has_cell=False, kernel_id=0, gate_names=("h",), onnx_blocks=(0,)),
    Kind("LSTM", gates=4, has_cell=True, kernel_id=1, gate_names=("i", "f", "g", "o"),
         onnx_blocks=(0, 3, 1, 2)),
    Kind("GRU", gates=3, has_cell=False, kernel_id=2, gate_names=("r", "z", "n"),
         onnx_blocks=(1, 0, 2), product_apart=True),
)}


def kind_of(name: str) -> Kind:
    """The record of ``name`` ('RNN', 'LSTM', 'GRU', any case), or ValueError."""
    kind = KINDS.get(str(name).upper())
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
                     bidirectional: bool = False,
                     bias: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of a stacked layer's parameters, in PyTorch's order."""
    D = 2 if bidirectional else 1
    out = []
    for k, d in layer_directions(num_layers, bidirectional):
        out += kind.cell_shapes(input_size if k == 0 else D * hidden_size, hidden_size, bias,
                                suffix(k, d))
    return out
