"""fastrnn: recurrent networks (RNN, LSTM, GRU) for CPU-only Python programs.

Typed Cython kernels over BLAS for the forward unrolling and backpropagation through
time; PyTorch's equations, gate order and parameter names; heads, losses, optimizers and
a training loop around them.
"""

import os as _os

# fastrnn's OpenMP threads sleep as soon as a parallel loop ends instead of spinning: on a
# busy machine a spinning thread steals the core the next call needs (set OMP_WAIT_POLICY
# before importing fastrnn to choose otherwise).  Read once, when the OpenMP runtime loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import data, heads, losses, optim  # noqa: E402
from ._blas import blas_info  # noqa: E402
from ._engine import get_num_threads, set_num_threads  # noqa: E402
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .heads import ManyToMany, ManyToOne, OneToMany  # noqa: E402
from .io import ModelFileError, load, load_checkpoint, save  # noqa: E402
from .layers import GRU, LSTM, RNN, Embedding, Linear  # noqa: E402
from .model import EarlyStopping, History, ModelCheckpoint, Seq2Seq, SequenceModel, Stepper  # noqa: E402
from .module import Module, Parameter  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402
from .torch_bridge import from_torch, to_torch  # noqa: E402

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear", "Embedding",
           "ManyToMany", "ManyToOne", "OneToMany", "SequenceModel", "Seq2Seq", "Stepper",
           "History", "EarlyStopping", "ModelCheckpoint", "Module", "Parameter", "save",
           "load", "load_checkpoint", "ModelFileError", "data", "heads", "losses", "optim",
           "set_num_threads", "get_num_threads", "blas_info", "from_torch", "to_torch",
           "export_onnx", "__version__"]
