// bf16 GEMM for x86-64 CPUs with AVX512_BF16 (Zen 4 and later, Cooper Lake, Sapphire Rapids and later).
//
// C (m×n) = beta·C + alpha·op(A)·op(B), row-major fp32 in and out, like cblas_sgemm: A and B are rounded to bf16
// (round to nearest even, the AVX512_BF16 `vcvtneps2bf16` conversion) while they are packed, the products are
// accumulated in fp32 by `vdpbf16ps` (two bf16 products per fp32 lane per instruction), C is fp32. So the result is
// exactly Σ_p bf16(a_ip)·bf16(b_pj) summed in fp32, in pairs: the only error beyond fp32 GEMM is the rounding of the
// inputs to 8 significant bits (at most 2⁻⁸ relative per input).
//
// Packed layouts (what the microkernel reads):
//   A: blocks of PG_BF16_MR rows; block r at pa + r·MR·kp (kp = k rounded up to even) holds, for each pair p, the
//      MR rows' pair words (bf16(a[i][2p]) low, bf16(a[i][2p+1]) high) side by side; rows ≥ m and the pad are zeros.
//   B: panels of 32 columns; panel q holds, for each pair p < kp/2, 32 32-bit words, word j = bf16(b[2p][j]) in the
//      low half and bf16(b[2p+1][j]) in the high half (columns ≥ n and the pad row are zeros).
// The microkernel keeps a 12×32 block of C in 24 zmm accumulators and streams A (broadcast pairs) and B (two zmm)
// over blocks of 128 pairs.
#ifndef PG_GEMM_BF16_H
#define PG_GEMM_BF16_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU (and the OS) can run the kernels: AVX512 F, BW, VL and BF16; else 0.
int pg_bf16_supported(void);

/// Rows of C per microkernel block (the unit of the row ranges below) and columns per B panel.
enum { PG_BF16_MR = 12, PG_BF16_NR = 32 };

/// Element counts of the packed operands: pa holds uint16 values, pb uint32 words.
long pg_bf16_packed_a_count(long m, long k);
long pg_bf16_packed_b_count(long k, long n);

/// Packs rows [row0, row1) of op(A) (m×k; transA: A is stored k×m) into pa. row0 and row1 are multiples of
/// PG_BF16_MR (row1 may be m rounded up to one; rows ≥ m are written as zeros).
void pg_bf16_pack_a(uint16_t *pa, const float *a, long lda, int transA, long m, long k, long row0, long row1);

/// Packs panels [panel0, panel1) of op(B) (k×n; transB: B is stored n×k) into pb.
void pg_bf16_pack_b(uint32_t *pb, const float *b, long ldb, int transB, long k, long n, long panel0, long panel1);

/// C = beta·C + alpha·A·B for row blocks [block0, block1) (of PG_BF16_MR rows) and panels [panel0, panel1) from
/// packed operands. Disjoint (block, panel) ranges write disjoint parts of C.
void pg_bf16_compute(float *c, long ldc, const uint16_t *pa, const uint32_t *pb, long m, long n, long k, float alpha,
                     float beta, long block0, long block1, long panel0, long panel1);

/// The whole product on the calling thread with thread-local scratch (reentrant: each thread has its own).
void pg_sgemm_bf16(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                   const float *b, long ldb, float beta, float *c, long ldc);

/// Room for the packed operands of an m×n×k product in the calling thread's scratch (64-byte aligned): *pa for
/// pg_bf16_packed_a_count(m, k) values, *pb for pg_bf16_packed_b_count(k, n) words; 0 when out of memory. The same
/// buffer pg_sgemm_bf16 uses on this thread: the caller must not hold it across such a call.
int pg_bf16_scratch_operands(long m, long n, long k, uint16_t **pa, uint32_t **pb);

/// The bf16 value (as a float) that the packing rounds x to (round to nearest even; NaN stays NaN). For tests.
float pg_bf16_round(float x);

/// GEMM accounting (any precision; the benchmark's "share of time in GEMM"): totals of multiply-add FLOPs and of
/// wall nanoseconds weighted by the share of the machine each call had; atomic, so workers may add concurrently.
void pg_gemm_count_add(uint64_t flops, uint64_t weighted_ns);
void pg_gemm_count_read(uint64_t *flops, uint64_t *weighted_ns);
void pg_gemm_count_reset(void);

// ---- fp32 small products (gemm_small_f32.c)
//
// C (m×n) = beta·C + alpha·op(A)·op(B), row-major fp32 like cblas_sgemm, on the calling thread, for the many small
// products of attention (per head: N×N×HS and N×HS×N): op(B) is packed into 16-column panels in a per-thread
// scratch, A is read in place (broadcast per element, its rows or, with transA, its columns), and an 8×32 block of
// C is kept in 16 zmm accumulators. Each C element is Σ_p a_ip·b_pj summed in p order with fp32 FMAs; beta 0 never
// reads C. OpenBLAS packs both operands of every such product (with k = 32 the packing costs about as much as the
// arithmetic).

/// 1 when this CPU (and the OS) can run pg_sgemm_small (AVX-512F); else 0.
int pg_avx512_supported(void);

/// The product above; returns 1 when it computed C, 0 when it could not (no AVX-512F, or no scratch memory):
/// the caller then uses another GEMM.
int pg_sgemm_small(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                   const float *b, long ldb, float beta, float *c, long ldc);

/// The two halves of pg_sgemm_small, for a caller that multiplies many row blocks by one packed op(B) (fused
/// attention): the packed size in floats, the packing (bp 64-byte aligned), and C rows = op(A) rows · packed B.
/// Only where pg_avx512_supported() is 1.
long pg_small_packed_b_count(long k, long n);
void pg_small_pack_b(float *bp, const float *b, long ldb, int transB, long k, long n);
void pg_small_compute(int transA, float *c, long ldc, const float *a, long lda, const float *bp, long m, long n,
                      long k, float alpha, float beta);

#ifdef __cplusplus
}
#endif
#endif
