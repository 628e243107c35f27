"""Type stubs of the compiled kernels (fastrnn/_core.pyx).

Arrays are float32 or float64 (one dtype per call), C-contiguous; ``nact`` is int32.
Every kernel writes into the arrays it is given and returns None.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_I = npt.NDArray[np.intc]

def blas_gemm(A: _F, B: _F, C: _F, trans_a: bool = ..., trans_b: bool = ...,
              alpha: float = ..., beta: float = ...) -> None: ...
def rnn_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                relu: bool, h: _F, Y: _F, col: int, Gt: _F, Hp: _F) -> None: ...
def rnn_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, relu: bool, Gt: _F,
                 Hp: _F, dY: _F, col: int, dh: _F, dX: _F, accumulate_dx: bool,
                 dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F) -> None: ...
def lstm_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                 h: _F, c: _F, Y: _F, col: int, Gt: _F, Hp: _F, Cp: _F) -> None: ...
def lstm_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, Gt: _F, Hp: _F,
                  Cp: _F, dY: _F, col: int, dh: _F, dc: _F, dX: _F, accumulate_dx: bool,
                  dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F) -> None: ...
def gru_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                h: _F, Y: _F, col: int, Gt: _F, Gh: _F, Hp: _F, Hn: _F) -> None: ...
def gru_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, Gt: _F, Gh: _F,
                 Hp: _F, Hn: _F, dY: _F, col: int, dh: _F, dX: _F, accumulate_dx: bool,
                 dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F) -> None: ...
