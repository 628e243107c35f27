r"""Optimizers, gradient clipping and learning-rate schedules with ``torch.optim``'s rules.

Hyper-parameter names, defaults and update rules are PyTorch's (``torch.optim.SGD``,
``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``; ``torch.nn.utils.clip_grad_norm_``;
``torch.optim.lr_scheduler``), so one step from the same parameters and gradients gives
the same numbers, in float32 and float64.

An optimizer is bookkeeping around one update function per algorithm
(:func:`sgd_update`, :func:`adam_update`, :func:`rmsprop_update`, :func:`adagrad_update`):
plain elementwise NumPy over arrays, in place, with ``out=`` into two reused scratch
buffers, and the same operation order as PyTorch's CPU kernels.  The update functions
never write into ``grad``.

The per-parameter state is keyed by the parameter's position (its index over all
parameter groups, in order), so :meth:`Optimizer.state_dict` is a plain, portable
structure of numbers and arrays::

    {"state": {0: {"step": 3, "exp_avg": array, ...}, ...},
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1, 2]}]}

It holds nothing that needs pickle: JSON for the numbers plus ``.npz`` for the arrays
store it exactly.
"""

from __future__ import annotations

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm, clip_grad_value
from .functional import adagrad_update, adam_update, rmsprop_update, sgd_update
from .lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LRScheduler,
                           StepLR)
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
           "sgd_update", "adam_update", "rmsprop_update", "adagrad_update",
           "clip_grad_norm", "clip_grad_value",
           "LRScheduler", "LambdaLR", "StepLR", "ExponentialLR", "CosineAnnealingLR"]
