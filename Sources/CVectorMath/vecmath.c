// See include/vecmath.h.
#include "vecmath.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------- scalar path

static inline float exp_scalar(float x) {
    const float lo = -87.33654f, hi = 88.72283f;
    if (x != x) return x;
    float xc = x < lo ? lo : (x > hi ? hi : x);
    const float magic = 12582912.0f;
    float t = xc * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float er = p * z + r + 1.0f;
    uint32_t tb, mb;
    memcpy(&tb, &t, 4); memcpy(&mb, &magic, 4);
    int32_t ni = (int32_t)(tb - mb);
    uint32_t sb = (uint32_t)(ni + 127) << 23;
    float scale; memcpy(&scale, &sb, 4);
    return x < lo ? 0.0f : er * scale;
}

static inline float erf_scalar(float a) {
    float x = a < -4.0f ? -4.0f : (a > 4.0f ? 4.0f : a);
    if (a != a) x = a;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return p / q;
}

static inline float cdf_scalar(float x) { return 0.5f + 0.5f * erf_scalar(x * 0.70710678118654752f); }

static void softmax_row_scalar(float *out, const float *x, long n, float scale) {
    float mx = -INFINITY;
    int nan = 0;
    for (long j = 0; j < n; j++) { if (x[j] > mx) mx = x[j]; if (x[j] != x[j]) nan = 1; }
    if (nan) { for (long j = 0; j < n; j++) out[j] = NAN; return; }
    float sum = 0;
    for (long j = 0; j < n; j++) { float e = exp_scalar(scale * (x[j] - mx)); out[j] = e; sum += e; }
    float inv = 1.0f / sum;
    for (long j = 0; j < n; j++) out[j] *= inv;
}

static void gelu_forward_scalar(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) { float v = x[i]; out[i] = v * cdf_scalar(v); }
}

static void gelu_backward_scalar(float *dx, const float *dout, const float *x, long n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float pdf = exp_scalar(-0.5f * v * v) * inv_sqrt_2pi;
        dx[i] += dout[i] * (cdf_scalar(v) + v * pdf);
    }
}

static void silu_forward_scalar(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) { float v = x[i]; out[i] = v / (1.0f + exp_scalar(-v)); }
}

static void silu_backward_scalar(float *dx, const float *dout, const float *x, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i], s = 1.0f / (1.0f + exp_scalar(-v));
        dx[i] += dout[i] * s * (1.0f + v * (1.0f - s));
    }
}

// LayerNorm over one row of c values: mean, biased variance, rstd = 1/sqrt(var + eps); y = (x - mean)·rstd·w + b.
static void layernorm_forward_scalar(float *y, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, long c, float eps) {
    float s = 0;
    for (long i = 0; i < c; i++) s += x[i];
    float m = s / (float)c, v = 0;
    for (long i = 0; i < c; i++) { float d = x[i] - m; v += d * d; }
    float rs = 1.0f / sqrtf(v / (float)c + eps);
    for (long i = 0; i < c; i++) y[i] = (x[i] - m) * rs * w[i] + b[i];
    *mean = m; *rstd = rs;
}

// dx += rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dout·w, x̂ = (x − mean)·rstd.
static void layernorm_backward_scalar(float *dx, const float *dout, const float *x, const float *w, float m,
                                      float rs, long c) {
    float gm = 0, gxm = 0;
    for (long i = 0; i < c; i++) { float g = dout[i] * w[i]; gm += g; gxm += g * (x[i] - m) * rs; }
    gm /= (float)c; gxm /= (float)c;
    for (long i = 0; i < c; i++) {
        float g = dout[i] * w[i], xh = (x[i] - m) * rs;
        dx[i] += rs * (g - gm - xh * gxm);
    }
}

static void exp_array_scalar(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) out[i] = exp_scalar(x[i]);
}

// ---------------------------------------------------------------------------------------------- AVX2 + FMA path

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PG_AVX2 __attribute__((target("avx2,fma")))

PG_AVX2 static inline __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(er, scale);
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);          // below the range: 0
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);                     // NaN in → NaN out
    return _mm256_blendv_ps(y, x, nan);
}

PG_AVX2 static inline __m256 erf256(__m256 a) {
    __m256 x = _mm256_min_ps(_mm256_max_ps(a, _mm256_set1_ps(-4.0f)), _mm256_set1_ps(4.0f));
    x = _mm256_blendv_ps(x, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-2.72614225801306e-10f);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.77068142495902e-08f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.10102402082508e-06f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-5.69250639462346e-05f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-7.34990630326855e-04f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.95459980854025e-03f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.60960333262415e-02f));
    p = _mm256_mul_ps(p, x);
    __m256 q = _mm256_set1_ps(-1.45660718464996e-05f);
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-2.13374055278905e-04f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.68282697438203e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-7.37332916720468e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.42647390514189e-02f));
    return _mm256_div_ps(p, q);
}

PG_AVX2 static inline __m256 cdf256(__m256 x) {
    const __m256 half = _mm256_set1_ps(0.5f);
    return _mm256_fmadd_ps(half, erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f))), half);
}

PG_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

PG_AVX2 static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/// Lanes 0..<k of an 8-lane mask set (k in 0...8).
PG_AVX2 static inline __m256i tail_mask(long k) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), idx);
}

PG_AVX2 static void softmax_row_avx2(float *out, const float *x, long n, float scale) {
    long full = n & ~7L, rest = n - full;
    __m256i tm = tail_mask(rest);
    __m256 vmax = _mm256_set1_ps(-INFINITY), vnan = _mm256_setzero_ps();
    for (long j = 0; j < full; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        vmax = _mm256_max_ps(vmax, v);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (rest) {
        __m256 v = _mm256_maskload_ps(x + full, tm);
        v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(tm));
        vmax = _mm256_max_ps(vmax, v);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(vnan)) { for (long j = 0; j < n; j++) out[j] = NAN; return; }
    float mx = hmax256(vmax);
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_set1_ps(scale), acc = _mm256_setzero_ps();
    for (long j = 0; j < full; j += 8) {
        __m256 e = exp256(_mm256_mul_ps(vs, _mm256_sub_ps(_mm256_loadu_ps(x + j), vm)));
        _mm256_storeu_ps(out + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (rest) {
        __m256 e = exp256(_mm256_mul_ps(vs, _mm256_sub_ps(_mm256_maskload_ps(x + full, tm), vm)));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(tm));
        _mm256_maskstore_ps(out + full, tm, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum256(acc));
    for (long j = 0; j < full; j += 8) _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(out + j), inv));
    if (rest) _mm256_maskstore_ps(out + full, tm, _mm256_mul_ps(_mm256_maskload_ps(out + full, tm), inv));
}

// The element-wise loops share two shapes: out = f(x) and dx += dout·g(x), 8 lanes then a masked tail. The
// helpers are always inlined with a constant f/g, so each kernel compiles to its own loop without calls.
#define PG_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

PG_AVX2_INLINE void map_avx2(float *out, const float *x, long n, __m256 (*f)(__m256)) {
    long full = n & ~7L, rest = n - full;
    for (long i = 0; i < full; i += 8) _mm256_storeu_ps(out + i, f(_mm256_loadu_ps(x + i)));
    if (rest) {
        __m256i tm = tail_mask(rest);
        _mm256_maskstore_ps(out + full, tm, f(_mm256_maskload_ps(x + full, tm)));
    }
}

PG_AVX2_INLINE void grad_avx2(float *dx, const float *dout, const float *x, long n, __m256 (*g)(__m256)) {
    long full = n & ~7L, rest = n - full;
    for (long i = 0; i < full; i += 8) {
        __m256 d = g(_mm256_loadu_ps(x + i));
        _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(dout + i), d, _mm256_loadu_ps(dx + i)));
    }
    if (rest) {
        __m256i tm = tail_mask(rest);
        __m256 d = g(_mm256_maskload_ps(x + full, tm));
        _mm256_maskstore_ps(dx + full, tm,
                            _mm256_fmadd_ps(_mm256_maskload_ps(dout + full, tm), d, _mm256_maskload_ps(dx + full, tm)));
    }
}

PG_AVX2 static inline __m256 gelu256(__m256 v) { return _mm256_mul_ps(v, cdf256(v)); }

PG_AVX2 static inline __m256 gelu_grad256(__m256 v) {
    __m256 pdf = _mm256_mul_ps(exp256(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(v, v))),
                               _mm256_set1_ps(0.3989422804014327f));
    return _mm256_fmadd_ps(v, pdf, cdf256(v));
}

PG_AVX2 static inline __m256 silu256(__m256 v) {
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

PG_AVX2 static inline __m256 silu_grad256(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    return _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
}

PG_AVX2 static void gelu_forward_avx2(float *out, const float *x, long n) { map_avx2(out, x, n, gelu256); }
PG_AVX2 static void gelu_backward_avx2(float *dx, const float *dout, const float *x, long n) {
    grad_avx2(dx, dout, x, n, gelu_grad256);
}
PG_AVX2 static void silu_forward_avx2(float *out, const float *x, long n) { map_avx2(out, x, n, silu256); }
PG_AVX2 static void silu_backward_avx2(float *dx, const float *dout, const float *x, long n) {
    grad_avx2(dx, dout, x, n, silu_grad256);
}
PG_AVX2 static void exp_array_avx2(float *out, const float *x, long n) { map_avx2(out, x, n, exp256); }

// LayerNorm rows with 8-lane partial sums (the reductions are what the baseline Swift loop serialises).
PG_AVX2 static void layernorm_forward_avx2(float *y, float *mean, float *rstd, const float *x, const float *w,
                                           const float *b, long c, float eps) {
    long n8 = c & ~7L;
    __m256 acc = _mm256_setzero_ps();
    for (long i = 0; i < n8; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    float s = hsum256(acc);
    for (long i = n8; i < c; i++) s += x[i];
    float m = s / (float)c;
    __m256 vm = _mm256_set1_ps(m);
    acc = _mm256_setzero_ps();
    for (long i = 0; i < n8; i += 8) { __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm); acc = _mm256_fmadd_ps(d, d, acc); }
    float v = hsum256(acc);
    for (long i = n8; i < c; i++) { float d = x[i] - m; v += d * d; }
    float rs = 1.0f / sqrtf(v / (float)c + eps);
    __m256 vr = _mm256_set1_ps(rs);
    for (long i = 0; i < n8; i += 8) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(xh, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (long i = n8; i < c; i++) y[i] = (x[i] - m) * rs * w[i] + b[i];
    *mean = m; *rstd = rs;
}

PG_AVX2 static void layernorm_backward_avx2(float *dx, const float *dout, const float *x, const float *w, float m,
                                            float rs, long c) {
    long n8 = c & ~7L;
    __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(rs);
    __m256 ag = _mm256_setzero_ps(), agx = _mm256_setzero_ps();
    for (long i = 0; i < n8; i += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dout + i), _mm256_loadu_ps(w + i));
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        ag = _mm256_add_ps(ag, g);
        agx = _mm256_fmadd_ps(g, xh, agx);
    }
    float gm = hsum256(ag), gxm = hsum256(agx);
    for (long i = n8; i < c; i++) { float g = dout[i] * w[i]; gm += g; gxm += g * (x[i] - m) * rs; }
    gm /= (float)c; gxm /= (float)c;
    __m256 vgm = _mm256_set1_ps(gm), vgxm = _mm256_set1_ps(gxm);
    for (long i = 0; i < n8; i += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dout + i), _mm256_loadu_ps(w + i));
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        __m256 t = _mm256_sub_ps(_mm256_sub_ps(g, vgm), _mm256_mul_ps(xh, vgxm));
        _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(vr, t, _mm256_loadu_ps(dx + i)));
    }
    for (long i = n8; i < c; i++) {
        float g = dout[i] * w[i], xh = (x[i] - m) * rs;
        dx[i] += rs * (g - gm - xh * gxm);
    }
}

// ---------------------------------------------------------------------------------------------- AVX-512F path
// Softmax rows (attention's N×N probabilities, the largest element-wise work of a ViT step) and GELU. exp is
// 2^n·p(r) with n = round(x·log2 e), r = x − n·ln 2 (ln 2 in two parts) and p the same degree-6 polynomial as
// the AVX2 path, assembled with vscalefps (no integer exponent arithmetic; it also flushes huge negative n to 0).

#define PG_AVX512 __attribute__((target("avx512f")))

PG_AVX512 static inline __m512 exp512(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.72283f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), _mm512_set1_ps(1.0f));
    __m512 y = _mm512_scalef_ps(er, n);
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);   // NaN in → NaN out
}

PG_AVX512 static void softmax_row_avx512(float *out, const float *x, long n, float scale) {
    long full = n & ~15L, rest = n - full;
    __mmask16 tm = (__mmask16)((1u << rest) - 1u);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    for (long j = 0; j < full; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        vmax = _mm512_max_ps(vmax, v);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (rest) {
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tm, x + full);
        vmax = _mm512_max_ps(vmax, v);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (nan) { for (long j = 0; j < n; j++) out[j] = NAN; return; }
    float mx = _mm512_reduce_max_ps(vmax);
    __m512 vm = _mm512_set1_ps(mx), vs = _mm512_set1_ps(scale), acc = _mm512_setzero_ps();
    for (long j = 0; j < full; j += 16) {
        __m512 e = exp512(_mm512_mul_ps(vs, _mm512_sub_ps(_mm512_loadu_ps(x + j), vm)));
        _mm512_storeu_ps(out + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (rest) {
        __m512 e = exp512(_mm512_mul_ps(vs, _mm512_sub_ps(_mm512_maskz_loadu_ps(tm, x + full), vm)));
        e = _mm512_maskz_mov_ps(tm, e);
        _mm512_mask_storeu_ps(out + full, tm, e);
        acc = _mm512_add_ps(acc, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
    for (long j = 0; j < full; j += 16) _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(out + j), inv));
    if (rest) _mm512_mask_storeu_ps(out + full, tm, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, out + full), inv));
}

PG_AVX512 static inline __m512 erf512(__m512 a) {
    __m512 x = _mm512_min_ps(_mm512_max_ps(a, _mm512_set1_ps(-4.0f)), _mm512_set1_ps(4.0f));
    x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-2.72614225801306e-10f);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.77068142495902e-08f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.10102402082508e-06f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-5.69250639462346e-05f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-7.34990630326855e-04f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.95459980854025e-03f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.60960333262415e-02f));
    p = _mm512_mul_ps(p, x);
    __m512 q = _mm512_set1_ps(-1.45660718464996e-05f);
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-2.13374055278905e-04f));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.68282697438203e-03f));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-7.37332916720468e-03f));
    q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.42647390514189e-02f));
    return _mm512_div_ps(p, q);
}

PG_AVX512 static inline __m512 cdf512(__m512 x) {
    const __m512 half = _mm512_set1_ps(0.5f);
    return _mm512_fmadd_ps(half, erf512(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))), half);
}

// GELU forward and backward (the MLP's element-wise work): the AVX2 formulas in 16 lanes, masked tails.
PG_AVX512 static void gelu_forward_avx512(float *out, const float *x, long n) {
    long full = n & ~15L, rest = n - full;
    for (long i = 0; i < full; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(v, cdf512(v)));
    }
    if (rest) {
        __mmask16 tm = (__mmask16)((1u << rest) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(tm, x + full);
        _mm512_mask_storeu_ps(out + full, tm, _mm512_mul_ps(v, cdf512(v)));
    }
}

PG_AVX512 static inline __m512 gelu_grad512(__m512 v) {
    __m512 pdf = _mm512_mul_ps(exp512(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(v, v))),
                               _mm512_set1_ps(0.3989422804014327f));
    return _mm512_fmadd_ps(v, pdf, cdf512(v));
}

PG_AVX512 static void gelu_backward_avx512(float *dx, const float *dout, const float *x, long n) {
    long full = n & ~15L, rest = n - full;
    for (long i = 0; i < full; i += 16) {
        __m512 d = gelu_grad512(_mm512_loadu_ps(x + i));
        _mm512_storeu_ps(dx + i, _mm512_fmadd_ps(_mm512_loadu_ps(dout + i), d, _mm512_loadu_ps(dx + i)));
    }
    if (rest) {
        __mmask16 tm = (__mmask16)((1u << rest) - 1u);
        __m512 d = gelu_grad512(_mm512_maskz_loadu_ps(tm, x + full));
        _mm512_mask_storeu_ps(dx + full, tm, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, dout + full), d,
                                                             _mm512_maskz_loadu_ps(tm, dx + full)));
    }
}

static int detect_avx2(void) {
    const char *force = getenv("PATCHGUARD_VECMATH");
    if (force && strcmp(force, "scalar") == 0) return 0;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    if (force && strcmp(force, "avx2") == 0) return 1;
    return __builtin_cpu_supports("avx512f") ? 2 : 1;
}
#else
static int detect_avx2(void) { return 0; }
#endif

// ---------------------------------------------------------------------------------------------- column reductions
// Bias, LayerNorm and LayerScale parameter gradients: sums over the rows of a row-major (rows × ld) matrix, per
// column. One contiguous sweep over the rows (a band of up to PG_COLUMN_TILE columns at a time, its partial sums in
// a local array that stays in L1), instead of one strided pass per small column block. Per column the order is the
// Swift loops' (partial sum from 0, rows in order, then added into the accumulator), with every product and sum
// rounded separately (no FMA contraction, on every path): the result is the same bit for bit on every path. The
// three copies differ only in the instructions the compiler may use to vectorise the loop over columns.

#pragma STDC FP_CONTRACT OFF

#define PG_COLUMN_TILE 512

#define PG_COLUMN_REDUCE_BODY                                                                                        \
    for (long j0 = 0; j0 < width; j0 += PG_COLUMN_TILE) {                                                            \
        long w = width - j0 < PG_COLUMN_TILE ? width - j0 : PG_COLUMN_TILE;                                          \
        float s0[PG_COLUMN_TILE], s1[PG_COLUMN_TILE];                                                                \
        for (long j = 0; j < w; j++) { s0[j] = 0.0f; s1[j] = 0.0f; }                                                  \
        for (long r = 0; r < rows; r++) {                                                                            \
            const float *restrict ar = a + r * ld + j0;                                                              \
            if (mode == 0) {                                                                                         \
                for (long j = 0; j < w; j++) s0[j] += ar[j];                                                         \
            } else if (mode == 1) {                                                                                  \
                const float *restrict br = b + r * ld + j0;                                                          \
                for (long j = 0; j < w; j++) s0[j] += ar[j] * br[j];                                                 \
            } else {                                                                                                 \
                const float *restrict br = b + r * ld + j0;                                                          \
                const float m = mean[r], rs = rstd[r];                                                               \
                for (long j = 0; j < w; j++) { s0[j] += ar[j] * (br[j] - m) * rs; s1[j] += ar[j]; }                  \
            }                                                                                                        \
        }                                                                                                            \
        if (acc0) for (long j = 0; j < w; j++) acc0[j0 + j] += s0[j];                                                \
        if (acc1) for (long j = 0; j < w; j++) acc1[j0 + j] += s1[j];                                                \
    }

// mode 0: acc0 += Σ_r a; mode 1: acc0 += Σ_r a·b; mode 2: acc0 += Σ_r a·(b − mean_r)·rstd_r, acc1 += Σ_r a.
// One copy per instruction set; `mode` is a constant inside each branch, so each loop is specialised.
#define PG_COLUMN_REDUCE_FUNCTION(name, attributes)                                                                  \
    attributes static void name(int mode, float *acc0, float *acc1, const float *restrict a,                         \
                                const float *restrict b, const float *mean, const float *rstd, long rows, long ld,   \
                                long width) {                                                                        \
        if (mode == 0) { mode = 0; PG_COLUMN_REDUCE_BODY }                                                           \
        else if (mode == 1) { mode = 1; PG_COLUMN_REDUCE_BODY }                                                      \
        else { mode = 2; PG_COLUMN_REDUCE_BODY }                                                                     \
    }

PG_COLUMN_REDUCE_FUNCTION(column_reduce_scalar, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
PG_COLUMN_REDUCE_FUNCTION(column_reduce_avx2, PG_AVX2)
PG_COLUMN_REDUCE_FUNCTION(column_reduce_avx512, PG_AVX512)
#endif

// ---------------------------------------------------------------------------------------------- dispatch

static int avx2_state = -1;  // -1 unknown; a benign race: every thread computes the same value

int pg_vecmath_avx2(void) {
    int s = __atomic_load_n(&avx2_state, __ATOMIC_RELAXED);
    if (s < 0) { s = detect_avx2(); __atomic_store_n(&avx2_state, s, __ATOMIC_RELAXED); }
    return s;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PG_HAVE_AVX2_PATH 1
#else
#define PG_HAVE_AVX2_PATH 0
#endif

void pg_softmax_row_using(int avx2, float *out, const float *x, long n, float scale) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    int level = pg_vecmath_avx2();
    if (avx2 >= 2 && level >= 2) { softmax_row_avx512(out, x, n, scale); return; }
    if (avx2 && level) { softmax_row_avx2(out, x, n, scale); return; }
#endif
    softmax_row_scalar(out, x, n, scale);
}

void pg_gelu_forward_using(int avx2, float *out, const float *x, long n) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 >= 2 && pg_vecmath_avx2() >= 2) { gelu_forward_avx512(out, x, n); return; }
    if (avx2 && pg_vecmath_avx2()) { gelu_forward_avx2(out, x, n); return; }
#endif
    gelu_forward_scalar(out, x, n);
}

void pg_gelu_backward_using(int avx2, float *dx, const float *dout, const float *x, long n) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 >= 2 && pg_vecmath_avx2() >= 2) { gelu_backward_avx512(dx, dout, x, n); return; }
    if (avx2 && pg_vecmath_avx2()) { gelu_backward_avx2(dx, dout, x, n); return; }
#endif
    gelu_backward_scalar(dx, dout, x, n);
}

void pg_exp_using(int avx2, float *out, const float *x, long n) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 && pg_vecmath_avx2()) { exp_array_avx2(out, x, n); return; }
#endif
    exp_array_scalar(out, x, n);
}

void pg_silu_forward_using(int avx2, float *out, const float *x, long n) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 && pg_vecmath_avx2()) { silu_forward_avx2(out, x, n); return; }
#endif
    silu_forward_scalar(out, x, n);
}

void pg_silu_backward_using(int avx2, float *dx, const float *dout, const float *x, long n) {
    if (n <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 && pg_vecmath_avx2()) { silu_backward_avx2(dx, dout, x, n); return; }
#endif
    silu_backward_scalar(dx, dout, x, n);
}

void pg_silu_forward(float *out, const float *x, long n) { pg_silu_forward_using(pg_vecmath_avx2(), out, x, n); }

void pg_silu_backward(float *dx, const float *dout, const float *x, long n) {
    pg_silu_backward_using(pg_vecmath_avx2(), dx, dout, x, n);
}

void pg_softmax_row(float *out, const float *x, long n, float scale) {
    pg_softmax_row_using(pg_vecmath_avx2(), out, x, n, scale);
}

void pg_gelu_forward(float *out, const float *x, long n) { pg_gelu_forward_using(pg_vecmath_avx2(), out, x, n); }

void pg_gelu_backward(float *dx, const float *dout, const float *x, long n) {
    pg_gelu_backward_using(pg_vecmath_avx2(), dx, dout, x, n);
}

void pg_exp(float *out, const float *x, long n) { pg_exp_using(pg_vecmath_avx2(), out, x, n); }

void pg_layernorm_forward_row_using(int avx2, float *y, float *mean, float *rstd, const float *x, const float *w,
                                    const float *b, long c, float eps) {
    if (c <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 && pg_vecmath_avx2()) { layernorm_forward_avx2(y, mean, rstd, x, w, b, c, eps); return; }
#endif
    layernorm_forward_scalar(y, mean, rstd, x, w, b, c, eps);
}

void pg_layernorm_backward_row_using(int avx2, float *dx, const float *dout, const float *x, const float *w,
                                     float mean, float rstd, long c) {
    if (c <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 && pg_vecmath_avx2()) { layernorm_backward_avx2(dx, dout, x, w, mean, rstd, c); return; }
#endif
    layernorm_backward_scalar(dx, dout, x, w, mean, rstd, c);
}

void pg_layernorm_forward_row(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                              long c, float eps) {
    pg_layernorm_forward_row_using(pg_vecmath_avx2(), y, mean, rstd, x, w, b, c, eps);
}

void pg_layernorm_backward_row(float *dx, const float *dout, const float *x, const float *w, float mean,
                               float rstd, long c) {
    pg_layernorm_backward_row_using(pg_vecmath_avx2(), dx, dout, x, w, mean, rstd, c);
}

static void column_reduce_using(int avx2, int mode, float *acc0, float *acc1, const float *a, const float *b,
                                const float *mean, const float *rstd, long rows, long ld, long width) {
    if (rows <= 0 || width <= 0) return;
#if PG_HAVE_AVX2_PATH
    if (avx2 >= 2 && pg_vecmath_avx2() >= 2) {
        column_reduce_avx512(mode, acc0, acc1, a, b, mean, rstd, rows, ld, width);
        return;
    }
    if (avx2 && pg_vecmath_avx2()) { column_reduce_avx2(mode, acc0, acc1, a, b, mean, rstd, rows, ld, width); return; }
#endif
    column_reduce_scalar(mode, acc0, acc1, a, b, mean, rstd, rows, ld, width);
}

void pg_column_sum_add_using(int avx2, float *acc, const float *m, long rows, long ld, long width) {
    column_reduce_using(avx2, 0, acc, NULL, m, NULL, NULL, NULL, rows, ld, width);
}

void pg_column_dot_add_using(int avx2, float *acc, const float *a, const float *b, long rows, long ld, long width) {
    column_reduce_using(avx2, 1, acc, NULL, a, b, NULL, NULL, rows, ld, width);
}

void pg_layernorm_param_grads_using(int avx2, float *dweight, float *dbias, const float *dout, const float *x,
                                    const float *mean, const float *rstd, long rows, long ld, long width) {
    column_reduce_using(avx2, 2, dweight, dbias, dout, x, mean, rstd, rows, ld, width);
}

void pg_column_sum_add(float *acc, const float *m, long rows, long ld, long width) {
    pg_column_sum_add_using(pg_vecmath_avx2(), acc, m, rows, ld, width);
}

void pg_column_dot_add(float *acc, const float *a, const float *b, long rows, long ld, long width) {
    pg_column_dot_add_using(pg_vecmath_avx2(), acc, a, b, rows, ld, width);
}

void pg_layernorm_param_grads(float *dweight, float *dbias, const float *dout, const float *x, const float *mean,
                              const float *rstd, long rows, long ld, long width) {
    pg_layernorm_param_grads_using(pg_vecmath_avx2(), dweight, dbias, dout, x, mean, rstd, rows, ld, width);
}
