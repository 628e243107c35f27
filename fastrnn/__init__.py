"""fastrnn: recurrent networks (RNN, LSTM, GRU) for CPU-only Python programs.

Typed Cython kernels over BLAS for the forward unrolling and backpropagation through
time; PyTorch's equations, gate order and parameter names; heads, losses, optimizers and
a training loop around them; blocks and containers (``Sequential``) to compose them.
"""

# first: the OpenMP environment defaults, read once when the OpenMP runtime loads
from . import _environ

_ENV_SET = tuple(_environ.SET)     # the names it set (bench/harness.py reads them)

from . import data, heads, losses, optim  # noqa: E402
from ._validate import PaddingWarning  # noqa: E402
from ._runtime import (blas_info, get_num_threads, process_settings,  # noqa: E402
                       set_num_threads, show_config, threads)
from . import _threadpool  # noqa: E402, F401  (threadpoolctl's controller, if installed)
from .blocks import (GELU, AttentionPooling, Dropout, LayerNorm, ReLU, Sigmoid,  # noqa: E402
                     Tanh, TimePooling)
from .callbacks import EarlyStopping, LearningRateScheduler, ModelCheckpoint  # noqa: E402
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
from .precision import autocast  # noqa: E402
from .sequential import Bidirectional, Concatenate, Residual, Sequential  # noqa: E402
from .streaming import Stepper  # noqa: E402
from .quantization import dequantize, quantize  # noqa: E402
from .torch_bridge import from_torch, to_torch  # noqa: E402
from .training import History  # noqa: E402

from ._version import __version__  # noqa: E402

__all__ = ["RNN", "LSTM", "GRU", "FastRNN", "FastGRNN", "RNNCell", "LSTMCell", "GRUCell",
           "Linear", "Embedding", "ReLU", "Tanh", "Sigmoid", "GELU", "Dropout", "LayerNorm",
           "TimePooling", "AttentionPooling", "Sequential", "Residual", "Concatenate",
           "Bidirectional",
           "ManyToMany", "ManyToOne", "OneToMany", "SequenceModel", "Seq2Seq", "Stepper",
           "History", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "Module",
           "Parameter", "save", "load", "load_checkpoint", "ModelFileError", "data", "heads",
           "losses", "optim",
           "set_num_threads", "get_num_threads", "threads", "process_settings", "show_config",
           "blas_info",
           "from_torch", "to_torch", "export_onnx", "from_onnx", "PaddingWarning",
           "quantize", "dequantize", "autocast",
           "__version__"]
