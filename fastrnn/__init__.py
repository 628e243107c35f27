"""fastrnn: recurrent networks (RNN, LSTM, GRU) for CPU-only Python programs.

Typed Cython kernels over BLAS for the forward unrolling and backpropagation through
time; PyTorch's equations, gate order and parameter names; heads, losses, optimizers and
a training loop around them; blocks and containers (``Sequential``) to compose them.
"""

import os as _os

# fastrnn's OpenMP threads wait for the next parallel loop by spinning a short while (GCC's
# libgomp: GOMP_SPINCOUNT=10000, about 0.3 ms here), then sleep.  That catches the next loop
# of the same training step: waking a sleeping thread took 50-150 us on the benchmark
# machine, a third of a small layer's step (RNN T=200 B=16 H=64: 1.15 -> 0.82 ms).  It is
# short, so a busy machine loses little to spinning, and libgomp shortens it by itself when
# there are more OpenMP threads than cores (several Python threads each calling fastrnn).
# Set OMP_WAIT_POLICY or GOMP_SPINCOUNT before importing fastrnn to choose otherwise; both
# are read once, when the OpenMP runtime loads.
_ENV_SET = tuple(k for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k not in _os.environ)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from . import data, heads, losses, optim  # noqa: E402
from ._runtime import blas_info  # noqa: E402
from ._engine import get_num_threads, set_num_threads  # noqa: E402
from .blocks import (GELU, AttentionPooling, Dropout, LayerNorm, ReLU, Sigmoid,  # noqa: E402
                     Tanh, TimePooling)
from .callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .heads import ManyToMany, ManyToOne, OneToMany  # noqa: E402
from .io import ModelFileError, load, load_checkpoint, save  # noqa: E402
from .layers import GRU, LSTM, RNN, Embedding, Linear  # noqa: E402
from .fastgrnn import FastGRNN, FastRNN  # noqa: E402
from .models import Seq2Seq, SequenceModel  # noqa: E402
# the names fastrnn.model held, kept for a release (fastrnn.model.X after import fastrnn)
from . import model  # noqa: E402, F401
from .module import Module, Parameter  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402
from .onnx_import import from_onnx  # noqa: E402
from .sequential import Bidirectional, Concatenate, Residual, Sequential  # noqa: E402
from .streaming import Stepper  # noqa: E402
from .torch_bridge import from_torch, to_torch  # noqa: E402
from .training import History  # noqa: E402

from ._version import __version__  # noqa: E402

__all__ = ["RNN", "LSTM", "GRU", "FastRNN", "FastGRNN", "RNNCell", "LSTMCell", "GRUCell",
           "Linear", "Embedding", "ReLU", "Tanh", "Sigmoid", "GELU", "Dropout", "LayerNorm",
           "TimePooling", "AttentionPooling", "Sequential", "Residual", "Concatenate",
           "Bidirectional",
           "ManyToMany", "ManyToOne", "OneToMany", "SequenceModel", "Seq2Seq", "Stepper",
           "History", "EarlyStopping", "ModelCheckpoint", "Module", "Parameter", "save",
           "load", "load_checkpoint", "ModelFileError", "data", "heads", "losses", "optim",
           "set_num_threads", "get_num_threads", "blas_info", "from_torch", "to_torch",
           "export_onnx", "from_onnx", "__version__"]
