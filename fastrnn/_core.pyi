"""Type stubs of the recurrent kernels (fastrnn/_core.pyx).

Arrays are float32 or float64 (one dtype per call), C-contiguous; ``nact`` and ``bounds``
are int32.  Every kernel writes into the arrays it is given and returns None.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_I = npt.NDArray[np.intc]

LAYOUT_TRANSPOSED: int
LAYOUT_LSTM_ROW: int
LAYOUT_PANELS: int

def rnn_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                relu: bool, h: _F, Y: _F, col: int, Gt: _F, Hp: _F, bounds: _I,
                W_hh_t: _F, layout: int = ...,
                W_ih_p: _F | None = ...) -> None: ...
def rnn_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, relu: bool, Gt: _F,
                 Hp: _F, dY: _F, col: int, dh: _F, dX: _F, accumulate_dx: bool,
                 dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F, bounds: _I,
                 W_hh_p: _F) -> None: ...
def same_bytes(a: npt.ArrayLike, b: npt.ArrayLike) -> bool: ...
def lstm_pack(W_hh: _F, out: _F) -> None: ...
def lstm_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                 h: _F, c: _F, Y: _F, col: int, Gt: _F, Hp: _F, Cp: _F, bounds: _I,
                 W_hh_t: _F, layout: int = ...,
                 W_ih_p: _F | None = ...) -> None: ...
def lstm_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, Gt: _F, Hp: _F,
                  Cp: _F, dY: _F, col: int, dh: _F, dc: _F, dX: _F, accumulate_dx: bool,
                  dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F, bounds: _I,
                  W_hh_p: _F) -> None: ...
def gru_forward(X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I, reverse: bool,
                h: _F, Y: _F, col: int, Gt: _F, Gh: _F, Hp: _F, Hn: _F, bounds: _I,
                W_hh_t: _F, layout: int = ...,
                W_ih_p: _F | None = ...) -> None: ...
def gru_backward(X: _F, W_ih: _F, W_hh: _F, nact: _I, reverse: bool, Gt: _F, Gh: _F,
                 Hp: _F, Hn: _F, dY: _F, col: int, dh: _F, dX: _F, accumulate_dx: bool,
                 dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F, bounds: _I,
                 W_hh_p: _F) -> None: ...
