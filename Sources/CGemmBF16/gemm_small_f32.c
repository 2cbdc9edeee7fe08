// See include/gemm_bf16.h ("fp32 small products"). AVX-512F code carries the target attribute and the file is built
// for the x86-64 baseline, so the library loads on every CPU; callers run the kernel only where
// pg_avx512_supported() is 1.
#include "gemm_bf16.h"
#include <stdlib.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define PG_F32_TGT __attribute__((target("avx512f")))
#define PG_F32_INLINE static inline __attribute__((always_inline, target("avx512f")))

static int avx512_cached = -1;

int pg_avx512_supported(void) {
    if (avx512_cached < 0) {
        __builtin_cpu_init();
        avx512_cached = __builtin_cpu_supports("avx512f");
    }
    return avx512_cached;
}

// op(B) (k×n) packed in panels of 16 columns: panel q at bp + q·k·16 holds, for each p < k, the 16 values
// op(B)[p][16q ..< 16q+16] (columns ≥ n are zeros). Kept per thread, grown on demand.
static __thread float *scratch = NULL;
static __thread long scratch_cap = 0;

static float *scratch_for(long count) {
    if (count > scratch_cap) {
        free(scratch);
        scratch = (float *)aligned_alloc(64, (size_t)((count + 15) & ~15L) * sizeof(float));
        scratch_cap = scratch ? count : 0;
    }
    return scratch;
}

PG_F32_INLINE void pack_b(float *bp, const float *b, long ldb, int transB, long k, long n) {
    long panels = (n + 15) / 16;
    for (long q = 0; q < panels; q++) {
        float *dst = bp + q * k * 16;
        long j0 = q * 16, w = n - j0 < 16 ? n - j0 : 16;
        if (!transB) {
            __mmask16 mask = (__mmask16)((1u << w) - 1u);
            for (long p = 0; p < k; p++)
                _mm512_store_ps(dst + p * 16, _mm512_maskz_loadu_ps(mask, b + p * ldb + j0));
        } else {
            if (w < 16)
                for (long p = 0; p < k; p++) _mm512_store_ps(dst + p * 16, _mm512_setzero_ps());
            for (long jj = 0; jj < w; jj++) {
                const float *src = b + (j0 + jj) * ldb;
                for (long p = 0; p < k; p++) dst[p * 16 + jj] = src[p];
            }
        }
    }
}

// One 8×(16·NP) block of C (NP = 1 or 2 panels) from rows i0 ..< i0+mr of op(A) and panels q, q+1 of B.
// Rows ≥ mr repeat the last row's operand and are not stored.
PG_F32_INLINE void block(float *c, long ldc, const float *a, long lda, int transA, const float *bp, long k,
                         long n, long i0, long mr, long q, int np, float alpha, float beta) {
    __m512 acc[8][2];
    for (int r = 0; r < 8; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    const float *b0 = bp + q * k * 16, *b1 = b0 + k * 16;
    long rows[8];
    for (int r = 0; r < 8; r++) rows[r] = i0 + (r < mr ? r : mr - 1);
    if (!transA) {
        const float *ar[8];
        for (int r = 0; r < 8; r++) ar[r] = a + rows[r] * lda;
        for (long p = 0; p < k; p++) {
            __m512 v0 = _mm512_load_ps(b0 + p * 16);
            __m512 v1 = np == 2 ? _mm512_load_ps(b1 + p * 16) : v0;
            for (int r = 0; r < 8; r++) {
                __m512 s = _mm512_set1_ps(ar[r][p]);
                acc[r][0] = _mm512_fmadd_ps(s, v0, acc[r][0]);
                if (np == 2) acc[r][1] = _mm512_fmadd_ps(s, v1, acc[r][1]);
            }
        }
    } else {
        for (long p = 0; p < k; p++) {
            const float *ap = a + p * lda;
            __m512 v0 = _mm512_load_ps(b0 + p * 16);
            __m512 v1 = np == 2 ? _mm512_load_ps(b1 + p * 16) : v0;
            for (int r = 0; r < 8; r++) {
                __m512 s = _mm512_set1_ps(ap[rows[r]]);
                acc[r][0] = _mm512_fmadd_ps(s, v0, acc[r][0]);
                if (np == 2) acc[r][1] = _mm512_fmadd_ps(s, v1, acc[r][1]);
            }
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int h = 0; h < np; h++) {
        long j0 = (q + h) * 16, w = n - j0 < 16 ? n - j0 : 16;
        __mmask16 mask = (__mmask16)((1u << w) - 1u);
        for (long r = 0; r < mr; r++) {
            float *cp = c + (i0 + r) * ldc + j0;
            __m512 out = _mm512_mul_ps(va, acc[r][h]);
            if (beta != 0.0f) out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, cp), out);
            _mm512_mask_storeu_ps(cp, mask, out);
        }
    }
}

PG_F32_INLINE void compute(float *c, long ldc, const float *a, long lda, int transA, const float *bp, long m,
                           long n, long k, float alpha, float beta) {
    long panels = (n + 15) / 16;
    for (long i0 = 0; i0 < m; i0 += 8) {
        long mr = m - i0 < 8 ? m - i0 : 8;
        long q = 0;
        for (; q + 1 < panels; q += 2) block(c, ldc, a, lda, transA, bp, k, n, i0, mr, q, 2, alpha, beta);
        if (q < panels) block(c, ldc, a, lda, transA, bp, k, n, i0, mr, q, 1, alpha, beta);
    }
}

PG_F32_TGT static void compute_nt(float *c, long ldc, const float *a, long lda, const float *bp, long m, long n,
                                  long k, float alpha, float beta) {
    compute(c, ldc, a, lda, 0, bp, m, n, k, alpha, beta);
}

PG_F32_TGT static void compute_t(float *c, long ldc, const float *a, long lda, const float *bp, long m, long n,
                                 long k, float alpha, float beta) {
    compute(c, ldc, a, lda, 1, bp, m, n, k, alpha, beta);
}

long pg_small_packed_b_count(long k, long n) { return ((n + 15) / 16) * 16 * (k > 0 ? k : 0); }

PG_F32_TGT void pg_small_pack_b(float *bp, const float *b, long ldb, int transB, long k, long n) {
    pack_b(bp, b, ldb, transB, k, n);
}

void pg_small_compute(int transA, float *c, long ldc, const float *a, long lda, const float *bp, long m, long n,
                      long k, float alpha, float beta) {
    if (m <= 0 || n <= 0 || k <= 0) return;
    if (transA) compute_t(c, ldc, a, lda, bp, m, n, k, alpha, beta);
    else compute_nt(c, ldc, a, lda, bp, m, n, k, alpha, beta);
}

int pg_sgemm_small(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                   const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return 1;
    if (!pg_avx512_supported()) return 0;
    if (k <= 0) {
        // C = beta·C (no product); beta 0 writes zeros without reading C.
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return 1;
    }
    long panels = (n + 15) / 16;
    float *bp = scratch_for(panels * 16 * k);
    if (!bp) return 0;
    pg_small_pack_b(bp, b, ldb, transB, k, n);
    pg_small_compute(transA, c, ldc, a, lda, bp, m, n, k, alpha, beta);
    return 1;
}

#else
int pg_avx512_supported(void) { return 0; }
long pg_small_packed_b_count(long k, long n) { return ((n + 15) / 16) * 16 * (k > 0 ? k : 0); }
void pg_small_pack_b(float *bp, const float *b, long ldb, int transB, long k, long n) {
    (void)bp; (void)b; (void)ldb; (void)transB; (void)k; (void)n;
}
void pg_small_compute(int transA, float *c, long ldc, const float *a, long lda, const float *bp, long m, long n,
                      long k, float alpha, float beta) {
    (void)transA; (void)c; (void)ldc; (void)a; (void)lda; (void)bp; (void)m; (void)n; (void)k; (void)alpha;
    (void)beta;
}
int pg_sgemm_small(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                   const float *b, long ldb, float beta, float *c, long ldc) {
    (void)transA; (void)transB; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return 0;
}
#endif
