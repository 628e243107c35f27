# cython: language_level=3
"""fastrnn/_b16.h's bfloat16 conversion, packing and products, for the modules that
cimport them (_blas.pyx: test hooks and the ISA cap; _core.pyx: the kernels' bf16 mode)."""

cdef extern from "_b16.h" nogil:
    ctypedef unsigned short fr_b16
    long fr_b16_kp(long K)
    long fr_b16_packed_size(long K, long n)
    void fr_b16_rows(const float* src, long m, long K, long sr, long sk, fr_b16* dst,
                     long ldd)
    void fr_b16_pack(const float* src, long n, long K, long sj, long sk, fr_b16* out)
    void fr_b16_add_t(const float* Ct, long ldc, long rows, long cols, float* W, long ldw)
    void fr_b16_gemm(const fr_b16* A, long lda, long m, long K, const fr_b16* Bp, long n,
                     float* C, long ldc, int accumulate, const float* bias)
    void fr_b16_gemm2(const fr_b16* A, long lda, long m, long K, const fr_b16* Bp, long K2,
                      const fr_b16* Bp2, long n, float* C, long ldc, int accumulate,
                      const float* bias)
    int fr_b16_isa()
    int fr_b16_isa_detected()
    void fr_b16_set_cap(int cap)
    const char* const fr_isa_names[]
    int FR_ISA_BASE, FR_ISA_AMX


cdef inline int _set_isa_cap(object name) except -1:
    """Cap the products of the module that compiles this in at the level ``name`` (one of
    ``fr_isa_names``: "baseline", "avx512", "avx512_vnni", "avx512_bf16", "amx"), or lift
    the cap (None)."""
    cdef int level
    names = [fr_isa_names[level].decode() for level in range(FR_ISA_AMX + 1)]
    if name is None:
        fr_b16_set_cap(FR_ISA_AMX)
        return 0
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"name must be one of {names} or None, got {name!r}")
    fr_b16_set_cap(names.index(name))
    return 0


cdef inline str _isa_name(int level):
    return fr_isa_names[level].decode()
