/* fastrnn's one place for what the running CPU (and its operating system) lets the kernels
 * use: AVX-512, AVX512-VNNI, AVX512-BF16 and the AMX tile units (AMX-INT8, AMX-BF16).
 *
 * A wheel is compiled for the x86-64 baseline; kernels for newer instruction sets are
 * compiled with a target attribute on the function and called only when fr_isa() says so.
 * The CPU's feature bits are not enough: the operating system must save the wider register
 * state (XCR0, read with xgetbv), and on Linux a process must ask for the AMX tile data
 * state before its first tile instruction (arch_prctl(ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA), Linux 5.16 and newer); when the kernel refuses, AMX counts as absent.
 *
 * fr_isa() is the detected level, capped by fr_isa_cap (tests and FASTRNN_ISA set it to run
 * every lower path on this CPU):
 *
 *   FR_ISA_BASE      plain x86-64 (SSE2), or a CPU this header does not know
 *   FR_ISA_AVX512    AVX-512 F, BW, DQ, VL, with the OS saving the ZMM state
 *   FR_ISA_VNNI      ... and AVX512-VNNI (u8 x s8 dot products into int32)
 *   FR_ISA_BF16      ... and AVX512-BF16 (bf16 pair dot products into fp32)
 *   FR_ISA_AMX       ... and AMX-TILE, AMX-INT8, AMX-BF16 with the tile state granted
 *
 * The levels nest as they do on every CPU that has them (Intel Sapphire Rapids and newer
 * have all; Ice Lake and AMD Zen 4/5 stop at BF16 or VNNI); a CPU with a later feature but
 * not an earlier one gets the level below the first missing one.
 */
#ifndef FASTRNN_ISA_H
#define FASTRNN_ISA_H

enum { FR_ISA_BASE = 0, FR_ISA_AVX512 = 1, FR_ISA_VNNI = 2, FR_ISA_BF16 = 3, FR_ISA_AMX = 4 };

static const char *const fr_isa_names[] = {"baseline", "avx512", "avx512_vnni",
                                           "avx512_bf16", "amx"};

#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define FR_ARCH_REQ_XCOMP_PERM 0x1023
#define FR_XFEATURE_XTILEDATA 18
#endif

static inline unsigned long long fr_xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* Ask Linux for the AMX tile data state (once per process; every thread inherits it). */
static inline int fr_amx_permitted(void)
{
#if defined(__linux__)
    return syscall(SYS_arch_prctl, FR_ARCH_REQ_XCOMP_PERM, FR_XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

static inline int fr_isa_detect(void)
{
    unsigned int a, b, c, d, b7, c7, d7, a71;
    unsigned long long xcr0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))      /* OSXSAVE */
        return FR_ISA_BASE;
    if (__get_cpuid_max(0, 0) < 7)
        return FR_ISA_BASE;
    __cpuid_count(7, 0, a, b7, c7, d7);
    __cpuid_count(7, 1, a71, b, c, d);
    xcr0 = fr_xgetbv0();
    /* AVX-512 F (b16), DQ (b17), BW (b30), VL (b31); XCR0: SSE, AVX, opmask, ZMM states */
    if ((b7 & 0xC0030000u) != 0xC0030000u || (xcr0 & 0xE6) != 0xE6)
        return FR_ISA_BASE;
    if (!(c7 & (1u << 11)))                                         /* AVX512_VNNI */
        return FR_ISA_AVX512;
    if (!(a71 & (1u << 5)))                                         /* AVX512_BF16 */
        return FR_ISA_VNNI;
    /* AMX-BF16 (d22), AMX-TILE (d24), AMX-INT8 (d25); XCR0: tile config and data */
    if ((d7 & 0x03400000u) != 0x03400000u || (xcr0 & 0x60000) != 0x60000
        || !fr_amx_permitted())
        return FR_ISA_BF16;
    return FR_ISA_AMX;
}
#else
static inline int fr_isa_detect(void) { return FR_ISA_BASE; }
#endif

/* The cap: FR_ISA_AMX (no cap) unless lowered; fr_isa() is the lower of the two. */
static int fr_isa_cap = FR_ISA_AMX;
static int fr_isa_found = -1;

static inline int fr_isa_detected(void)
{
    if (fr_isa_found < 0)
        fr_isa_found = fr_isa_detect();
    return fr_isa_found;
}

static inline int fr_isa(void)
{
    const int found = fr_isa_detected();
    return found < fr_isa_cap ? found : fr_isa_cap;
}

#endif /* FASTRNN_ISA_H */
