"""fastrnn: recurrent networks (RNN, LSTM, GRU) for CPU-only Python programs.

Typed Cython kernels over BLAS for the forward unrolling and backpropagation through
time; PyTorch's equations, gate order and parameter names.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN
from .module import Module, Parameter

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Module", "Parameter",
           "__version__"]
