// Float element-wise kernels (softmax rows, GELU, SiLU, exp, LayerNorm rows) with a runtime-dispatched AVX2 + FMA path (x86-64 CPUs that have both) and a
// portable scalar path (every other CPU; the same formulas). The Swift code is compiled for the x86-64 baseline
// (SSE2, 4 lanes, no FMA), so these loops are where 8-lane FMA code pays: softmax rows and GELU are the largest
// costs outside GEMM in a ViT step (README, "Performance notes").
//
// Formulas (identical in both paths, up to FMA rounding):
//   exp(x):   Cody–Waite reduction x = n·ln2 + r, Cephes minimax polynomial, 2^n from exponent bits; 0 below
//             −87.33654, clamped above 88.72283; NaN in → NaN out.
//   erf(x):   odd/even rational minimax fit x·P(x²)/Q(x²) on x clamped to [−4, 4] (absolute error ≤ 4e-7).
//   Φ(x) = ½ + ½·erf(x/√2).
#ifndef PG_VECMATH_H
#define PG_VECMATH_H

#ifdef __cplusplus
extern "C" {
#endif

/// The vector path in use on this CPU: 2 = AVX2 + FMA, and AVX-512F for softmax rows and GELU; 1 = AVX2 + FMA; 0 = scalar.
/// `PATCHGUARD_VECMATH=scalar` forces 0, `PATCHGUARD_VECMATH=avx2` at most 1.
int pg_vecmath_avx2(void);

/// out[j] = softmax(scale·x)[j] over one row of n ≥ 1 values; out may alias x.
void pg_softmax_row(float *out, const float *x, long n, float scale);

/// out[i] = x[i]·Φ(x[i]) (exact GELU); out may alias x.
void pg_gelu_forward(float *out, const float *x, long n);

/// dx[i] += dout[i]·(Φ(x[i]) + x[i]·φ(x[i])).
void pg_gelu_backward(float *dx, const float *dout, const float *x, long n);

/// out[i] = x[i]·σ(x[i]) = x/(1 + exp(−x)) (SiLU); out may alias x.
void pg_silu_forward(float *out, const float *x, long n);

/// dx[i] += dout[i]·σ(x)·(1 + x·(1 − σ(x))).
void pg_silu_backward(float *dx, const float *dout, const float *x, long n);

/// out[i] = exp(x[i]) (the formula above); for tests.
void pg_exp(float *out, const float *x, long n);

/// LayerNorm of one row of c ≥ 1 values: *mean, *rstd = 1/√(biased variance + eps), y = (x − mean)·rstd·w + b
/// (the reductions in 8 partial sums on the AVX2 path).
void pg_layernorm_forward_row(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                              long c, float eps);

/// dx[i] += rstd·(g_i − mean(g) − x̂_i·mean(g·x̂)), g = dout·w, x̂ = (x − mean)·rstd, over one row of c values.
void pg_layernorm_backward_row(float *dx, const float *dout, const float *x, const float *w, float mean,
                               float rstd, long c);

/// Column reductions of a row-major matrix (rows × ld), columns [0, width), added into the accumulators; the sum
/// of each column starts from 0 and takes the rows in order, every product and sum rounded separately (no FMA), so
/// every path gives the same bits as the plain loop:
///   acc[j] += Σ_r m[r·ld + j]                                         (bias gradients)
void pg_column_sum_add(float *acc, const float *m, long rows, long ld, long width);
///   acc[j] += Σ_r a[r·ld + j]·b[r·ld + j]                              (LayerScale γ gradients)
void pg_column_dot_add(float *acc, const float *a, const float *b, long rows, long ld, long width);
///   dweight[j] += Σ_r (dout[r·ld + j]·(x[r·ld + j] − mean[r]))·rstd[r], dbias[j] += Σ_r dout[r·ld + j]
///   (LayerNorm parameter gradients; either accumulator may be NULL)
void pg_layernorm_param_grads(float *dweight, float *dbias, const float *dout, const float *x, const float *mean,
                              const float *rstd, long rows, long ld, long width);

/// The same with the path chosen by the caller (avx2 = a level up to pg_vecmath_avx2(); a function without an
/// AVX-512 version runs its AVX2 one at level 2): tests compare the paths on one machine.
void pg_softmax_row_using(int avx2, float *out, const float *x, long n, float scale);
void pg_gelu_forward_using(int avx2, float *out, const float *x, long n);
void pg_gelu_backward_using(int avx2, float *dx, const float *dout, const float *x, long n);
void pg_exp_using(int avx2, float *out, const float *x, long n);
void pg_silu_forward_using(int avx2, float *out, const float *x, long n);
void pg_silu_backward_using(int avx2, float *dx, const float *dout, const float *x, long n);
void pg_layernorm_forward_row_using(int avx2, float *y, float *mean, float *rstd, const float *x, const float *w,
                                    const float *b, long c, float eps);
void pg_layernorm_backward_row_using(int avx2, float *dx, const float *dout, const float *x, const float *w,
                                     float mean, float rstd, long c);
void pg_column_sum_add_using(int avx2, float *acc, const float *m, long rows, long ld, long width);
void pg_column_dot_add_using(int avx2, float *acc, const float *a, const float *b, long rows, long ld, long width);
void pg_layernorm_param_grads_using(int avx2, float *dweight, float *dbias, const float *dout, const float *x,
                                    const float *mean, const float *rstd, long rows, long ld, long width);

#ifdef __cplusplus
}
#endif
#endif
