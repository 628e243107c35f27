"""Type stubs of the recurrent kernels (fastrnn/_core.pyx).

Arrays are float32 or float64 (one dtype per call), C-contiguous; ``nact`` and ``bounds``
are int32.  Every kernel writes into the arrays it is given and returns None.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_I = npt.NDArray[np.intc]
_U = npt.NDArray[np.uint16]     # bf16 bits (fastrnn/_b16.h)

LAYOUT_TRANSPOSED: int
LAYOUT_LSTM_ROW: int
LAYOUT_PANELS: int

KIND_RNN: int
KIND_LSTM: int
KIND_GRU: int
KIND_FASTRNN: int
KIND_FASTGRNN: int
KIND_GRU_RB: int
KIND_LSTM_P: int
KIND_LSTM_LN: int
LN_EPS: float

def set_isa_cap(name: str | None = ...) -> None: ...
def isa() -> str: ...
def b16_fuses(kind: int) -> bool: ...
def b16_backward_size(T: int, B: int, I: int, GH: int, P: int, H: int) -> int: ...
def kind_gates(kind: int) -> int: ...
def kind_row(kind: int) -> dict[str, int]: ...
def forward(kind: int, X: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, nact: _I,
            bounds: _I, h: _F, Y: _F, col: int, Gt: _F, *, c: _F | None = ...,
            Hp: _F | None = ..., Cp: _F | None = ..., Gh: _F | None = ...,
            Hn: _F | None = ..., Ht: _F | None = ..., scalars: _F | None = ...,
            peephole: _F | None = ..., W_hr: _F | None = ..., Hm: _F | None = ...,
            hmask: _F | None = ..., zh: _F | None = ..., zc: _F | None = ...,
            reverse: bool = ..., relu: bool = ...,
            W_hh_t: _F | None = ..., layout: int = ..., W_ih_p: _F | None = ...,
            W_hh_b: _U | None = ..., W_ih_b: _U | None = ..., Xb: _U | None = ...,
            hb: _U | None = ...) -> None: ...
def backward(kind: int, X: _F, W_ih: _F, W_hh: _F, nact: _I, bounds: _I, Gt: _F, Hp: _F,
             dY: _F | None, col: int, dh: _F, dW_ih: _F, dW_hh: _F, db_ih: _F, db_hh: _F, *,
             dc: _F | None = ..., Cp: _F | None = ..., Gh: _F | None = ...,
             Hn: _F | None = ..., Ht: _F | None = ..., scalars: _F | None = ...,
             dscalars: _F | None = ..., peephole: _F | None = ...,
             dpeephole: _F | None = ..., W_hr: _F | None = ..., Hm: _F | None = ...,
             dW_hr: _F | None = ..., hmask: _F | None = ..., zh: _F | None = ...,
             zc: _F | None = ..., dX: _F | None = ...,
             accumulate_dx: bool = ...,
             reverse: bool = ..., relu: bool = ..., W_hh_p: _F | None = ...,
             W_hh_b: _U | None = ..., W_ih_b: _U | None = ...,
             b16_work: _U | None = ...) -> None: ...
def ln_forward(X: _F, W_ih: _F, W_hh: _F, norms: tuple[_F, ...], nact: _I, bounds: _I,
               h: _F, c: _F, Y: _F, col: int, Gt: _F, Gh: _F, *, Hp: _F | None = ...,
               Cp: _F | None = ..., Xn: _F | None = ..., Xh: _F | None = ...,
               Xc: _F | None = ..., R: _F | None = ..., reverse: bool = ...,
               W_hh_t: _F | None = ..., layout: int = ...) -> None: ...
def ln_backward(X: _F, W_ih: _F, W_hh: _F, norms: tuple[_F, ...], nact: _I, bounds: _I,
                Gt: _F, Hp: _F, Cp: _F, Xn: _F, Xh: _F, Xc: _F, R: _F, Gh: _F,
                dY: _F | None, col: int, dh: _F, dc: _F, dW_ih: _F, dW_hh: _F,
                dnorms: tuple[_F, ...], *, dX: _F | None = ..., accumulate_dx: bool = ...,
                reverse: bool = ..., W_hh_p: _F | None = ...) -> None: ...
def shared_loops() -> int: ...
def same_bytes(a: npt.ArrayLike, b: npt.ArrayLike) -> bool: ...
def lstm_pack(W_hh: _F, out: _F) -> None: ...
