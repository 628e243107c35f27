"""Type stubs of the GEMM floor (fastrnn/_floor.pyx), a benchmark tool.

Arrays are float32 or float64 (one dtype per call), C-contiguous; ``nact`` and ``bounds``
are int32.  The arrays are scratch: their values are irrelevant.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]
_I = npt.NDArray[np.intc]

def gemm_floor(X: _F, W_ih: _F, W_hh: _F, W_hh_t: _F, W_hh_p: _F, Gt: _F, h: _F, Hp: _F,
               dX: _F, dW_ih: _F, dW_hh: _F, nact: _I, bounds: _I, train: bool,
               layout: int = ..., W_ih_p: _F | None = ...) -> None: ...
