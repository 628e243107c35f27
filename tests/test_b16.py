"""The bfloat16 kernels of fastrnn/_b16.h: rounding, conversion, packing and the product on
every path this CPU has (AMX-BF16, AVX512-BF16, portable C), run by lowering the ISA cap,
against float64 NumPy products of the bf16-rounded operands."""

import numpy as np
import pytest

from fastrnn import _blas, _core

LEVELS = ("baseline", "avx512", "avx512_vnni", "avx512_bf16", "amx")
DETECTED = LEVELS.index(_blas.isa_detected())
# the paths of the product: the level that selects each one (below avx512_bf16: portable)
PATHS = [pytest.param(level, marks=pytest.mark.skipif(
    LEVELS.index(level) > DETECTED, reason=f"this CPU has no {level}"))
    for level in ("baseline", "avx512", "avx512_bf16", "amx")]


def round_b16(a):
    """float32 -> bf16 (to nearest, ties to even) as float32 values, in NumPy."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = (u.astype(np.uint32) << 16).view(np.float32)
    return np.where(np.isnan(a), np.float32(np.nan), out)


def bits_b16(a):
    """The bf16 bits of round_b16(a)."""
    return (round_b16(a).view(np.uint32) >> 16).astype(np.uint16)


@pytest.fixture(autouse=True)
def _no_cap():
    yield
    _blas.set_isa_cap(None)
    _core.set_isa_cap(None)


def convert(A):
    out = np.full((A.shape[0], _blas.b16_kp(A.shape[1])), 0xFFFF, np.uint16)
    _blas.b16_convert(A, out)
    return out


def pack(B):
    out = np.full(_blas.b16_packed_size(*B.shape), 0xFFFF, np.uint16)
    _blas.b16_pack(B, out)
    return out


def test_rounding_to_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)          # bf16's spacing at 1
    cases = np.array([one, one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2 ** -20,
                      -(one + ulp / 2), np.finfo(np.float32).max, np.inf, -np.inf, 0.0,
                      -0.0, 1e-40, np.nan], np.float32)
    got = convert(cases[None, :])[0, :cases.size]
    assert got[0] == 0x3F80
    assert got[1] == 0x3F80                 # a tie goes to the even neighbour
    assert got[2] == 0x3F82                 # ... up here
    assert got[3] == 0x3F81                 # above the tie: up
    assert got[4] == 0xBF80
    assert got[5] == 0x7F80                 # rounds past the largest bf16: inf
    assert list(got[6:10]) == [0x7F80, 0xFF80, 0x0000, 0x8000]
    assert (got[11] & 0x7F80) == 0x7F80 and (got[11] & 0x7F) != 0     # a NaN
    np.testing.assert_array_equal(got[:11], bits_b16(cases)[:11])


@pytest.mark.parametrize("level", PATHS)
def test_convert_gives_the_same_bits_on_every_path(level):
    """Rows convert 16 values an instruction with AVX512-BF16, which takes denormals as
    zeros: runs of 16 with and without denormals, NaNs with payloads, infinities, ties
    and the tail after the last 16 give the bits of the rule on every path."""
    rng = np.random.default_rng(7)
    u = rng.integers(0, 2 ** 32, (9, 203), dtype=np.uint64).astype(np.uint32)
    u[1, 16:32] &= 0x807FFFFF                    # 16 denormals (and signed zeros)
    u[2, 40] = 0x00000001                       # one denormal among 15 normal values
    u[3, ::7] = 0x7F800001 + np.arange(29, dtype=np.uint32) * 0x1001    # NaNs
    u[4, :4] = [0x7F800000, 0xFF800000, 0x3F808000, 0x3F818000]         # inf, ties
    u[5, 200:] = 0x80000001                     # denormals in the tail
    A = u.view(np.float32)
    _blas.set_isa_cap(level)
    got = convert(A)[:, :A.shape[1]]
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    want = np.where(nan, (u >> 16) | 0x40,
                    (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("m, K", [(1, 1), (2, 31), (3, 32), (17, 33), (5, 100)])
@pytest.mark.parametrize("transposed", [False, True])
def test_convert_rows_with_strides(m, K, transposed):
    rng = np.random.default_rng(m * 100 + K)
    A = rng.standard_normal((K, m) if transposed else (m, K)).astype(np.float32)
    A = A.T if transposed else A                       # a view read through its strides
    got = convert(A)
    np.testing.assert_array_equal(got[:, :K], bits_b16(A))
    assert not got[:, K:].any()                        # zeros up to Kp
    assert got.shape[1] % 32 == 0


@pytest.mark.parametrize("K, n", [(1, 1), (2, 16), (3, 17), (33, 40), (64, 80)])
@pytest.mark.parametrize("transposed", [False, True])
def test_pack_layout(K, n, transposed):
    rng = np.random.default_rng(K * 100 + n)
    B = rng.standard_normal((n, K) if transposed else (K, n)).astype(np.float32)
    B = B.T if transposed else B
    got = pack(B)
    Kp = _blas.b16_kp(K)
    expect = np.zeros(_blas.b16_packed_size(K, n), np.uint16)
    k, j = np.meshgrid(np.arange(K), np.arange(n), indexing="ij")
    expect[(j // 16) * 16 * Kp + (k // 2) * 32 + (j % 16) * 2 + k % 2] = bits_b16(B)
    np.testing.assert_array_equal(got, expect)


def product_bound(A, B, K, extra=0.0):
    """A bound on the float32 sums' error of A @ B (K terms), elementwise."""
    return (K + 2) * 2.0 ** -24 * (np.abs(A) @ np.abs(B) + extra) + 1e-30


SIZES = [(1, 1, 1), (2, 3, 17), (1, 64, 2048), (17, 33, 40), (16, 32, 16), (31, 65, 33),
         (32, 512, 64), (48, 100, 96), (33, 7, 130), (300, 40, 50)]


@pytest.mark.parametrize("level", PATHS)
@pytest.mark.parametrize("m, K, n", SIZES)
@pytest.mark.parametrize("mode", ["set", "bias", "accumulate"])
def test_product_paths(level, m, K, n, mode):
    _blas.set_isa_cap(level)
    assert _blas.isa() == level
    rng = np.random.default_rng(m * 10000 + K * 100 + n)
    A = rng.standard_normal((m, K)).astype(np.float32)
    B = rng.standard_normal((K, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    Ar, Br = round_b16(A).astype(np.float64), round_b16(B).astype(np.float64)
    ref = Ar @ Br
    C = C0.copy() if mode == "accumulate" else np.full((m, n), np.nan, np.float32)
    if mode == "bias":
        ref = ref + bias
    elif mode == "accumulate":
        ref = ref + C0
    _blas.b16_gemm(convert(A), K, pack(B), C, accumulate=mode == "accumulate",
                   bias=bias if mode == "bias" else None)
    extra = np.abs(bias) if mode == "bias" else np.abs(C0) if mode == "accumulate" else 0.0
    err = np.abs(C - ref)
    assert np.all(err <= product_bound(Ar, Br, K, extra)), err.max()


def test_paths_agree_closely_on_a_large_product():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((70, 512)).astype(np.float32)
    B = rng.standard_normal((512, 200)).astype(np.float32)
    Ab, Bp = convert(A), pack(B)
    out = {}
    for level in ("baseline", "avx512_bf16", "amx"):
        if LEVELS.index(level) > DETECTED:
            continue
        _blas.set_isa_cap(level)
        out[level] = np.empty((70, 200), np.float32)
        _blas.b16_gemm(Ab, 512, Bp, out[level])
    ref = round_b16(A).astype(np.float64) @ round_b16(B).astype(np.float64)
    bound = product_bound(round_b16(A), round_b16(B), 512)
    for level, C in out.items():
        assert np.all(np.abs(C - ref) <= bound), level
        # and far from the float32 product of the unrounded operands' accuracy claim:
        # the bf16 rounding is what separates them
    assert np.abs(out["baseline"] - A.astype(np.float64) @ B).max() > bound.max()


def test_isa_caps_are_per_module_and_checked():
    _blas.set_isa_cap("baseline")
    assert _blas.isa() == "baseline"
    assert _core.isa() == LEVELS[DETECTED]          # the kernels keep their own cap
    _core.set_isa_cap("avx512")
    assert _core.isa() == LEVELS[min(1, DETECTED)]
    _blas.set_isa_cap(None)
    assert _blas.isa() == _blas.isa_detected()
    for bad in ("avx2", "AMX", 3):
        with pytest.raises(ValueError, match="name must be one of"):
            _blas.set_isa_cap(bad)
        with pytest.raises(ValueError, match="name must be one of"):
            _core.set_isa_cap(bad)


def test_hooks_refuse_wrong_shapes():
    A = np.zeros((3, 32), np.uint16)
    with pytest.raises(ValueError, match="A must be"):
        _blas.b16_gemm(A, 33, np.zeros(_blas.b16_packed_size(33, 16), np.uint16),
                       np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match="Bp must have shape"):
        _blas.b16_gemm(A, 20, np.zeros(10, np.uint16), np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        _blas.b16_convert(np.zeros((3, 40), np.float32), np.zeros((3, 32), np.uint16))
    with pytest.raises(ValueError, match="out must have shape"):
        _blas.b16_pack(np.zeros((3, 40), np.float32), np.zeros(5, np.uint16))
