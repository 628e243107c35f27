"""Type stubs of the one-step entry (fastrnn/_step.pyx): one time step of a cell.

Arrays are float32 or float64 (the dtype of the weights), C-contiguous.
"""

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.floating]

def step(mode: int, relu: bool, x: _F, W_ih: _F, W_hh: _F, b_ih: _F, b_hh: _F, h: _F,
         c: _F, gates: _F, gh: _F) -> None: ...
def cell_call(mode: int, relu: bool, x: object, state: object, W_ih: _F, W_hh: _F,
              b_ih: _F, b_hh: _F) -> _F | tuple[_F, _F] | None: ...
