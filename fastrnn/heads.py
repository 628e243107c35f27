"""Sequence heads: what a recurrent network's outputs become.

A head owns the readout ``y_t = W_hy h_t + b_y`` (a :class:`~fastrnn.layers.Linear`) and
decides where it is read:

* :class:`ManyToMany`  -- at every time step (tagging, forecasting, language models);
* :class:`ManyToOne`   -- once, after the last valid step of each sequence
  (classification, e.g. an image read one row at a time);
* :class:`OneToMany`   -- at every step, and at inference the prediction of each step is
  fed back as the next input (generation from a seed).

The encoder-decoder (many-to-many with a delay) is a model of its own,
:class:`fastrnn.models.Seq2Seq`, whose decoder uses a :class:`ManyToMany` head.

Heads see the recurrent layer's outputs in its own layout (time-major unless the layer
is ``batch_first``), with the lengths already applied: ``y`` is 0 at padded steps and the
final state is each sequence's state at its last valid step.  So no head reads
``lengths``; every head still takes it, for callers that pass it, and the models call heads
without it.
"""

from __future__ import annotations

import numpy as np

from ._validate import positive_int
from .layers import Linear, zero_gradient
from .module import Module

__all__ = ["Head", "ManyToMany", "ManyToOne", "OneToMany", "HEAD_TYPES", "sample_logits"]


class Head(Module):
    """Base class: ``forward_train(y, state, lengths=None) -> (out, backward)`` with
    ``backward(dout) -> (dy, dstate)``; ``__call__(y, state, lengths=None) -> out``.

    ``y`` and ``state`` are a recurrent layer's outputs and final state; ``dy`` and
    ``dstate`` are their gradients, for the layer's ``backward(dy, dstate)`` (``dstate``
    None: zeros).  ``lengths`` is accepted and not read (see the module's notes).

    >>> from fastrnn.heads import ManyToMany
    >>> head = ManyToMany(4, 3, seed=0)
    >>> head.in_features, head.out_features
    (4, 3)
    """

    per_step = True

    def __init__(self, in_features: int, out_features: int, dtype=np.float32,
                 seed: int | None = None):
        super().__init__()
        self.readout = self._add_module("readout", Linear(in_features, out_features,
                                                          dtype=dtype, seed=seed))

    @property
    def in_features(self) -> int:
        return self.readout.in_features

    @property
    def out_features(self) -> int:
        return self.readout.out_features

    def __call__(self, y, state, lengths=None):
        raise NotImplementedError           # each head reads y and the state its own way

    def forward_train(self, y, state, lengths=None):
        raise NotImplementedError

    @property
    def reduces_time(self) -> bool:
        """True for a head with one output per sequence (:class:`ManyToOne`): a
        :class:`fastrnn.Sequential` passes no ``lengths`` past it."""
        return not self.per_step

    def config(self) -> dict:
        return {"type": type(self).__name__, "in_features": self.in_features,
                "out_features": self.out_features}

    @classmethod
    def from_config(cls, cfg: dict, dtype, seed: int | None = None) -> Head:
        """The head a :meth:`config` describes, in ``dtype``, its readout drawn from
        ``seed``."""
        args = {k: v for k, v in cfg.items() if k != "type"}
        return cls(**args, dtype=dtype, seed=seed)

    @staticmethod
    def config_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` of the parameters of the head of ``cfg`` (its readout's, with
        a bias), without building it."""
        shape = (positive_int(cfg["out_features"], "out_features"),
                 positive_int(cfg["in_features"], "in_features"))
        return [("readout.weight", shape), ("readout.bias", shape[:1])]

    @staticmethod
    def config_children(cfg: dict) -> list[tuple[str, dict]]:
        return []

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class ManyToMany(Head):
    """A readout at every time step: ``out[t] = W_hy y[t] + b_y``, shape (T, B, C) (or
    (B, T, C) for a batch_first layer).  With lengths, padded steps are masked out of the
    loss by the model.

    >>> import numpy as np
    >>> from fastrnn.heads import ManyToMany
    >>> head = ManyToMany(4, 3, seed=0)
    >>> y = np.ones((5, 2, 4), np.float32)              # (T, B, H) outputs of a layer
    >>> head(y, None).shape
    (5, 2, 3)
    """

    per_step = True

    def __call__(self, y, state, lengths=None):
        return self.readout(y)

    def forward_train(self, y, state, lengths=None):
        out, backward_readout = self.readout.forward_train(y)

        def backward(dout):
            return backward_readout(dout), None

        return out, backward


class OneToMany(ManyToMany):
    """A many-to-many readout whose predictions are fed back as inputs when generating
    (see :meth:`fastrnn.models.SequenceModel.generate`).

    >>> from fastrnn.heads import OneToMany
    >>> OneToMany(4, 10, seed=0)
    OneToMany(4, 10)
    """


def _last_layer_h(state):
    return state[0] if isinstance(state, tuple) else state


class ManyToOne(Head):
    """One readout per sequence, from its last valid step: ``out = W_hy f + b_y``, shape
    (B, C).

    ``f`` is the last layer's final state: the forward direction's state at step
    ``lengths[b] - 1`` and, for a bidirectional layer, the backward direction's state after
    step 0 (its output at the first step), concatenated as PyTorch users do with
    ``torch.cat([h_n[-2], h_n[-1]], 1)``.  No gradient reaches ``y``: the ``dy`` of
    ``forward_train``'s backward is :func:`fastrnn.layers.zero_gradient` of it (zeros that
    hold no memory, which the layer's backward does not copy).

    >>> import numpy as np
    >>> from fastrnn.heads import ManyToOne
    >>> head = ManyToOne(2 * 4, 3, num_directions=2, seed=0)
    >>> h_n = np.ones((2, 5, 4), np.float32)            # (L*D, B, H) final states
    >>> head(None, h_n).shape
    (5, 3)
    """

    per_step = False

    def __init__(self, in_features: int, out_features: int, num_directions: int = 1,
                 dtype=np.float32, seed: int | None = None):
        if num_directions not in (1, 2):
            raise ValueError(f"num_directions must be 1 or 2, got {num_directions}")
        self.num_directions = num_directions
        super().__init__(in_features, out_features, dtype, seed)

    def config(self) -> dict:
        return {**super().config(), "num_directions": self.num_directions}

    def features(self, state) -> np.ndarray:
        h = _last_layer_h(state)                       # (L*D, B, H)
        D = self.num_directions
        return np.concatenate(list(h[-D:]), axis=1) if D == 2 else h[-1]

    def __call__(self, y, state, lengths=None):
        return self.readout(self.features(state))

    def forward_train(self, y, state, lengths=None):
        h = _last_layer_h(state)
        out, backward_readout = self.readout.forward_train(self.features(state))
        D, H = self.num_directions, h.shape[2]

        def backward(dout):
            dfeat = backward_readout(dout)
            dh = np.zeros_like(h)
            for d in range(D):
                dh[h.shape[0] - D + d] = dfeat[:, d * H:(d + 1) * H]
            # the readout reads h_n only: no gradient reaches y or c_n (zeros that hold no
            # memory, which the layer's backward does not copy)
            dstate = (dh, zero_gradient(state[1])) if isinstance(state, tuple) else dh
            return (None if y is None else zero_gradient(y)), dstate

        return out, backward


#: every head, by the ``type`` of its configuration
HEAD_TYPES: dict[str, type[Head]] = {cls.__name__: cls for cls in (ManyToMany, ManyToOne,
                                                                   OneToMany)}


def sample_logits(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                  top_k: int | None = None) -> np.ndarray:
    """Draw one class per row of ``logits`` (B, C) from ``softmax(logits / temperature)``,
    restricted to the ``top_k`` most likely classes if given; temperature 0 is argmax.

    >>> import numpy as np
    >>> from fastrnn.heads import sample_logits
    >>> logits = np.array([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]])
    >>> sample_logits(logits, np.random.default_rng(0), temperature=0)
    array([1, 0])
    >>> sample_logits(logits, np.random.default_rng(0), top_k=1)
    array([1, 0])
    """
    if temperature == 0:
        return logits.argmax(axis=-1)
    z = logits.astype(np.float64)
    # shift before scaling: z <= 0, so a tiny temperature sends the rest to -inf (exp 0)
    # and keeps the most likely at 0 (exp 1): argmax, where z / T alone would overflow
    z -= z.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        z /= temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    return np.minimum((p.cumsum(axis=-1) < u).sum(axis=-1), z.shape[-1] - 1)
