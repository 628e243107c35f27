"""The environment defaults fastrnn sets before its OpenMP runtime loads.

fastrnn's OpenMP threads wait for the next parallel loop by spinning a short while (GCC's
libgomp: GOMP_SPINCOUNT=10000, about 0.3 ms here), then sleep.  That catches the next loop
of the same training step: waking a sleeping thread took 50-150 us on the benchmark
machine, a third of a small layer's step (RNN T=200 B=16 H=64: 1.15 -> 0.82 ms).  It is
short, so a busy machine loses little to spinning, and libgomp shortens it by itself when
there are more OpenMP threads than cores (several Python threads each calling fastrnn).
Set OMP_WAIT_POLICY or GOMP_SPINCOUNT before importing fastrnn to choose otherwise (either
one: fastrnn then sets neither, since an explicit spin count overrides the wait policy);
both are read once, when the OpenMP runtime loads, so this module is the first one
``import fastrnn`` runs.  ``fastrnn.process_settings()`` lists what it set,
``fastrnn.show_config()`` that and how to opt out.
"""

import os

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
OPT_OUT = "set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself before importing fastrnn"

#: the variables of DEFAULTS this process did not have, which fastrnn set (none when the
#: host chose either: the two together are one choice of how threads wait)
SET = {} if any(name in os.environ for name in DEFAULTS) else dict(DEFAULTS)
os.environ.update(SET)
