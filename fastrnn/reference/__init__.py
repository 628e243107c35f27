"""Pure-NumPy reference implementation of the RNN, LSTM and GRU layers (``cells``), and of
FastRNN and FastGRNN (``fastgrnn``, whose notation adds to the one below).

This module is the oracle of the tests (the kernels of ``fastrnn._core`` must match it
in float64 to 1e-10) and the NumPy baseline of the benchmarks. It is written the way a
careful NumPy user would write it: vectorised over the batch, the input projection of
all time steps done as one matmul before the time loop, the weight gradients as one
matmul each after the backward loop. Only the recurrence is a Python loop over t.
Computations run in the dtype of ``x`` (float32 or float64); inputs are never modified.

Equations, gate order and parameter shapes are PyTorch's ``nn.RNN``, ``nn.LSTM`` and
``nn.GRU``; each forward function states its equations as numbered steps (1), (2), ...
and each backward comment carries the number of the forward step it differentiates ("(3)
then (2)" for a chain through both).

Notation (the one notation of fastrnn: ``_core.pyx`` and ``_cellmath.h`` cite it)
-------------------------------------------------------------------------------------
::

    T, B, I, H    time steps, batch rows, input features, hidden units.
    NG            gate blocks (G in the kernels): 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU:
                  r, z, n). Every (..., NG*H) array holds the blocks side by side in that
                  order.
    x             (T, B, I) input, time-major (X: the same as (T*B, I) rows).
    h_prev, h_t   (B, H) hidden state entering / leaving step t; c_prev, c_t for the LSTM.
    Xp            (T, B, NG*H) input projection of all steps, ``x @ W_ih.T + b_ih``: one
                  matmul over the T*B rows. The RNN and LSTM fold ``b_hh`` into it too; the
                  GRU cannot, because r multiplies ``b_hn``. (The kernels' Gt holds it.)
    Gh            (B, NG*H) recurrent projection of one step, ``h_prev @ W_hh.T``
                  (``+ b_hh`` for the GRU).
    Hn            (T, B, H) GRU only: the n block of Gh of every step, ``W_hn h_prev + b_hn``.
    A             (T, B, NG*H) gate activations (after sigmoid / tanh / relu).
    Hp, Cp        (T, B, H) h_prev (c_prev) of every step, kept for the backward pass.
    dh, dc        (B, H) gradient reaching h_t / c_t: from the step processed after t,
                  plus ``dy[t]``.
    dGx, dGh      (T, B, NG*H) gradient w.r.t. the pre-activations fed by Xp / by Gh.
                  They are one array (dG) except for the GRU, whose n blocks differ
                  (``dGh_n = dGx_n * r``).
    active        (T, B) bool, ``t < lengths[b]``; None without lengths.

After the backward loop, over all T*B rows at once::

    dx    = dGx @ W_ih        dW_ih = dGx.T @ x         db_ih = dGx.sum(0)
    dW_hh = dGh.T @ Hp        db_hh = dGh.sum(0)

Lengths follow ``pack_padded_sequence(..., enforce_sorted=False)``: where ``active[t, b]``
is False, row b keeps its state unchanged and outputs 0. So the forward direction stops
after step ``lengths[b] - 1``, and the reverse direction (t = T-1 down to 0) starts there
from h0. The backward pass ignores ``dy`` at those steps and passes dh, dc through them.
"""

from ._common import NUM_GATES as NUM_GATES  # the gate counts, checked against _kinds
from ._common import sigmoid
from .cells import (gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward,
                    rnn_forward, stack_backward, stack_forward)
from .fastgrnn import (fastgrnn_backward, fastgrnn_forward, fastrnn_backward, fastrnn_forward,
                       low_rank_backward, low_rank_weight)

__all__ = [
    "sigmoid",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "stack_forward",
    "stack_backward",
    "fastrnn_forward",
    "fastrnn_backward",
    "fastgrnn_forward",
    "fastgrnn_backward",
    "low_rank_weight",
    "low_rank_backward",
]
