"""Every speed threshold of fastrnn, in one place, each with the measurement behind it.

None of these changes a result (every choice computes the same sums, or the same values
within rounding where the product kernel differs); they choose how the work is split and
which product kernel runs.  The first group is read by ``fastrnn._engine`` when it plans a
call; the second is the compiled BLAS layer's (``fastrnn._blas``), set from here when
fastrnn is imported (the compiled module starts from the same values) and changeable at run
time through its setters.  Measured on the benchmark machine (2 cores, AVX-512); re-measure
with ``bench/`` before changing one.
"""

from __future__ import annotations

from . import _blas

# ---------------------------------------------------------------------------------------
# Planning a call (fastrnn._engine)
# ---------------------------------------------------------------------------------------

# Parallel time loops: the batch is split into at most `get_num_threads()` row ranges of
# at least MIN_ROWS rows, when the loop has enough work to repay starting the threads.
MIN_ROWS = 4
MIN_LOOP_FLOPS = 2e7

# One batch row multiplies by W_hh once per step: in float32, BLAS reads W_hh.T (a plain
# gemv over rows) faster than W_hh (dot products) while the matrix sits in the L2 cache,
# which repays transposing it once over this many steps (measured; not so in float64).
TRANSPOSE_B1_STEPS = 32
TRANSPOSE_B1_BYTES = 256 * 1024

# A float32 LSTM over one batch row runs fastrnn's own fused loop (_cellmath.h,
# fr_lstm_row_f) with W_hh packed for it, when there are enough steps to repay packing.
PACKED_MIN_STEPS = 8

# Time loops over several float32 rows multiply by W_hh with fastrnn's own product
# (_panel.h): W_hh packed once per call, where BLAS would pack it again at every step.
# It runs at full speed with AVX-512 only, and is on by default there
# (``_blas.panel_products``); elsewhere the loops keep BLAS.
PANEL_MIN_STEPS = 4
# ... and then each step projects its own input in the loop, just before it needs it
STEP_PROJECTION = True

# int8 inference (fastrnn/_lowp.pyx): the input projection of all T*B rows splits them
# across the threads from this many operations on (2*T*B*G*H*I).  Waking the second
# thread costs about 0.2 ms here (OMP_WAIT_POLICY=PASSIVE); the int8 product runs at
# 300-1000 GOP/s, so below about 1e8 operations one thread is done first (measured: an
# LSTM T=100 B=1 I=32 H=64 took 0.32 ms split, 0.06 ms on one thread).
Q8_PARALLEL_MIN_OPS = 1e8
# ... and from this many batch rows on, each step projects its own input in the loop, just
# before it needs it (as the float loops do, STEP_PROJECTION): the gates of all T*B rows
# (52 MB for an LSTM T=50 B=128 H=512) are then never written out to memory and read back.
# Measured here (2 threads, a shared machine): W4i, LSTM T50 B128 I512 H512, 41 -> 34 ms;
# W7, GRU T50 B256 I64 H128, 9.2 -> 5.3-8.0 ms; with 16 rows (LSTM I64 H128) 1.03 -> 1.10
# ms: a few rows make small products that run better as one over all steps.
Q8_STEP_INPUT_MIN_ROWS = 32
# The same for the bf16 mode's kinds whose step does not fuse its input projection with
# the recurrent product (GRU, FastGRNN: _core.b16_fuses): from this many batch rows on,
# each step projects its own input as one bf16 product before the recurrent one.
# Measured here (AMX, 2 threads, GRU T=50 I=32 H=128): B=16 0.89 against 1.05 ms with the
# projection before the loop, B=32 0.71 against 1.10, B=64 1.15 against 1.80, W7 (B=256
# I=64) 3.3-3.9 against 5.4-6.5; level at B = 1, 4, 8.
B16_STEP_INPUT_MIN_ROWS = 16

# ---------------------------------------------------------------------------------------
# The compiled BLAS layer (fastrnn/_blas.pyx)
# ---------------------------------------------------------------------------------------

# Threads.  fastrnn parallelises its own work with OpenMP and keeps scipy's BLAS on one
# thread (fastrnn._runtime sets it): two thread pools on two cores steal each other's cores
# while they spin, and waking a BLAS pool for a small per-step product costs more than the
# product.  Large products split the rows of their result across the threads, from this
# many floating-point operations on (``_blas.parallel_min_flops``).
PARALLEL_MIN_FLOPS = 2e7

# OpenBLAS multiplies small products (M*N*K below about 2**20 for float) with kernels that
# skip packing the operands; a larger product packs the whole weight matrix on every call,
# which for a per-step recurrent GEMM of a few rows costs more than the arithmetic.  So the
# per-step products run in blocks of rows that stay under that size (results are the same
# either way; only the speed depends on the BLAS) (``_blas.small_product_size``).
SMALL_PRODUCT_SIZE = 1048575

# The four products after a backward loop (dW_hh in two halves, dX, dW_ih) run side by
# side, one per thread, below this many flops; larger ones run one after another, each
# split across the threads (``_blas.grads_side_by_side_flops``).
# Measured here (2 threads): side by side, small training steps gain 3-10 % (RNN T=200 B=16
# H=64: 1.03x; LSTM B=4 H=128: 1.10x); from about 3e8 flops of these products on it is
# level or worse (GRU T=100 B=64 H=256: 0.95x).
GRADS_SIDE_BY_SIDE_FLOPS = 1.6e8

# fastrnn's own product (_panel.h) for the products before and after the time loops too:
# op(B) is packed once (a copy the size of B), then the row parts run the panel kernel.
# Measured against one-thread OpenBLAS here: level on large square-ish products, 1.1-2.8x
# on the narrow ones of small layers (n or k of 16-128), 1.05-1.4x on the weight gradients
# dG.T @ X of up to 2048 gate rows (LSTM H <= 512); with more (LSTM H=1024) BLAS is faster,
# so it keeps them (``_blas.panel_limits``).
PANEL_MIN_ROWS = 16
PANEL_TA_MAX_ROWS = 2048
PANEL_MAX_BYTES = 64 * 1024 * 1024      # the packed copy of op(B), at most

# The threads of a time loop share each step's products (each computes some columns of
# every row, between two barriers a step) where the packed weights a step reads, W_hh.T
# and the W_ih.T of a projection in the loop, take this many bytes or more.  Measured here
# (2 threads, T=20, I=H, inference): LSTM H=512 B=32, 64, 128: 1.14x, 1.11x, 1.03x; H=1024
# B=64: 1.10x; GRU H=512 B=64 1.07x; training LSTM H=512 B=64 1.02x; at 2 MiB (LSTM H=256)
# level within the noise, below it the barriers cost more than the weights' traffic.  The
# bf16 mode's forward loops count their panels' bytes (2 a value) against the same
# threshold: bf16 W4i (AMX, 2 cores), 4 MiB of panels, 21.6-22.4 -> 20.2-20.7 ms.
SHARED_PRODUCT_BYTES = 4 * 1024 * 1024


def apply() -> None:
    """Set the compiled BLAS layer's thresholds to the values above."""
    _blas.parallel_min_flops(PARALLEL_MIN_FLOPS)
    _blas.small_product_size(SMALL_PRODUCT_SIZE)
    _blas.grads_side_by_side_flops(GRADS_SIDE_BY_SIDE_FLOPS)
    _blas.panel_limits(PANEL_MIN_ROWS, PANEL_TA_MAX_ROWS, PANEL_MAX_BYTES)
    _blas.shared_product_bytes(SHARED_PRODUCT_BYTES)


apply()
