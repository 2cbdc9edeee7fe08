// See include/gemm_bf16.h. Every function that uses AVX-512 carries the target attribute, and the file is built
// for the x86-64 baseline, so the library loads on every CPU; callers run the kernels only where
// pg_bf16_supported() is 1.
#include "gemm_bf16.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define PG_HAVE_X86 1
#include <immintrin.h>
#define PG_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define PG_INLINE static inline __attribute__((always_inline))
#else
#define PG_HAVE_X86 0
#endif

#ifndef PG_KCP
#define PG_KCP 128
#endif
#ifndef PG_MCB
#define PG_MCB 16
#endif
// Blocking: KCP pairs of k per block (a B panel slice of KCP·32 words, 16 KiB, stays in L1), MCB row blocks per
// chunk (their A slices, MCB·KCP·12 words = 96 KiB, stay in L2 while every panel of B passes over them).
enum { KCP = PG_KCP, MCB = PG_MCB };

static int supported_cached = -1;

int pg_bf16_supported(void) {
#if PG_HAVE_X86
    if (supported_cached < 0) {
        __builtin_cpu_init();
        supported_cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512bf16");
    }
    return supported_cached;
#else
    return 0;
#endif
}

float pg_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u = (u | 0x00400000u) & 0xffff0000u;                  // NaN: quiet, payload truncated
    } else if ((u & 0x7f800000u) == 0) {
        u &= 0x80000000u;                                      // denormal (or zero): signed zero, as the instruction
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);                       // round to nearest even
        u &= 0xffff0000u;
    }
    float r;
    memcpy(&r, &u, 4);
    return r;
}

long pg_bf16_packed_a_count(long m, long k) {
    long blocks = (m + PG_BF16_MR - 1) / PG_BF16_MR;
    return blocks * PG_BF16_MR * ((k + 1) & ~1L);
}

long pg_bf16_packed_b_count(long k, long n) {
    long panels = (n + PG_BF16_NR - 1) / PG_BF16_NR;
    return panels * ((k + 1) / 2) * PG_BF16_NR;
}

#if PG_HAVE_X86

// 16 floats (the first `count`, the rest 0) → 16 bf16.
PG_TGT PG_INLINE __m256i cvt16(const float *x, long count) {
    __m512 v = count >= 16 ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1u), x);
    return (__m256i)_mm512_cvtneps_pbh(v);
}

// Two rows of 16 bf16 (row 2p and row 2p+1 of the same 16 columns) → their 16 pair words, low half from r0:
// *first = words 0–7, *second = words 8–15.
PG_TGT PG_INLINE void interleave_pairs(__m256i r0, __m256i r1, __m256i *first, __m256i *second) {
    __m256i lo = _mm256_unpacklo_epi16(r0, r1);   // columns 0–3 | 8–11
    __m256i hi = _mm256_unpackhi_epi16(r0, r1);   // columns 4–7 | 12–15
    *first = _mm256_permute2x128_si256(lo, hi, 0x20);
    *second = _mm256_permute2x128_si256(lo, hi, 0x31);
}

// 8×8 transpose of 32-bit words: in[r] holds words (r, 0…7); out[w] gets words (0…7, w).
PG_TGT PG_INLINE void transpose8(__m256 in[8], __m256 out[8]) {
    __m256 t0 = _mm256_unpacklo_ps(in[0], in[1]), t1 = _mm256_unpackhi_ps(in[0], in[1]);
    __m256 t2 = _mm256_unpacklo_ps(in[2], in[3]), t3 = _mm256_unpackhi_ps(in[2], in[3]);
    __m256 t4 = _mm256_unpacklo_ps(in[4], in[5]), t5 = _mm256_unpackhi_ps(in[4], in[5]);
    __m256 t6 = _mm256_unpacklo_ps(in[6], in[7]), t7 = _mm256_unpackhi_ps(in[6], in[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20); out[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20); out[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    out[4] = _mm256_permute2f128_ps(u0, u4, 0x31); out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[6] = _mm256_permute2f128_ps(u2, u6, 0x31); out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// `rows` (≤ 8) memory rows whose pairs are adjacent (row r at src + r·ld, values p2…p2+15, `cnt` of them valid)
// → their pair words, transposed: dst[w·stride + r] for the np = ⌈cnt/2⌉ pairs w; `width` words (4 or 8) per
// output row are written (rows past `rows` as zeros).
PG_TGT PG_INLINE void pairs_transposed(uint32_t *dst, long stride, const float *src, long ld, long rows, long cnt,
                                       int width) {
    __m256 in[8], out[8];
    for (int r = 0; r < 8; r++)
        in[r] = r < rows ? _mm256_castsi256_ps(cvt16(src + r * ld, cnt)) : _mm256_setzero_ps();
    transpose8(in, out);
    long np = (cnt + 1) / 2;
    for (long w = 0; w < np; w++) {
        if (width == 8) _mm256_storeu_ps((float *)(dst + w * stride), out[w]);
        else _mm_storeu_ps((float *)(dst + w * stride), _mm256_castps256_ps128(out[w]));
    }
}

// A in blocks of MR rows: block r at pa + r·MR·kp, for each pair p the MR rows' pair words side by side (rows past
// m are zeros), so the microkernel broadcasts from one pointer at constant offsets. Rows of A are contiguous:
// 8 + 4 rows × 8 pairs at a time, transposed in registers.
PG_TGT static void pack_a_rows(uint16_t *pa, const float *a, long lda, long m, long k, long row0, long row1) {
    long kp = (k + 1) & ~1L;
    for (long i0 = row0; i0 < row1; i0 += PG_BF16_MR) {
        uint32_t *dst = (uint32_t *)(pa + i0 * kp);
        long valid = m - i0 < PG_BF16_MR ? m - i0 : PG_BF16_MR;
        if (valid < 0) valid = 0;
        for (long p2 = 0; p2 < k; p2 += 16) {
            long cnt = k - p2 < 16 ? k - p2 : 16;
            uint32_t *d = dst + (p2 / 2) * PG_BF16_MR;
            const float *src = a + i0 * lda + p2;
            pairs_transposed(d, PG_BF16_MR, src, lda, valid < 8 ? valid : 8, cnt, 8);
            pairs_transposed(d + 8, PG_BF16_MR, src + 8 * lda, lda, valid > 8 ? valid - 8 : 0, cnt, 4);
        }
    }
}

// A stored k×m: memory rows 2p and 2p+1 hold pair p of the block's 12 consecutive rows of op(A); interleaved, they
// are the block's 12 words for pair p, already in packed order.
PG_TGT static void pack_a_transposed(uint16_t *pa, const float *a, long lda, long m, long k, long row0, long row1) {
    long kp = (k + 1) & ~1L, pairs = kp / 2;
    const __m256i zero = _mm256_setzero_si256();
    for (long p = 0; p < pairs; p++) {           // memory rows 2p, 2p+1 read once, front to back
        const float *s0 = a + (2 * p) * lda, *s1 = 2 * p + 1 < k ? a + (2 * p + 1) * lda : NULL;
        for (long i0 = row0; i0 < row1; i0 += PG_BF16_MR) {
            long valid = m - i0 < PG_BF16_MR ? m - i0 : PG_BF16_MR;
            if (valid < 0) valid = 0;
            __m256i r0 = valid > 0 ? cvt16(s0 + i0, valid) : zero;
            __m256i r1 = valid > 0 && s1 ? cvt16(s1 + i0, valid) : zero;
            __m256i w0, w1;
            interleave_pairs(r0, r1, &w0, &w1);
            uint32_t *d = (uint32_t *)(pa + i0 * kp) + p * PG_BF16_MR;
            _mm256_storeu_si256((__m256i *)d, w0);
            _mm_storeu_si128((__m128i *)(d + 8), _mm256_castsi256_si128(w1));
        }
    }
}

// B stored k×n: rows 2p and 2p+1 of 16 columns → 16 interleaved pair words.
PG_TGT static void pack_b_rows(uint32_t *pb, const float *b, long ldb, long k, long n, long panel0, long panel1) {
    long pairs = (k + 1) / 2;
    const __m256i zero = _mm256_setzero_si256();
    for (long q = panel0; q < panel1; q++) {
        uint32_t *panel = pb + q * pairs * PG_BF16_NR;
        for (long half = 0; half < 2; half++) {
            long j0 = q * PG_BF16_NR + half * 16;
            long cnt = n - j0;
            if (cnt > 16) cnt = 16;
            for (long p = 0; p < pairs; p++) {
                uint32_t *dst = panel + p * PG_BF16_NR + half * 16;
                if (cnt <= 0) { _mm512_storeu_si512(dst, _mm512_setzero_si512()); continue; }
                __m256i r0 = cvt16(b + (2 * p) * ldb + j0, cnt);
                __m256i r1 = 2 * p + 1 < k ? cvt16(b + (2 * p + 1) * ldb + j0, cnt) : zero;
                __m256i w0, w1;
                interleave_pairs(r0, r1, &w0, &w1);
                _mm256_storeu_si256((__m256i *)dst, w0);
                _mm256_storeu_si256((__m256i *)(dst + 8), w1);
            }
        }
    }
}

// B stored n×k: column j of op(B) is row j in memory, its pairs already adjacent; 8 columns × 8 pairs at a time,
// transposed in registers.
PG_TGT static void pack_b_transposed(uint32_t *pb, const float *b, long ldb, long k, long n, long panel0,
                                     long panel1) {
    long pairs = (k + 1) / 2;
    for (long q = panel0; q < panel1; q++) {
        uint32_t *panel = pb + q * pairs * PG_BF16_NR;
        for (long g = 0; g < PG_BF16_NR / 8; g++) {
            long j0 = q * PG_BF16_NR + g * 8;
            long rows = n - j0 < 8 ? n - j0 : 8;
            if (rows < 0) rows = 0;
            for (long p2 = 0; p2 < k; p2 += 16) {
                long cnt = k - p2 < 16 ? k - p2 : 16;
                pairs_transposed(panel + (p2 / 2) * PG_BF16_NR + g * 8, PG_BF16_NR, b + j0 * ldb + p2, ldb, rows,
                                 cnt, 8);
            }
        }
    }
}

// One MR×32 block: acc = Σ_p a_pair(i, p) · b_pair(p, ·) over `np` pairs, then C = beta·C + alpha·acc (first
// k block) or C += alpha·acc (later blocks). MR is a constant in every instantiation, so the loops unroll and the
// accumulators live in registers.
PG_TGT PG_INLINE void micro(const int MR, const uint32_t *a, const uint32_t *b, long np, float *c, long ldc,
                            long ncols, float alpha, float beta, int first) {
    __m512 acc0[PG_BF16_MR], acc1[PG_BF16_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) { acc0[i] = _mm512_setzero_ps(); acc1[i] = _mm512_setzero_ps(); }
    for (long p = 0; p < np; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * PG_BF16_NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * PG_BF16_NR + 16);
        const uint32_t *ap = a + p * PG_BF16_MR;
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i]);
            acc0[i] = _mm512_dpbf16_ps(acc0[i], av, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], av, b1);
        }
    }
    __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1u);
    __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : (ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1u));
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        float *cr = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc0[i]), r1 = _mm512_mul_ps(va, acc1[i]);
        if (first) {
            if (beta != 0.0f) {
                r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), r0);
                r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), r1);
            }
        } else {
            r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), r0);
            r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), r1);
        }
        _mm512_mask_storeu_ps(cr, m0, r0);
        _mm512_mask_storeu_ps(cr + 16, m1, r1);
    }
}

#define PG_MICRO_CASE(R) case R: micro(R, a, b, np, c, ldc, ncols, alpha, beta, first); break;

PG_TGT static void micro_dispatch(int mr, const uint32_t *a, const uint32_t *b, long np, float *c, long ldc,
                                  long ncols, float alpha, float beta, int first) {
    switch (mr) {
        PG_MICRO_CASE(12) PG_MICRO_CASE(11) PG_MICRO_CASE(10) PG_MICRO_CASE(9) PG_MICRO_CASE(8) PG_MICRO_CASE(7)
        PG_MICRO_CASE(6) PG_MICRO_CASE(5) PG_MICRO_CASE(4) PG_MICRO_CASE(3) PG_MICRO_CASE(2) PG_MICRO_CASE(1)
        default: break;
    }
}

PG_TGT static void compute(float *c, long ldc, const uint16_t *pa, const uint32_t *pb, long m, long n, long k,
                           float alpha, float beta, long block0, long block1, long panel0, long panel1) {
    long kp = (k + 1) & ~1L, pairs = kp / 2;
    if (pairs == 0) {  // k = 0: C = beta·C
        for (long i = block0 * PG_BF16_MR; i < m && i < block1 * PG_BF16_MR; i++)
            for (long j = panel0 * PG_BF16_NR; j < n && j < panel1 * PG_BF16_NR; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    for (long p0 = 0; p0 < pairs; p0 += KCP) {
      long np = pairs - p0 < KCP ? pairs - p0 : KCP;
      int first = p0 == 0;
      for (long rc = block0; rc < block1; rc += MCB) {
        long rend = rc + MCB < block1 ? rc + MCB : block1;
        for (long q = panel0; q < panel1; q++) {
            long j0 = q * PG_BF16_NR;
            long ncols = n - j0 < PG_BF16_NR ? n - j0 : PG_BF16_NR;
            const uint32_t *bq = pb + q * pairs * PG_BF16_NR + p0 * PG_BF16_NR;
            for (long r = rc; r < rend; r++) {
                long i0 = r * PG_BF16_MR;
                long mr = m - i0 < PG_BF16_MR ? m - i0 : PG_BF16_MR;
                if (mr <= 0) break;
                const uint32_t *ar = (const uint32_t *)(pa + i0 * kp) + p0 * PG_BF16_MR;
                micro_dispatch((int)mr, ar, bq, np, c + i0 * ldc + j0, ldc, ncols, alpha, beta, first);
            }
        }
      }
    }
}

#endif  // PG_HAVE_X86

void pg_bf16_pack_a(uint16_t *pa, const float *a, long lda, int transA, long m, long k, long row0, long row1) {
#if PG_HAVE_X86
    if (transA) pack_a_transposed(pa, a, lda, m, k, row0, row1);
    else pack_a_rows(pa, a, lda, m, k, row0, row1);
#else
    (void)pa; (void)a; (void)lda; (void)transA; (void)m; (void)k; (void)row0; (void)row1;
#endif
}

void pg_bf16_pack_b(uint32_t *pb, const float *b, long ldb, int transB, long k, long n, long panel0, long panel1) {
#if PG_HAVE_X86
    if (transB) pack_b_transposed(pb, b, ldb, k, n, panel0, panel1);
    else pack_b_rows(pb, b, ldb, k, n, panel0, panel1);
#else
    (void)pb; (void)b; (void)ldb; (void)transB; (void)k; (void)n; (void)panel0; (void)panel1;
#endif
}

void pg_bf16_compute(float *c, long ldc, const uint16_t *pa, const uint32_t *pb, long m, long n, long k, float alpha,
                     float beta, long block0, long block1, long panel0, long panel1) {
#if PG_HAVE_X86
    compute(c, ldc, pa, pb, m, n, k, alpha, beta, block0, block1, panel0, panel1);
#else
    (void)c; (void)ldc; (void)pa; (void)pb; (void)m; (void)n; (void)k; (void)alpha; (void)beta;
    (void)block0; (void)block1; (void)panel0; (void)panel1;
#endif
}

// Per-thread scratch, grown on demand and kept for the thread's life (GEMMs run on a few long-lived workers).
static _Thread_local void *scratch = NULL;
static _Thread_local size_t scratch_bytes = 0;

static void *scratch_for(size_t bytes) {
    if (bytes > scratch_bytes) {
        free(scratch);
        size_t size = (bytes + 4095) & ~(size_t)4095;
        scratch = aligned_alloc(64, size);
        scratch_bytes = scratch ? size : 0;
    }
    return scratch;
}

int pg_bf16_scratch_operands(long m, long n, long k, uint16_t **pa, uint32_t **pb) {
    size_t abytes = ((size_t)pg_bf16_packed_a_count(m, k) * 2 + 63) & ~(size_t)63;
    char *buf = scratch_for(abytes + (size_t)pg_bf16_packed_b_count(k, n) * 4 + 64);
    if (!buf) return 0;
    *pa = (uint16_t *)buf;
    *pb = (uint32_t *)(buf + abytes);
    return 1;
}

void pg_sgemm_bf16(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                   const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    uint16_t *pa;
    uint32_t *pb;
    if (!pg_bf16_scratch_operands(m, n, k, &pa, &pb)) abort();  // out of memory for a few MiB of scratch
    long blocks = (m + PG_BF16_MR - 1) / PG_BF16_MR, panels = (n + PG_BF16_NR - 1) / PG_BF16_NR;
    pg_bf16_pack_a(pa, a, lda, transA, m, k, 0, blocks * PG_BF16_MR);
    pg_bf16_pack_b(pb, b, ldb, transB, k, n, 0, panels);
    pg_bf16_compute(c, ldc, pa, pb, m, n, k, alpha, beta, 0, blocks, 0, panels);
}

// GEMM accounting for the benchmark (see gemm_bf16.h): relaxed atomic adds, callers on any thread.
static uint64_t counted_flops = 0, counted_ns = 0;

void pg_gemm_count_add(uint64_t flops, uint64_t weighted_ns) {
    __atomic_fetch_add(&counted_flops, flops, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counted_ns, weighted_ns, __ATOMIC_RELAXED);
}

void pg_gemm_count_read(uint64_t *flops, uint64_t *weighted_ns) {
    *flops = __atomic_load_n(&counted_flops, __ATOMIC_RELAXED);
    *weighted_ns = __atomic_load_n(&counted_ns, __ATOMIC_RELAXED);
}

void pg_gemm_count_reset(void) {
    __atomic_store_n(&counted_flops, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&counted_ns, 0, __ATOMIC_RELAXED);
}
