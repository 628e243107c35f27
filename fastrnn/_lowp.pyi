"""Type stubs of the low-precision inference kernels (fastrnn/_lowp.pyx): the int8
product and the quantized inference time loop, and the instruction-set level they use.

Float arrays are float32, C-contiguous; weights int8, column sums int32, quantized
activations uint8; ``nact`` and ``bounds`` int32.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.float32]
_I = npt.NDArray[np.intc]
_I8 = npt.NDArray[np.int8]
_U8 = npt.NDArray[np.uint8]
_I32 = npt.NDArray[np.int32]

MAX_K: int
LEVELS: tuple[str, ...]

def isa() -> str: ...
def detected_isa() -> str: ...
def set_isa_cap(level: str) -> None: ...
def product_path() -> str: ...
def kpad(K: int) -> int: ...
def pack(W: _I8) -> tuple[_I8, _I32]: ...
def quantize_rows(A: _F) -> tuple[_U8, _F]: ...
def product(Q: _U8, s: _F, packed: _I8, colsum: _I32, w_scale: _F, bias: _F | None = ...,
            out: _F | None = ..., accumulate: bool = ...,
            sums: bool = ..., portable: bool = ...) -> npt.NDArray[np.float32] | _I32: ...
def forward(kind: int, relu: bool, X: _F, W_ih: _I8, cs_ih: _I32, sw_ih: _F, W_hh: _I8,
            cs_hh: _I32, sw_hh: _F, bias: _F, b_hn: _F, nact: _I, bounds: _I, h: _F,
            c: _F | None, Y: _F, col: int, reverse: bool = ...,
            parts_ih: int = ..., step_input: bool = ...) -> None: ...
