"""Streaming inference: :class:`Stepper` feeds a model one time step per call.

The state is carried between calls in buffers allocated once; each step runs the one-step
kernel of every layer and the readout (``fastrnn._engine.step``, ``readout``), the same
cell math as the whole-sequence call.  Every head streams: a per-step head gives that
step's output, a many-to-one head the prediction for the sequence read so far (early
classification of a stream).
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _engine
from ._validate import flag, positive_int
from .heads import Head
from .cells import int8_layers
from .layers import _RNNBase

__all__ = ["Stepper"]


class Stepper:
    """Streaming inference for a unidirectional :class:`~fastrnn.SequenceModel`, whatever
    its head (``model.stepper(batch_size)`` makes one).

    ``out = stepper.step(x_t)`` feeds one time step of ``batch_size`` rows (x_t (B, I), or
    tokens (B,)) and returns the head's outputs (B, C); the state is carried between calls.
    For a many-to-many or one-to-many head that is this step's output; for a many-to-one
    head it is the output for the sequence read so far -- what ``model.forward`` gives for
    the first t+1 steps -- so a stream is classified after every step (``model.loss.proba``
    and ``model.loss.predict`` turn it into probabilities and classes).
    ``run(xs)`` feeds a chunk of steps, batch-first (B, T, I) as the models take it.
    ``reset(rows)`` zeroes the state of selected rows (a new session in that batch slot).
    All buffers are allocated once: ``step`` allocates nothing, and the array it returns is
    overwritten by the next call (copy it to keep it).  Results equal the whole-sequence
    call.  A FastRNN or FastGRNN model's scalars (and low-rank weights) are read when the
    stepper is made: make a new one after training such a model further.

    >>> import numpy as np
    >>> import fastrnn
    >>> model = fastrnn.SequenceModel.build("lstm", input_size=3, hidden_size=8, output_size=2,
    ...                                     seed=0)
    >>> x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    >>> stepper = model.stepper(batch_size=2)
    >>> outs = [stepper.step(x[:, t]).copy() for t in range(6)]
    >>> logits = np.stack(outs, axis=1)                 # (B, T, C), as the whole sequence
    >>> bool(np.array_equal(logits.argmax(-1), model.predict(x)))
    True
    >>> stepper.reset([1])                              # a new session in slot 1

    A many-to-one classifier's stepper says after each step what the stream so far is:

    >>> clf = fastrnn.SequenceModel.build("gru", input_size=3, hidden_size=8,
    ...                                   output_size=4, head="many_to_one", seed=0)
    >>> early = clf.stepper(batch_size=2).run(x)         # (B, T, C): after every step
    >>> bool(np.allclose(early[:, 2], clf.forward(x[:, :3]), atol=1e-6))
    True
    """

    def __init__(self, model, batch_size: int = 1):
        # what a SequenceModel is made of, checked part by part (fastrnn.models builds on
        # this module, so it cannot be imported here)
        rnn, head = getattr(model, "rnn", None), getattr(model, "head", None)
        if not isinstance(rnn, _RNNBase) or not isinstance(head, Head):
            raise TypeError(f"model must be a SequenceModel, got {type(model).__name__}")
        if rnn.bidirectional or rnn.reverse:
            raise ValueError(f"a {'bidirectional' if rnn.bidirectional else 'reverse=True'} "
                             f"model cannot stream: its backward direction needs the whole "
                             f"sequence")
        B = positive_int(batch_size, "batch_size")
        self.model, self.batch_size = model, B
        L, H, P, dt = rnn.num_layers, rnn.hidden_size, rnn.state_size, rnn.dtype
        self._kind, self._relu = rnn.kind, rnn.nonlinearity == "relu"
        self.h = np.zeros((L, B, P), dt)
        self.c = np.zeros((L, B, H), dt) if rnn.kind.has_cell else None
        # per layer: its weights, its (B, H) state views (updated in place), its workspace
        # (FastRNN and FastGRNN: their scalars and low-rank weights as they are now: a
        # stepper made before more training streams the weights it was made with)
        # zoneout at inference: the rates mix each step's state with the previous one
        zones = _engine.zoneout_arrays(None, False, 1, B, (P, H),
                                       (rnn.zoneout, rnn.zoneout_cell), rnn.kind.has_cell, dt)
        self._zones = zones
        self._layers = [(layer[0], self.h[k], None if self.c is None else self.c[k],
                         *_engine.step_workspace(rnn.kind, B, H, dt, P,
                                                 sequence=zones[0] is not None))
                        for k, layer in enumerate(rnn._weights())]
        self._x = np.empty((B, rnn.input_size), dt)
        # a quantized model: each layer's int8 record, and the one-step output workspace
        self._q8 = int8_layers(rnn) if rnn.quantized else None
        self._y = np.empty((1, B, H), dt)
        readout = head.readout
        self._W = readout.weight.data
        self._b = readout.bias.data if readout.bias is not None else None
        self._out = np.empty((B, readout.out_features), dt)

    def reset(self, rows=None) -> None:
        """Zero the state of every row, or of the given rows (indices or a boolean mask)."""
        if rows is None:
            self.h.fill(0)
            if self.c is not None:
                self.c.fill(0)
            return
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.batch_size,):
                raise ValueError(f"rows mask must have shape ({self.batch_size},), "
                                 f"got {rows.shape}")
        elif rows.dtype.kind not in "iu" or (rows.size and (rows.min() < -self.batch_size or
                                                            rows.max() >= self.batch_size)):
            raise ValueError(f"rows must be indices in [0, {self.batch_size}) or a mask")
        self.h[:, rows] = 0
        if self.c is not None:
            self.c[:, rows] = 0

    @property
    def state(self):
        """A copy of the current state: h (L, B, P), or (h, c) for an LSTM."""
        return (self.h.copy(), self.c.copy()) if self.c is not None else self.h.copy()

    def _input(self, x_t) -> np.ndarray:
        emb = self.model.embedding
        if emb is not None:
            t = np.asarray(x_t)
            if t.shape != (self.batch_size,) or t.dtype.kind not in "iu":
                raise ValueError(f"x_t must be {self.batch_size} integer tokens, got "
                                 f"{t.dtype} of shape {t.shape}")
            if t.min() < 0 or t.max() >= emb.num_embeddings:
                raise ValueError(f"tokens must lie in [0, {emb.num_embeddings})")
            np.take(emb.weight.data, t, axis=0, out=self._x)
            return self._x
        x = np.asarray(x_t)
        if x.shape != self._x.shape:
            raise ValueError(f"x_t must have shape {self._x.shape}, got {x.shape}")
        if x.dtype != self._x.dtype or not x.flags.c_contiguous:
            if x.dtype.kind not in "fiub":
                raise TypeError(f"x_t must hold real numbers, got dtype {x.dtype}")
            np.copyto(self._x, x, casting="unsafe")
            return self._x
        return x

    def step(self, x_t) -> np.ndarray:
        """Feed one time step; returns the outputs (B, C) (a buffer reused by the next
        call)."""
        X = self._input(x_t)
        kind, relu = self._kind, self._relu
        for k, (weights, h, c, gates, gh) in enumerate(self._layers):
            if self._q8 is not None:
                _engine.q8_step(kind, relu, X, self._q8[k][0], h, c, self._y)
            else:
                _engine.step(kind, relu, X, weights, h, c, gates, gh, self._zones)
            X = h                                 # this layer's new state feeds the next
        _engine.readout(X, self._W, self._b, self._out)   # out = h_top @ W_hy.T + b_y
        return self._out

    def run(self, xs, batch_first: bool | None = None) -> np.ndarray:
        """Feed a chunk of steps, batch-first as the models take it: ``xs`` (B, T, I) or
        tokens (B, T); returns the output after each step, (B, T, C) (a new array).
        ``batch_first=False`` takes and returns time-major (T, B, ...) instead.

        Earlier releases took time-major input only.  For this release, ``xs`` that can
        only be time-major -- its second axis is ``batch_size`` and its first is not -- is
        still read so, with a ``DeprecationWarning`` (pass ``batch_first=False`` to keep
        it); where both axes are ``batch_size`` it is read batch-first, with a warning
        unless ``batch_first`` is given."""
        xs = np.asarray(xs)
        B = self.batch_size
        if xs.ndim < 2:
            raise ValueError(f"xs must be a chunk of steps (batch_size={B}, T, ...), got "
                             f"shape {xs.shape}")
        if batch_first is None:
            old = xs.shape[1] == B and xs.shape[0] != B
            if old or xs.shape[0] == xs.shape[1] == B > 1:
                warnings.warn(f"Stepper.run takes batch-first xs (B, T, ...) now, as the "
                              f"models do; these {xs.shape} are read "
                              f"{'time-major (T, B, ...), as before' if old else 'batch-first'}"
                              f": pass batch_first={not old} to say so (time-major without "
                              f"it is read in this release only)", DeprecationWarning,
                              stacklevel=2)
            batch_first = not old
        batch_first = flag(batch_first, "batch_first")
        steps = xs.swapaxes(0, 1) if batch_first else xs
        if steps.shape[1] != B or steps.shape[0] == 0:
            layout = "(batch_size, T, ...)" if batch_first else "(T, batch_size, ...)"
            raise ValueError(f"xs must be {layout} with batch_size={B} and T >= 1, got "
                             f"shape {xs.shape}")
        out = np.stack([self.step(steps[t]).copy() for t in range(steps.shape[0])])
        return out.swapaxes(0, 1).copy() if batch_first else out
