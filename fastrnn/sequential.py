r"""Free composition: :class:`Sequential` and the combinators :class:`Residual`,
:class:`Concatenate` and :class:`Bidirectional`.

Every element of a container is a layer of fastrnn: a recurrent layer (``RNN``, ``LSTM``,
``GRU``, ``FastRNN``, ``FastGRNN``), ``Linear``, ``Embedding`` (first only: it takes
tokens), a block of :mod:`fastrnn.blocks` or another container.  The containers have the
one protocol of the layers: ``y = model(x, lengths=None)``, ``y, backward =
model.forward_train(x, lengths=None)`` and ``dx = backward(dy, input_grad=True)``
(``input_grad=False``: no ``dx``, None), which adds every parameter's gradient into its
``.grad``.  No autograd: each layer's own hand-written backward pass runs, in reverse order.

Notes that hold everywhere here:

* **Batch-first.**  Sequences flow as (B, T, F), as in Keras and as the models' data
  (sample-first, like every other array a user holds: targets, lengths).  The blocks,
  the poolings and the losses read the batch axis first; a recurrent layer is given a
  view of the batch in its own layout (``batch_first`` or not, it copies the data once
  into its kernels' arrays either way), and its output comes back as a (B, T, D*H) view.
* **lengths** (B,) flows to every layer that reads it, unchanged: the recurrent layers
  (padded steps are skipped, their output is 0), the poolings (only valid steps count);
  the element-wise blocks and ``Linear`` ignore it (a padded step's value reaches
  nothing: the next recurrent layer, pooling or masked loss skips it).  After a layer
  that reduces time (a pooling) no ``lengths`` is passed on.
* **States are dropped.**  A recurrent layer in a chain passes on its outputs ``y`` at
  every step and drops its final state (its gradient is zero; every chain starts from
  zero states).  ``TimePooling("last")`` reads the last valid output, which for a
  unidirectional layer is its final ``h``.

Parameter names are the positions joined to the layers' own names, as PyTorch's
``nn.Sequential``: ``"0.weight"``, ``"1.weight_ih_l0"``; inside a combinator
``"2.layer.weight"`` (:class:`Residual`), ``"3.forward_layer.weight_ih_l0"``
(:class:`Bidirectional`), ``"4.0.weight"`` (:class:`Concatenate`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import losses
from ._validate import (all_finite, as_array, as_dtype, float_array, lengths_array,
                        positive_int, step_mask, warn_if_padded)
from .blocks import (AttentionPooling, Block, Dropout, GELU, LayerNorm, ReLU, Sigmoid, Tanh,
                     TimePooling)
from .fastgrnn import FastGRNN, FastRNN
from .heads import HEAD_TYPES, Head
from .layers import GRU, LSTM, RNN, Embedding, Linear
from .module import Module
from .optim import Optimizer
from .precision import precision_scope
from .training import History, _Fittable, loss_sums

__all__ = ["Sequential", "Residual", "Concatenate", "Bidirectional", "build_layer",
           "layer_config"]

#: the recurrent layers, by the ``type`` of their configuration
_RNN_TYPES = {cls.__name__: cls for cls in (RNN, LSTM, GRU, FastRNN, FastGRNN)}
_RECURRENT = tuple(_RNN_TYPES.values())
_MERGE_MODES = ("concat", "sum", "mean")
# deeper nesting in a model file is refused (a file must not exhaust the stack)
MAX_DEPTH = 32


# ---------------------------------------------------------------------------------------
# One protocol over every kind of layer
# ---------------------------------------------------------------------------------------

def _is_layer(layer) -> bool:
    return isinstance(layer, (_RECURRENT, Linear, Embedding, Block, Head, _Container))


def _not_empty(a: np.ndarray, name: str) -> None:
    """Refuse (0, T, ...) and (N, 0, ...): no batch to train on (fit would report a loss of
    0 for every epoch) or to predict."""
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sequence of at least one step, "
                         f"got shape {a.shape}")


def _zero_padding(x, lengths):
    """``x`` (B, T, ...) with the padded steps (t >= lengths[b]) set to 0, as a new array
    (``x`` itself without lengths)."""
    if lengths is None:
        return x
    keep = step_mask(lengths, x.shape[1])
    assert keep is not None
    return np.where(keep.reshape(keep.shape + (1,) * (x.ndim - 2)), x, 0)


def _recurrent_input(layer, x):
    """``x`` checked as a batch of sequences: a recurrent layer alone also takes one
    unbatched sequence (T, F), a container's batch is always (B, T, F)."""
    if np.ndim(x) != 3:
        raise ValueError(f"x must be (batch, T, features) where it enters the "
                         f"{type(layer).__name__}, got shape {np.shape(x)}")
    return x


def _infer(layer, x, lengths, layout=None):
    """``layer``'s output for batch-first ``x`` (inference: no dropout, nothing kept).
    ``layout``: the next recurrent layer's, in which an Embedding gathers its vectors
    (the batch-first result is a view of them, which that layer reads without a copy)."""
    if isinstance(layer, _RECURRENT):
        x = _recurrent_input(layer, x)
        view = layer._layout                  # batch-first <-> the layer's layout, views
        return view(layer(view(x), None, lengths)[0])
    if isinstance(layer, Embedding):
        return layer(x) if layout is None else layout(layer(layout(x)))
    if isinstance(layer, Linear):
        return layer(x)
    return layer(x, lengths)


def _train(layer, x, lengths, layout=None):
    """``(y, backward)`` of ``layer`` on batch-first ``x``, with ``backward(dy,
    input_grad) -> dx`` (None when not asked for, or for tokens); ``layout`` as
    :func:`_infer`'s."""
    if isinstance(layer, _RECURRENT):
        x = _recurrent_input(layer, x)
        view = layer._layout
        y, _, backward = layer.forward_train(view(x), None, lengths)

        def recurrent_backward(dy, input_grad):
            dx, _ = backward(view(dy), None, input_grad=input_grad)   # the state: dropped
            return None if dx is None else view(dx)

        return view(y), recurrent_backward
    if isinstance(layer, _Container):
        y, backward = layer.forward_train(x, lengths)
        return y, lambda dy, input_grad: backward(dy, input_grad=input_grad)
    if isinstance(layer, Embedding) and layout is not None:
        y, backward = layer.forward_train(layout(x))
        return layout(y), lambda dy, input_grad: backward(layout(dy))
    y, backward = layer.forward_train(x) if isinstance(layer, (Linear, Embedding)) \
        else layer.forward_train(x, lengths)
    return y, lambda dy, input_grad: backward(dy)


def _run_carried(layer, x, lengths, state0, train: bool):
    """A recurrent ``layer`` of the chain itself, on batch-first ``x``, from ``state0``
    (None: zeros), for truncated BPTT: ``(y, state, backward)`` with ``backward(dy,
    input_grad) -> dx`` (None at inference).  The state it ends in starts the next window;
    no gradient flows back through it (the window's start is a constant)."""
    x = _recurrent_input(layer, x)
    view = layer._layout
    if not train:
        y, state = layer(view(x), state0, lengths)
        return view(y), state, None
    y, state, backward = layer.forward_train(view(x), state0, lengths)

    def recurrent_backward(dy, input_grad):
        dx, _ = backward(view(dy), None, input_grad=input_grad)
        return None if dx is None else view(dx)

    return view(y), state, recurrent_backward


def _infer_headed(layer, head, x, lengths, state0=None):
    """``(out, state)`` of a recurrent ``layer`` read by ``head`` (its outputs and final
    state, in the layer's own layout, as :mod:`fastrnn.heads` takes them), on batch-first
    ``x``, from ``state0`` (None: zeros)."""
    x = _recurrent_input(layer, x)
    view = layer._layout
    y, state = layer(view(x), state0, lengths)
    out = head(y, state)
    return (view(out) if head.per_step else out), state


def _train_headed(layer, head, x, lengths, state0=None):
    """``(out, state, backward)`` of :func:`_infer_headed` in training, with
    ``backward(dout, input_grad) -> (dx, dstate0)``."""
    x = _recurrent_input(layer, x)
    view = layer._layout
    y, state, layer_backward = layer.forward_train(view(x), state0, lengths)
    out, head_backward = head.forward_train(y, state)

    def backward(dout, input_grad):
        dy, dstate = head_backward(view(dout) if head.per_step else dout)
        dx, dstate0 = layer_backward(dy, dstate, input_grad=input_grad)
        return (None if dx is None else view(dx)), dstate0

    return (view(out) if head.per_step else out), state, backward


def _reduces_time(layer) -> bool:
    return bool(getattr(layer, "reduces_time", False))


def _takes_tokens(layer) -> bool:
    """Whether ``layer`` reads tokens: an Embedding, or a container whose first layer
    (each of whose layers, for a Concatenate; whose copies, for a Bidirectional) does."""
    if isinstance(layer, Embedding):
        return True
    if isinstance(layer, Sequential):
        return _takes_tokens(layer.layers[0])
    if isinstance(layer, Concatenate):
        return _takes_tokens(layer.layers[0])          # all of them or none: checked
    if isinstance(layer, Bidirectional):
        return _takes_tokens(layer.forward_layer)
    return False


def _padding_zeroed(x, lengths, first):
    """A float batch with its padded steps (t >= lengths) set to 0, so that no layer
    before a recurrent one (a Linear, a LayerNorm) carries what the padding holds, nan
    included, into a gradient; tokens, batches without lengths and batches whose
    ``first`` layer is a recurrent one (its kernels read padded steps as zeros) as they
    are."""
    if lengths is None or isinstance(first, _RECURRENT) or np.asarray(x).dtype.kind != "f":
        return x
    return _zero_padding(np.asarray(x), lengths)


def _checked_lengths(lengths, x):
    if lengths is None:
        return None
    if np.ndim(x) < 2:
        raise ValueError(f"lengths needs a time axis: x must be (B, T, ...), got shape "
                         f"{np.shape(x)}")
    return lengths_array(lengths, np.shape(x)[0], np.shape(x)[1])


def _dtype_of(modules, dtype, what: str) -> np.dtype:
    """The one dtype of the parameters of ``modules`` (``dtype`` if given, which they must
    have; float32 when none has parameters), each parameter held once."""
    params = [p for m in modules for p in m.parameters()]
    if len({id(p) for p in params}) != len(params):
        raise ValueError(f"a layer with parameters appears twice in {what}: shared weights "
                         f"are not supported (an optimizer would update them twice)")
    found = {p.dtype for p in params}
    if dtype is not None:
        dtype = as_dtype(dtype)
        found.add(dtype)
    if len(found) > 1:
        raise TypeError(f"every layer of {what} must have one dtype, got "
                        f"{sorted(d.name for d in found)}")
    return found.pop() if found else np.dtype(np.float32)


# ---------------------------------------------------------------------------------------
# Configurations: what a model file keeps of each layer
# ---------------------------------------------------------------------------------------

def layer_config(layer) -> dict:
    """What builds ``layer`` again (its parameters apart), as a model file keeps it.

    >>> import fastrnn
    >>> from fastrnn.sequential import layer_config
    >>> layer_config(fastrnn.Linear(4, 2))
    {'type': 'Linear', 'in_features': 4, 'out_features': 2, 'bias': True}
    """
    if isinstance(layer, Linear):
        return {"type": "Linear", "in_features": layer.in_features,
                "out_features": layer.out_features, "bias": layer.bias is not None}
    if isinstance(layer, Embedding):
        return {"type": "Embedding", "num_embeddings": layer.num_embeddings,
                "embedding_dim": layer.embedding_dim, "padding_idx": layer.padding_idx}
    return layer.config()


def build_layer(cfg: dict, dtype, seed: int | None = None):
    """The layer a :func:`layer_config` describes, in ``dtype``, its parameters drawn
    from ``seed`` (KeyError, TypeError or ValueError for a malformed ``cfg``).

    >>> import numpy as np, fastrnn
    >>> from fastrnn.sequential import build_layer
    >>> build_layer({"type": "GRU", "input_size": 3, "hidden_size": 4}, np.float64)
    GRU(3, 4, dtype=float64)
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"a layer's configuration must be a dict, got {type(cfg).__name__}")
    args = {k: v for k, v in cfg.items() if k != "type"}
    kind = cfg["type"]
    if kind in _RNN_TYPES:
        return _RNN_TYPES[kind](**args, dtype=dtype, seed=seed)
    if kind == "Linear":
        return Linear(**args, dtype=dtype, seed=seed)
    if kind == "Embedding":
        return Embedding(**args, dtype=dtype, seed=seed)
    if kind in HEAD_TYPES:
        return HEAD_TYPES[kind].from_config(cfg, dtype, seed)
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}")
    return LAYER_TYPES[kind].from_config(cfg, dtype, seed)


def _child_seeds(seed: int | None, n: int) -> list:
    """``n`` seeds for the layers inside a container built from ``seed`` (None: n
    Nones, each layer drawing its own)."""
    if seed is None:
        return [None] * n
    return [int(v) for v in np.random.SeedSequence(seed).generate_state(n)]


def _layer_list(cfg: dict, key: str = "layers") -> list:
    layers = cfg[key]
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{cfg.get('type')}: {key} must be a non-empty list")
    return layers


# ---------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------

class _Container(Module):
    """What the combinators share: the protocol (``forward_train(x, lengths=None) ->
    (y, backward)``, ``backward(dy, *, input_grad=True) -> dx``) and the hooks a model
    file is checked and built with."""

    def forward_train(self, x, lengths=None):
        raise NotImplementedError

    def __call__(self, x, lengths=None):
        raise NotImplementedError

    @property
    def reduces_time(self) -> bool:
        return False

    def config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> _Container:
        """The container a :meth:`config` describes, its layers in ``dtype``, their
        parameters drawn from seeds spawned from ``seed``."""
        raise NotImplementedError

    @staticmethod
    def config_shapes(cfg: dict) -> list:
        """A container's own parameters (none: they are its children's)."""
        return []

    @staticmethod
    def config_children(cfg: dict) -> list[tuple[str, dict]]:
        """``(name, config)`` of the children the container of ``cfg`` has."""
        raise NotImplementedError


def _check_layers(layers, what: str, heads: bool = False) -> list:
    """``layers`` as a list, each a layer of fastrnn (a head only with ``heads``, right
    after a recurrent layer: a :class:`Sequential`'s)."""
    if isinstance(layers, Module) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"{what} must be a list of layers, got {type(layers).__name__}")
    if not layers:
        raise ValueError(f"{what} must hold at least one layer")
    for i, layer in enumerate(layers):
        if not _is_layer(layer):
            raise TypeError(f"{what}[{i}] must be a fastrnn layer, block or container, got "
                            f"{type(layer).__name__}")
        if not getattr(layer, "_nestable", True):
            raise TypeError(f"{what}[{i}]: a {type(layer).__name__} is a whole model, not a "
                            f"layer: put its parts in the container")
        if isinstance(layer, Head) and not (heads and i > 0
                                            and isinstance(layers[i - 1], _RECURRENT)):
            raise ValueError(f"{what}[{i}]: a head reads a recurrent layer's outputs and "
                             f"final state: it must come right after a recurrent layer of "
                             f"a Sequential")
    return list(layers)


class Residual(_Container):
    """``y = x + layer(x)`` (a skip connection; ``layer`` must keep the shape of ``x``).

    ``dx = dy + layer's dx``.  Parameters are named ``layer.<name>``.

    >>> import numpy as np, fastrnn
    >>> block = fastrnn.Residual(fastrnn.Linear(3, 3, dtype=np.float64, seed=0))
    >>> x = np.ones((2, 3))
    >>> bool(np.allclose(block(x), x + block.layer(x)))
    True
    """

    def __init__(self, layer):
        super().__init__()
        _check_layers([layer], "layer")
        if _reduces_time(layer):
            raise ValueError("a Residual's layer must keep the shape of its input, not "
                             "reduce time")
        if _takes_tokens(layer):
            raise ValueError("a Residual's layer must keep the shape of its input: it "
                             "cannot take tokens (an Embedding adds an axis)")
        self.layer = self._add_module("layer", layer)

    def _add(self, x, fx):
        if fx.shape != np.shape(x):
            raise ValueError(f"a Residual's layer must keep the shape of its input "
                             f"{np.shape(x)}, got {fx.shape}")
        return x + fx

    def __call__(self, x, lengths=None):
        x = np.asarray(x)
        return self._add(x, _infer(self.layer, x, lengths))

    def forward_train(self, x, lengths=None):
        x = np.asarray(x)
        fx, layer_backward = _train(self.layer, x, lengths)
        y = self._add(x, fx)

        def backward(dy, *, input_grad=True):
            dx = layer_backward(dy, input_grad)
            return None if not input_grad else (dy + dx if dx is not None else dy)

        return y, backward

    def config(self) -> dict:
        return {"type": "Residual", "layer": layer_config(self.layer)}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Residual:
        return cls(build_layer(cfg["layer"], dtype, seed))

    @staticmethod
    def config_children(cfg):
        return [("layer", cfg["layer"])]

    def __repr__(self) -> str:
        return f"Residual({self.layer!r})"


class Concatenate(_Container):
    """Several layers on the same input, their outputs joined along the last axis
    (thinc's ``concatenate``): ``y = [f_1(x), f_2(x), ...]``; ``dx = sum_i f_i's dx``.

    The outputs must agree on every axis but the last.  Parameters are named
    ``<i>.<name>``.

    >>> import numpy as np, fastrnn
    >>> both = fastrnn.Concatenate(fastrnn.Linear(3, 2, seed=0), fastrnn.Tanh())
    >>> both(np.ones((4, 3), np.float32)).shape
    (4, 5)
    """

    def __init__(self, *layers):
        super().__init__()
        layers = tuple(_check_layers(list(layers), "layers"))
        if len({_reduces_time(layer) for layer in layers}) > 1:
            raise ValueError("Concatenate's layers must all reduce time, or none")
        if len({_takes_tokens(layer) for layer in layers}) > 1:
            raise ValueError("Concatenate's layers must all take tokens (begin with an "
                             "Embedding), or none")
        _dtype_of(layers, None, "Concatenate")
        self.layers = layers
        for i, layer in enumerate(layers):
            self._add_module(str(i), layer)

    @property
    def reduces_time(self) -> bool:
        return _reduces_time(self.layers[0])

    @staticmethod
    def _join(outputs):
        lead = {o.shape[:-1] for o in outputs}
        if len(lead) > 1:
            raise ValueError(f"Concatenate's outputs must agree on every axis but the "
                             f"last, got shapes {[o.shape for o in outputs]}")
        return np.concatenate(outputs, axis=-1)

    def __call__(self, x, lengths=None):
        return self._join([_infer(layer, x, lengths) for layer in self.layers])

    def forward_train(self, x, lengths=None):
        runs = [_train(layer, x, lengths) for layer in self.layers]
        y = self._join([out for out, _ in runs])
        edges = np.cumsum([out.shape[-1] for out, _ in runs])[:-1]

        def backward(dy, *, input_grad=True):
            dy = float_array(dy, "dy", y.dtype, y.ndim)
            if dy.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dy.shape}")
            dx = None
            for (_, layer_backward), part in zip(runs, np.split(dy, edges, axis=-1)):
                d = layer_backward(np.ascontiguousarray(part), input_grad)
                if d is not None:
                    dx = d if dx is None else dx + d
            return dx if input_grad else None

        return y, backward

    def config(self) -> dict:
        return {"type": "Concatenate", "layers": [layer_config(m) for m in self.layers]}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Concatenate:
        layers = _layer_list(cfg)
        return cls(*[build_layer(c, dtype, s)
                     for c, s in zip(layers, _child_seeds(seed, len(layers)))])

    @staticmethod
    def config_children(cfg):
        return [(str(i), c) for i, c in enumerate(_layer_list(cfg))]

    def __repr__(self) -> str:
        return "Concatenate(" + ", ".join(repr(m) for m in self.layers) + ")"


def _reverse(a: np.ndarray, lengths) -> np.ndarray:
    """``a`` (B, T, ...) with each sequence's valid steps in reverse order (the padded
    steps stay where they are); its own inverse."""
    if lengths is None:
        return a[:, ::-1]
    B, T = a.shape[:2]
    t = np.arange(T)[None, :]
    index = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return a[np.arange(B)[:, None], index]


class Bidirectional(_Container):
    """A sequence layer run forwards and, as a second copy, backwards over each sequence
    (Keras' ``Bidirectional``): ``y = merge(f(x), reverse(g(reverse(x))))``.

    ``reverse`` turns each sequence's valid steps around (``lengths``: steps t <
    lengths[b]; the padded steps stay in place), so step t of the backward output has read
    steps t..lengths[b]-1.  ``merge_mode``: ``"concat"`` (the last axis, forward first),
    ``"sum"`` or ``"mean"``.  ``g`` is ``backward_layer`` if given, else a copy of
    ``layer``'s configuration with fresh parameters drawn from ``seed``.  Parameters are
    named ``forward_layer.<name>`` and ``backward_layer.<name>``.

    >>> import numpy as np, fastrnn
    >>> bi = fastrnn.Bidirectional(fastrnn.GRU(3, 4, seed=0), merge_mode="sum", seed=1)
    >>> bi(np.ones((2, 5, 3), np.float32), lengths=[5, 3]).shape
    (2, 5, 4)
    """

    def __init__(self, layer, merge_mode: str = "concat", *, backward_layer=None,
                 seed: int | None = None):
        super().__init__()
        _check_layers([layer], "layer")
        if _reduces_time(layer):
            raise ValueError("Bidirectional needs a layer with an output at every step, "
                             "not one that reduces time")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        self.merge_mode = merge_mode
        config = layer_config(layer)
        dtype = _dtype_of([layer], None, "Bidirectional")
        if backward_layer is None:
            backward_layer = build_layer(config, dtype, seed)
        else:
            _check_layers([backward_layer], "backward_layer")
            if layer_config(backward_layer) != config:
                raise ValueError(f"backward_layer must have the configuration of layer "
                                 f"{config}, got {layer_config(backward_layer)}")
            _dtype_of([layer, backward_layer], None, "Bidirectional")
        self.forward_layer = self._add_module("forward_layer", layer)
        self.backward_layer = self._add_module("backward_layer", backward_layer)

    def _merge(self, yf, yb):
        if yf.shape[:2] != yb.shape[:2]:
            raise ValueError(f"Bidirectional's layer must keep the time axis, got {yf.shape}")
        if self.merge_mode == "concat":
            return np.concatenate([yf, yb], axis=-1)
        total = yf + yb
        return total if self.merge_mode == "sum" else total * total.dtype.type(0.5)

    def __call__(self, x, lengths=None):
        x = np.asarray(x)
        lengths = _checked_lengths(lengths, x)
        yf = _infer(self.forward_layer, x, lengths)
        yb = _reverse(_infer(self.backward_layer, _reverse(x, lengths), lengths), lengths)
        return self._merge(yf, yb)

    def forward_train(self, x, lengths=None):
        x = np.asarray(x)
        lengths = _checked_lengths(lengths, x)
        yf, forward_backward = _train(self.forward_layer, x, lengths)
        yb_reversed, backward_backward = _train(self.backward_layer, _reverse(x, lengths),
                                                lengths)
        y = self._merge(yf, _reverse(yb_reversed, lengths))
        width = yf.shape[-1]

        def backward(dy, *, input_grad=True):
            dy = float_array(dy, "dy", y.dtype, y.ndim)
            if dy.shape != y.shape:
                raise ValueError(f"dy must have the shape of y, {y.shape}, got {dy.shape}")
            if self.merge_mode == "concat":
                dyf, dyb = dy[..., :width], dy[..., width:]
            else:
                dyf = dyb = dy if self.merge_mode == "sum" else dy * dy.dtype.type(0.5)
            dxf = forward_backward(np.ascontiguousarray(dyf), input_grad)
            dxb = backward_backward(np.ascontiguousarray(_reverse(dyb, lengths)), input_grad)
            if not input_grad or dxf is None:
                return None
            return dxf + _reverse(dxb, lengths)

        return y, backward

    def config(self) -> dict:
        return {"type": "Bidirectional", "merge_mode": self.merge_mode,
                "forward_layer": layer_config(self.forward_layer),
                "backward_layer": layer_config(self.backward_layer)}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Bidirectional:
        seeds = _child_seeds(seed, 2)
        return cls(build_layer(cfg["forward_layer"], dtype, seeds[0]),
                   cfg.get("merge_mode", "concat"),
                   backward_layer=build_layer(cfg["backward_layer"], dtype, seeds[1]))

    @staticmethod
    def config_children(cfg):
        return [("forward_layer", cfg["forward_layer"]),
                ("backward_layer", cfg["backward_layer"])]

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r})"


def _layer_name(name) -> str:
    """A layer's name in a :class:`Sequential` of named layers: a non-empty str without
    a dot (the dot joins the names of nested parameters)."""
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"a layer's name must be a non-empty str without '.', got "
                         f"{name!r}")
    return name


def _modules_in(module):
    """Every module inside ``module``, at any depth."""
    for m in module._modules.values():
        yield m
        yield from _modules_in(m)


def _input_width(layers):
    """The width of the input of ``layers`` (a list applied in turn), as the first layer
    that says it gives it: ``"tokens"``, an int, or None where none does before a layer
    that changes the width."""
    for layer in layers:
        if isinstance(layer, Embedding):
            return "tokens"
        if isinstance(layer, (_RECURRENT, AttentionPooling)):
            return layer.input_size
        if isinstance(layer, Linear):
            return layer.in_features
        if isinstance(layer, LayerNorm):
            return layer.normalized_shape
        if isinstance(layer, Sequential):
            width = _input_width(layer.layers)
        elif isinstance(layer, (Residual, Concatenate, Bidirectional)):
            inner = [layer.layer] if isinstance(layer, Residual) else \
                list(layer.layers) if isinstance(layer, Concatenate) else [layer.forward_layer]
            width = next((w for w in (_input_width([m]) for m in inner) if w is not None),
                         None)
        else:
            width = None
        if width is not None:
            return width
        if not isinstance(layer, (Residual, ReLU, Tanh, Sigmoid, GELU, Dropout, TimePooling)):
            return None                       # it changes the width, or may
    return None


def _as_loss(loss):
    """A loss object from a name, a loss object or a function (:class:`CustomLoss`);
    None stays None."""
    if loss is None or isinstance(loss, losses._Loss):
        return loss
    if callable(loss):
        return losses.CustomLoss(loss)
    return losses.get_loss(loss)


class Sequential(_Container, _Fittable):
    r"""Layers applied one after the other (Keras' and PyTorch's ``Sequential``), trained
    with ``fit`` like the other models.

    ``layers`` is a list of fastrnn layers, blocks and containers (see the module's notes
    for the layout, ``lengths`` and states), or a dict of them by name (PyTorch's
    ``Sequential(OrderedDict(...))``: the names replace the positions in the parameter
    names, ``model["rnn"]`` is that layer).  A head of :mod:`fastrnn.heads` may follow a
    recurrent layer: it reads that layer's outputs and final state, as in
    :class:`~fastrnn.SequenceModel` (a preset of this container).  ``loss`` is a name
    (``"cross_entropy"``, ``"mse"``, ``"bce_with_logits"``), a loss object, or a function
    ``loss(outputs, targets) -> (value, grad_outputs)``
    (:class:`~fastrnn.losses.CustomLoss`), needed by ``fit`` and ``evaluate`` only.
    Every layer with parameters must have one dtype (``dtype``, if given, checks it).

    ``x`` is sample-first: tokens (N, T) when the first layer is an ``Embedding``, else
    (N, T, F) (or (N, F) for a model without a time axis); the targets follow the outputs,
    (N, T, ...) while the time axis is kept and (N, ...) after a pooling; per-step losses
    are averaged over the valid steps (``lengths``).

    >>> import numpy as np, fastrnn
    >>> model = fastrnn.Sequential([
    ...     fastrnn.Embedding(20, 8, seed=0),
    ...     fastrnn.LSTM(8, 16, seed=1),
    ...     fastrnn.AttentionPooling(16, 8, seed=2),
    ...     fastrnn.Linear(16, 3, seed=3),
    ... ], loss="cross_entropy")
    >>> tokens = np.random.default_rng(0).integers(0, 20, (32, 6))
    >>> labels = tokens[:, 0] % 3
    >>> history = model.fit(tokens, labels, epochs=2, batch_size=8, progress=False, seed=0)
    >>> model.predict(tokens).shape
    (32,)
    >>> [name for name, _ in model.named_parameters()][:2]
    ['0.weight', '1.weight_ih_l0']
    """

    def __init__(self, layers, loss=None, *, dtype=None):
        super().__init__()
        names = None
        if isinstance(layers, Mapping):
            names = [_layer_name(name) for name in layers]
            layers = list(layers.values())
        layers = _check_layers(layers, "layers", heads=True)
        for i, layer in enumerate(layers[1:], 1):
            if _takes_tokens(layer):
                raise ValueError(f"layers[{i}]: an Embedding takes tokens: it can only be "
                                 f"(or begin) the first layer")
        self._dtype = _dtype_of(layers, dtype, "a Sequential")
        for i, layer in enumerate(layers):
            self._add_module(str(i) if names is None else names[i], layer)
        self.loss = loss

    # -- the container ---------------------------------------------------------------------

    @property
    def loss(self):
        return self._loss

    @loss.setter
    def loss(self, value) -> None:
        object.__setattr__(self, "_loss", _as_loss(value))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def layers(self) -> list:
        """The layers, in order (what ``model.<name> = layer`` replaced included)."""
        return list(self._modules.values())

    @property
    def reduces_time(self) -> bool:
        return any(_reduces_time(layer) for layer in self.layers)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int | str):
        """The layer at position ``index``, or of that name."""
        if isinstance(index, str):
            if index not in self._modules:
                raise KeyError(f"no layer named {index!r}; the names are "
                               f"{list(self._modules)}")
            return self._modules[index]
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def _run(self, x, lengths, train: bool, state0=None, carry: int | None = None,
             carried: dict | None = None):
        """The chain on a batch whose ``lengths`` are checked: ``(y, state, backward)``,
        with ``backward(dy, input_grad) -> (dx, dstate0)`` in training (None at
        inference).  ``state0`` starts the recurrent layer at position ``carry`` (one a
        head reads), and ``state`` is its final state (None without ``carry``).
        ``carried`` (truncated BPTT: a dict, read and updated) holds the state of every
        recurrent layer of the chain by position: each starts from its entry (zeros
        without one) and leaves its final state there."""
        layers = self.layers
        x = _padding_zeroed(x, lengths, layers[0])
        backwards, state, i = [], None, 0
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(after, Head):
                start = carried.get(i) if carried is not None else \
                    (state0 if i == carry else None)
                if train:
                    x, s, layer_backward = _train_headed(layer, after, x, lengths, start)
                    backwards.append((layer_backward, True))
                else:
                    x, s = _infer_headed(layer, after, x, lengths, start)
                state = s if i == carry else state
                if carried is not None:
                    carried[i] = s
                layer = after
                i += 2
            elif carried is not None and isinstance(layer, _RECURRENT):
                x, carried[i], layer_backward = _run_carried(layer, x, lengths,
                                                             carried.get(i), train)
                if train:
                    backwards.append((layer_backward, False))
                i += 1
            else:
                # an Embedding gathers in the layout of the recurrent layer it feeds
                layout = after._layout if isinstance(layer, Embedding) \
                    and isinstance(after, _RECURRENT) else None
                if train:
                    x, layer_backward = _train(layer, x, lengths, layout)
                    backwards.append((layer_backward, False))
                else:
                    x = _infer(layer, x, lengths, layout)
                i += 1
            if _reduces_time(layer):
                lengths = None
        if not train:
            return x, state, None

        def backward(dy, input_grad=True):
            dstate0 = None
            for k in range(len(backwards) - 1, -1, -1):
                layer_backward, headed = backwards[k]
                dy = layer_backward(dy, input_grad or k > 0)
                if headed:
                    dy, d0 = dy
                    dstate0 = d0 if dstate0 is None else dstate0
            return (dy if input_grad else None), dstate0

        return x, state, backward

    def __call__(self, x, lengths=None):
        """The outputs for a batch ``x`` (inference: dropout off)."""
        x = as_array(x, "x")
        return self._run(x, _checked_lengths(lengths, x), train=False)[0]

    def forward_train(self, x, lengths=None):
        """``(y, backward)`` for a batch ``x``: ``backward(dy, *, input_grad=True)`` adds
        every parameter's gradient into its ``.grad`` and returns ``dx`` (None with
        ``input_grad=False``, or for tokens)."""
        x = as_array(x, "x")
        y, _, chain_backward = self._run(x, _checked_lengths(lengths, x), train=True)

        def backward(dy, *, input_grad=True):
            return chain_backward(dy, input_grad)[0]

        return y, backward

    # -- configuration (for io) ------------------------------------------------------------

    def config(self) -> dict:
        loss = self.loss
        cfg = {"type": "Sequential", "dtype": self.dtype.name,
               "layers": [layer_config(layer) for layer in self.layers],
               "loss": None if loss is None or isinstance(loss, losses.CustomLoss)
               else loss.config()}
        names = list(self._modules)
        if names != [str(i) for i in range(len(names))]:
            cfg["names"] = names                 # a Sequential of named layers
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, dtype=None, seed: int | None = None) -> Sequential:
        dtype = as_dtype(cfg.get("dtype", "float32") if dtype is None else dtype)
        loss = cfg.get("loss")
        children = Sequential.config_children(cfg)
        layers = {name: build_layer(c, dtype, s) for (name, c), s in
                  zip(children, _child_seeds(seed, len(children)))}
        return cls(layers if "names" in cfg else list(layers.values()),
                   None if loss is None else losses.from_config(loss), dtype=dtype)

    @staticmethod
    def config_children(cfg):
        layers = _layer_list(cfg)
        names = cfg.get("names", [str(i) for i in range(len(layers))])
        if not isinstance(names, list) or len(names) != len(layers) \
                or len(set(map(str, names))) != len(names):
            raise ValueError("Sequential: names must be a list of distinct names, one a "
                             "layer")
        return [(_layer_name(name), c) for name, c in zip(names, layers)]

    # -- data ------------------------------------------------------------------------------

    def _inputs(self, x, name="x") -> np.ndarray:
        if _takes_tokens(self[0]):
            t = as_array(x, name)
            if t.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer tokens, got dtype {t.dtype}")
            if t.ndim < 1:
                raise ValueError(f"{name} must be tokens (N, T), got a 0-D array")
        else:
            t = float_array(x, name, self.dtype, tuple(range(2, 33)))
        if t.ndim >= 2:
            _not_empty(t, name)
        elif t.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one sample, got shape {t.shape}")
        return t

    def _checked_inputs(self, x, lengths, name="x"):
        x = self._inputs(x, name)
        lengths = _checked_lengths(lengths, x)
        all_finite(x, name, lengths)
        if lengths is None:
            warn_if_padded(x, name)
        return x, lengths

    def _masked(self, lengths) -> bool:
        """Whether the outputs have the padded steps of ``lengths`` (kept time axis)."""
        return lengths is not None and not self.reduces_time

    def _columns(self, x, y, lengths, names=("x", "y")):
        """``(x, y, lengths)`` of a data set, checked, non-finite values refused."""
        if self.loss is None:
            raise ValueError("this Sequential has no loss: give one, Sequential(layers, "
                             "loss=...) or model.loss = ...")
        x, lengths = self._checked_inputs(x, lengths, names[0])
        out = self(x[:1], None if lengths is None else lengths[:1])     # the outputs' shape
        lead = (x.shape[0],) + out.shape[1:-1]
        y = self.loss.check_targets(np.asarray(y), lead, out.shape[-1], self.dtype, names[1])
        all_finite(y, names[1], lengths if self._masked(lengths) else None)
        return x, y, lengths

    # -- training --------------------------------------------------------------------------

    def _mask(self, lengths, x):
        return step_mask(lengths, x.shape[1]) if self._masked(lengths) else None

    def _train_batch(self, batch, optimizer, clip_norm, snapshot, tbptt=None):
        x, y, lengths, weight = batch
        if tbptt is not None:
            return self._train_windows(batch, optimizer, clip_norm, snapshot, tbptt)
        optimizer.zero_grad()
        out, _, backward = self._run(x, lengths, train=True)
        ls, grad, n, ok = loss_sums(self.loss, out, y, self._mask(lengths, x), weight)
        backward(grad, input_grad=False)
        self._step(optimizer, ls, n, clip_norm, snapshot)
        return ls, n, ok

    def _train_windows(self, batch, optimizer, clip_norm, snapshot, tbptt: int):
        """Truncated BPTT: the batch in windows of ``tbptt`` steps, one optimizer step a
        window, every recurrent layer's state carried from one window to the next (not
        differentiated)."""
        x, y, lengths, weight = batch
        T = x.shape[1]
        x = _zero_padding(x, lengths)     # a row that has ended still runs one step per window
        full = lengths if lengths is not None else np.full(x.shape[0], T)
        carried: dict = {}
        total = count = correct = 0.0
        for s in range(0, T, tbptt):
            if self._everywhere(bool(np.all(full <= s))):      # every rank's rows have ended
                break
            xw, yw = x[:, s:s + tbptt], y[:, s:s + tbptt]
            ww = weight[:, s:s + tbptt] if weight is not None and weight.ndim > 1 else weight
            w = xw.shape[1]
            remaining = np.clip(full - s, 0, w)
            mask = np.arange(w)[None, :] < remaining[:, None]
            optimizer.zero_grad()
            out, _, backward = self._run(xw, np.maximum(remaining, 1), True, carried=carried)
            ls, grad, n, ok = loss_sums(self.loss, out, yw, mask, ww)
            backward(grad, False)
            self._step(optimizer, ls, n, clip_norm, snapshot)
            total, count, correct = total + ls, count + n, correct + ok
        return total, count, correct

    def _check_tbptt(self, tbptt) -> int:
        """``tbptt`` checked against the chain: windows need outputs at every step and
        recurrent layers, all in the chain itself (their states are carried), each running
        forward in time (a reverse direction would read the steps after the window)."""
        tbptt = positive_int(tbptt, "tbptt")
        if self.reduces_time:
            raise ValueError("tbptt needs outputs at every step (many-to-many); this "
                             "model reduces the time axis (a many-to-one head or a "
                             "pooling layer reads the whole sequence)")
        chain = self.layers
        for layer in chain:
            if isinstance(layer, _Container) and any(
                    isinstance(m, _RECURRENT) for m in _modules_in(layer)):
                raise ValueError(f"tbptt carries the states of recurrent layers in the "
                                 f"chain itself; the {type(layer).__name__} holds one, "
                                 f"whose state cannot be carried")
            if isinstance(layer, _RECURRENT) and (layer.bidirectional
                                                  or getattr(layer, "reverse", False)):
                raise ValueError("tbptt needs recurrent layers that run forward in time; "
                                 f"a {'bidirectional' if layer.bidirectional else 'reverse'}"
                                 f" {type(layer).__name__} reads the steps after a window")
        if not any(isinstance(layer, _RECURRENT) for layer in chain):
            raise ValueError("tbptt carries the state of the model's recurrent layers, "
                             "and this model has none")
        return tbptt

    def _eval_batch(self, batch):
        x, y, lengths, weight = batch
        ls, _, n, ok = loss_sums(self.loss, self(x, lengths), y, self._mask(lengths, x),
                                 weight)
        return ls, n, ok

    def _summary_parts(self):
        """Each layer with its output shape, probed with one sequence of two steps (the
        time axis None, or ``...`` where no layer says the input has one; ``?`` for every
        shape where no layer says the input's width)."""
        names, layers = list(self._modules), self.layers
        width = _input_width(layers)
        if width is None:
            return [(name, layer, "?") for name, layer in zip(names, layers)]
        x = np.zeros((1, 2), np.int64) if width == "tokens" else \
            np.zeros((1, 2, width), self.dtype)
        timed = any(isinstance(m, (_RECURRENT, Embedding, TimePooling, AttentionPooling))
                    for m in _modules_in(self))
        parts, has_time, read = [], True, x
        for i, (name, layer) in enumerate(zip(names, layers)):
            if isinstance(layer, Head):
                x = read                      # what it read of the layer before it
            else:
                if i + 1 < len(layers) and isinstance(layers[i + 1], Head):
                    read = _infer_headed(layer, layers[i + 1], x, None)[0]
                x = _infer(layer, x, None)
            has_time = has_time and not _reduces_time(layer)
            middle = (None if timed else "...",) if has_time else ()
            parts.append((name, layer, (None,) + middle + x.shape[1 + has_time:]))
        return parts

    def fit(self, x, y, lengths=None, *, epochs: int = 10, batch_size: int = 32,
            optimizer: Optimizer | None = None, validation_data=None,
            clip_norm: float | None = None, tbptt: int | None = None, callbacks=(),
            progress: bool = True, shuffle: bool = True, seed: int | None = None,
            initial_epoch: int = 0, validation_split: float = 0.0, sample_weight=None,
            class_weight: dict | None = None, precision: str | None = None) -> History:
        """Train by mini-batches, as :meth:`fastrnn.SequenceModel.fit` (the same loop,
        callbacks, ``History``, validation, ``validation_split``, sample and class
        weights, clipping, resumption, guard against non-finite losses and
        ``precision``).  ``validation_data`` is ``(x, y)``, ``(x, y, lengths)`` or ``(x,
        y, lengths, sample_weight)``; ``sample_weight`` has one weight a sample, or one an
        output entry while the time axis is kept (N, T); the optimizer defaults to
        Adam(lr=1e-3).  ``tbptt`` (truncated BPTT) splits long sequences into windows of
        that many steps, one optimizer step a window, carrying the state of every
        recurrent layer of the chain across windows; it needs outputs at every step and
        recurrent layers of the chain itself that run forward in time."""
        with precision_scope(precision):
            columns, validation = self._fit_data((x, y, lengths), validation_data,
                                                 validation_split, sample_weight,
                                                 class_weight)
            if tbptt is not None:
                tbptt = self._check_tbptt(tbptt)
            return self._fit(columns, validation, epochs=epochs, batch_size=batch_size,
                             optimizer=optimizer, clip_norm=clip_norm, callbacks=callbacks,
                             progress=progress, shuffle=shuffle, seed=seed,
                             train_kwargs={"tbptt": tbptt}, initial_epoch=initial_epoch)

    def forward(self, x, lengths=None, batch_size: int = 256,
                precision: str | None = None) -> np.ndarray:
        """The raw outputs (logits or values), sample-first, in mini-batches;
        ``precision="bfloat16"`` runs the recurrent layers' products in bf16
        (:func:`fastrnn.autocast`)."""
        x, lengths = self._checked_inputs(x, lengths)
        batch_size = positive_int(batch_size, "batch_size")
        with precision_scope(precision):
            return np.concatenate([
                self(x[s:s + batch_size],
                     None if lengths is None else lengths[s:s + batch_size])
                for s in range(0, x.shape[0], batch_size)], axis=0)

    def predict(self, x, lengths=None, batch_size: int = 256,
                precision: str | None = None) -> np.ndarray:
        """The loss's ``predict`` of :meth:`forward` (class indices for cross-entropy, 0/1
        labels for binary, the outputs for regression and custom losses; the outputs
        without a loss)."""
        out = self.forward(x, lengths, batch_size, precision)
        return out if self.loss is None else self.loss.predict(out)

    def predict_proba(self, x, lengths=None, batch_size: int = 256,
                      precision: str | None = None) -> np.ndarray:
        """Class probabilities (softmax or sigmoid of :meth:`forward`); a ``ValueError``
        for a regression loss."""
        if self.loss is None:
            raise ValueError("predict_proba needs a classification loss, and this "
                             "Sequential has no loss")
        return self.loss.proba(self.forward(x, lengths, batch_size, precision))

    def evaluate(self, x, y, lengths=None, batch_size: int = 256,
                 sample_weight=None, precision: str | None = None) -> dict:
        """``{"loss": ..., metric: ...}`` over the data, masked by ``lengths``, the loss
        weighted by ``sample_weight`` (as :meth:`fit` takes it) if given; ``precision``
        as :meth:`forward` takes it."""
        with precision_scope(precision):
            return self._evaluate((x, y, lengths), sample_weight, batch_size)

    def __repr__(self) -> str:
        rows = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({rows}\n)"


#: every block and container, by the ``type`` of its configuration
LAYER_TYPES: dict[str, type[Block] | type[_Container]] = {cls.__name__: cls for cls in (
    ReLU, Tanh, Sigmoid, GELU, Dropout, LayerNorm, TimePooling, AttentionPooling,
    Sequential, Residual, Concatenate, Bidirectional)}
