"""Compatibility module: the names ``fastrnn.model`` held, re-exported from their homes.

``fastrnn.model`` was split into :mod:`fastrnn.training` (the fit loop, ``History``,
``Callback``, ``NonFiniteLossError``), :mod:`fastrnn.callbacks` (``EarlyStopping``,
``ModelCheckpoint``), :mod:`fastrnn.models` (``SequenceModel``, ``Seq2Seq``) and
:mod:`fastrnn.streaming` (``Stepper``).  This module is kept for one release for code that
imports ``fastrnn.model.X``; import from ``fastrnn`` or the modules above instead.
"""

from .callbacks import EarlyStopping, ModelCheckpoint
from .models import Seq2Seq, SequenceModel
from .streaming import Stepper
from .training import Callback, History, NonFiniteLossError

__all__ = ["SequenceModel", "Seq2Seq", "Stepper", "History", "Callback", "EarlyStopping",
           "ModelCheckpoint", "NonFiniteLossError"]
