/* MATLAB imresize 'bicubic' downscaling by an integer factor, quantised to uint8 levels exactly as MATLAB
 * does: im2uint8(imresize(im2double(x), 1/s, 'bicubic')).
 *
 * Built and loaded by harness/degrade_c.py (plain C99 + GCC/Clang vector extensions, no Python headers).
 * MATLAB computes, for output pixel (i, j) of every plane, rows (dim 1) first, in float64:
 *   a(i, j') = ((x(r0, j')·w0 + x(r1, j')·w1) + ...)        r_k = fold(s·i + offset + k, h)
 *   v(i, j)  = ((a(i, c0)·w0 + a(i, c1)·w1) + ...)          c_k = fold(s·j + offset + k, w)
 * (fold: symmetric padding; x = im2double of the input), then writes floor(clamp(255·v, 0, 255) + 0.5).
 *
 * Here a float32 pass computes 255·v for every pixel to within `bound` levels (the caller's proof, for
 * inputs in [-1, 1]; scaled by the largest |x| the pixel reads when that exceeds 1), and each pixel whose
 * value lies within that bound of a rounding boundary is recomputed exactly as MATLAB does (matlab_level:
 * float64, products rounded before each add, taps in MATLAB's order). matlab_level needs IEEE float64
 * without fused multiply-add or reassociation: compile with -ffp-contract=off and without -ffast-math.
 *
 * Layout: each input row (every plane of it, laid out as in the input) is copied once into a ring of
 * float32 rows. The column pass copies each plane's row-pass result into s phase arrays (entry p·M + m
 * holds column fold(offset + s·m + p)), so that tap k of output column j is entry (k mod s)·M + j + k div s:
 * contiguous in j, as the row pass's entries are.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 32 /* floats per register block: four 8-wide vectors */

typedef float vec8 __attribute__((vector_size(32)));

static inline vec8 load8(const float *p) {
    vec8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, vec8 v) { memcpy(p, &v, sizeof v); }

static inline int64_t fold(int64_t t, int64_t n) {
    if (t >= 0 && t < n) return t;
    int64_t period = 2 * n, m = t % period;
    if (m < 0) m += period;
    return m < n ? m : period - 1 - m;
}

/* dst[q] = sum over k < taps of w[k]·src[k][q], q < len, in float32. Fused multiply-adds allowed: the
 * caller's error bound holds for any order of the sum, fused or not. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=fast")))
#endif
static void weighted_sum(float *restrict dst, const float *const *src, const float *w, int64_t taps,
                         int64_t len) {
    int64_t q = 0;
    for (; q + BLOCK <= len; q += BLOCK) {
        vec8 w0 = {w[0], w[0], w[0], w[0], w[0], w[0], w[0], w[0]};
        vec8 a0 = w0 * load8(src[0] + q), a1 = w0 * load8(src[0] + q + 8);
        vec8 a2 = w0 * load8(src[0] + q + 16), a3 = w0 * load8(src[0] + q + 24);
        for (int64_t k = 1; k < taps; k++) {
            vec8 wk = {w[k], w[k], w[k], w[k], w[k], w[k], w[k], w[k]};
            const float *p = src[k] + q;
            a0 = a0 + wk * load8(p);
            a1 = a1 + wk * load8(p + 8);
            a2 = a2 + wk * load8(p + 16);
            a3 = a3 + wk * load8(p + 24);
        }
        store8(dst + q, a0);
        store8(dst + q + 8, a1);
        store8(dst + q + 16, a2);
        store8(dst + q + 24, a3);
    }
    for (; q < len; q++) {
        float a = w[0] * src[0][q];
        for (int64_t k = 1; k < taps; k++) a += w[k] * src[k][q];
        dst[q] = a;
    }
}

/* One input row of every plane into dst as float32, plane c at dst + c·w: src holds plane c's element q
 * at c·sn + q·sw (elements of float32, or float64 with src_double). Returns the largest |value| if it
 * exceeds 1, else 1 (NaN is not counted). */
static float copy_row(float *restrict dst, const void *src, int src_double, int64_t n, int64_t w, int64_t sn,
                      int64_t sw) {
    int outside = 0;
#define COPY(type)                                                                                           \
    do {                                                                                                     \
        const type *x = src;                                                                                 \
        if (n == 3 && sn == 1 && sw == 3) /* read_image's channels-last memory: vectorised deinterleave */   \
            for (int64_t q = 0; q < w; q++) {                                                                \
                float a = (float)x[3 * q], b = (float)x[3 * q + 1], c = (float)x[3 * q + 2];                 \
                dst[q] = a;                                                                                  \
                dst[w + q] = b;                                                                              \
                dst[2 * w + q] = c;                                                                          \
                outside |= (fabsf(a) > 1.0f) | (fabsf(b) > 1.0f) | (fabsf(c) > 1.0f);                        \
            }                                                                                                \
        else                                                                                                 \
            for (int64_t c = 0; c < n; c++)                                                                  \
                for (int64_t q = 0; q < w; q++) {                                                            \
                    dst[c * w + q] = (float)x[c * sn + q * sw];                                              \
                    outside |= fabsf(dst[c * w + q]) > 1.0f;                                                 \
                }                                                                                            \
    } while (0)
    if (src_double)
        COPY(double);
    else
        COPY(float);
#undef COPY
    float top = 1.0f;
    if (outside) /* rare: the bound grows with the largest |input| */
        for (int64_t q = 0; q < n * w; q++) top = fabsf(dst[q]) > top ? fabsf(dst[q]) : top;
    return top;
}

/* dst[p·pitch + m] = src[s·m + p], p < s, lo ≤ m < hi; inlined with s a constant, compilers vectorise it. */
static inline void deinterleave(float *restrict dst, int64_t pitch, const float *restrict src, int64_t lo,
                                int64_t hi, const int64_t s) {
    for (int64_t m = lo; m < hi; m++)
        for (int64_t p = 0; p < s; p++) dst[p * pitch + m] = src[s * m + p];
}

/* One plane's row-pass result x (w values) in phase order: dst[p·m_len + m] = x[fold(offset + s·m + p)],
 * m < m_len; cols holds those folded indices in the same order. */
static void split_phases(float *restrict dst, const float *restrict x, const int64_t *cols, int64_t w,
                         int64_t s, int64_t offset, int64_t m_len) {
    /* m in [lo, hi): every p reads x[offset + s·m + p] inside the row, no fold */
    int64_t lo = offset >= 0 ? 0 : (-offset + s - 1) / s, hi = (w - offset) / s;
    hi = hi < m_len ? hi : m_len;
    hi = hi > 0 ? hi : 0;
    lo = lo < hi ? lo : hi;
    for (int64_t p = 0; p < s; p++) {
        for (int64_t m = 0; m < lo; m++) dst[p * m_len + m] = x[cols[p * m_len + m]];
        for (int64_t m = hi; m < m_len; m++) dst[p * m_len + m] = x[cols[p * m_len + m]];
    }
    const float *inside = x + offset;
    switch (s) {
    case 2:
        deinterleave(dst, m_len, inside, lo, hi, 2);
        break;
    case 3:
        deinterleave(dst, m_len, inside, lo, hi, 3);
        break;
    case 4:
        deinterleave(dst, m_len, inside, lo, hi, 4);
        break;
    default:
        deinterleave(dst, m_len, inside, lo, hi, s);
    }
}

/* The input value at element offset `at`, as MATLAB's im2double gives it: within tol of a level k/255,
 * k/255 exactly (levels[k] = k/255 for k ≤ 255); otherwise the value. */
static double im2double(const void *src, int src_double, int64_t at, double tol, const double *levels) {
    double v = src_double ? ((const double *)src)[at] : (double)((const float *)src)[at];
    double k = nearbyint(v * 255.0), level = k >= 0.0 && k <= 255.0 ? levels[(int)k] : k / 255.0;
    return fabs(v - level) <= tol ? level : v;
}

/* MATLAB's uint8 level of the output pixel whose input rows and columns lie at element offsets rows[k]
 * and cols[k] (k < taps) of the plane at `plane`, computed as MATLAB does (see the top of this file). */
static double matlab_level(const void *src, int src_double, int64_t plane, const int64_t *rows,
                           const int64_t *cols, int64_t taps, const double *weights, double tol,
                           const double *levels) {
    double v = 0.0;
    for (int64_t kc = 0; kc < taps; kc++) {
        double a = 0.0;
        for (int64_t kr = 0; kr < taps; kr++) {
            double x = im2double(src, src_double, plane + rows[kr] + cols[kc], tol, levels);
            a = kr == 0 ? x * weights[0] : a + x * weights[kr];
        }
        v = kc == 0 ? a * weights[0] : v + a * weights[kc];
    }
    double t = v * 255.0;
    t = t < 0.0 ? 0.0 : t;
    t = t > 255.0 ? 255.0 : t;
    return floor(t + 0.5);
}

/* MATLAB bicubic downscaling by the integer factor s of n planes (h, w), element strides (sn, sh, sw) of
 * float32 (src_double 0) or float64 (1) values, quantised as MATLAB does: dst, contiguous
 * (n, ceil(h/s), ceil(w/s)), gets level/255 in float32 (dst_kind 1, divided in float32) or float64 (2).
 * Output pixel j reads input s·j + offset + k, k < taps, with weights[k] (float64, MATLAB's order); inputs
 * within tol of a level k/255 are that level (im2double). bound: the largest error of the float32 pass,
 * in levels, for inputs in [-1, 1]. Returns 0, or 1 when memory ran out. */
int reprosr_bicubic_downsample(const void *src, int src_double, int64_t n, int64_t h, int64_t w, int64_t sn,
                               int64_t sh, int64_t sw, int64_t s, int64_t taps, int64_t offset,
                               const double *weights, double tol, double bound, void *dst, int dst_kind) {
    int64_t out_h = (h + s - 1) / s, out_w = (w + s - 1) / s;
    int64_t m_len = out_w - 1 + (taps + s - 1) / s; /* entries per phase */
    int64_t len = s * m_len;
    /* ring rows: one input row of every plane, as float32, plane after plane (n·w values), an odd number of
     * cache lines apart: rows a multiple of 4 KiB apart share L1 sets, and the row pass reads taps of them
     * at once (measured 3-4× slower) */
    int64_t row_len = n * w, row_stride = (row_len + 31) / 32 * 32 + 16;
    size_t elem = src_double ? sizeof(double) : sizeof(float);
    int64_t *cols = malloc(sizeof(int64_t) * (size_t)len);
    int64_t *tags = malloc(sizeof(int64_t) * (size_t)taps);
    float *tops = malloc(sizeof(float) * (size_t)taps);
    int64_t *row_at = malloc(sizeof(int64_t) * (size_t)(2 * taps)), *col_at = row_at + taps;
    double levels[256];
    float *wf = malloc(sizeof(float) * (size_t)(2 * taps));
    const float **rows = malloc(sizeof(float *) * (size_t)taps);
    const float **phases = malloc(sizeof(float *) * (size_t)taps);
    float *ring = malloc(sizeof(float) * (size_t)(taps * row_stride));
    float *acc = malloc(sizeof(float) * (size_t)row_len);
    float *split = malloc(sizeof(float) * (size_t)len);
    float *out = malloc(sizeof(float) * (size_t)out_w);
    int status = 1;
    if (!cols || !tags || !tops || !row_at || !wf || !rows || !phases || !ring || !acc || !split || !out)
        goto done;
    for (int64_t k = 0; k < taps; k++) {
        wf[k] = (float)(weights[k] * 255.0); /* the row pass gives levels */
        wf[taps + k] = (float)weights[k];
        tags[k] = -1;
        phases[k] = split + (k % s) * m_len + k / s;
    }
    for (int k = 0; k < 256; k++) levels[k] = k / 255.0;
    for (int64_t p = 0; p < s; p++)
        for (int64_t m = 0; m < m_len; m++) cols[p * m_len + m] = fold(offset + s * m + p, w);
    for (int64_t i = 0; i < out_h; i++) {
        float top = 1.0f;
        for (int64_t k = 0; k < taps; k++) {
            /* the rows of one window lie in an interval shorter than taps: distinct slots */
            int64_t r = fold(s * i + offset + k, h), slot = r % taps;
            float *row = ring + slot * row_stride;
            if (tags[slot] != r) {
                tops[slot] = copy_row(row, (const char *)src + r * sh * (int64_t)elem, src_double, n, w, sn, sw);
                tags[slot] = r;
            }
            rows[k] = row;
            row_at[k] = r * sh;
            top = tops[slot] > top ? tops[slot] : top;
        }
        weighted_sum(acc, rows, wf, taps, row_len);
        /* the pixels whose float32 value lies within `lower` of a half level are recomputed */
        double margin = 0.5 - bound * top;
        float lower = (float)margin;
        if ((double)lower > margin) lower = nextafterf(lower, -1.0f);
        for (int64_t c = 0; c < n; c++) {
            split_phases(split, acc + c * w, cols, w, s, offset, m_len);
            weighted_sum(out, phases, wf + taps, taps, out_w);
            int64_t at = (c * out_h + i) * out_w;
            for (int64_t j = 0; j < out_w; j++) {
                float t = out[j];
                t = t < 0.0f ? 0.0f : t;
                t = t > 255.0f ? 255.0f : t;
                float level = nearbyintf(t);
                out[j] = fabsf(t - level) >= lower ? -1.0f : level;
            }
            for (int64_t j0 = 0; j0 < out_w; j0 += 16) {
                int64_t j1 = j0 + 16 < out_w ? j0 + 16 : out_w;
                int near = 0;
                for (int64_t j = j0; j < j1; j++) near |= out[j] < 0.0f;
                for (int64_t j = j0; near && j < j1; j++)
                    if (out[j] < 0.0f) {
                        for (int64_t k = 0; k < taps; k++) col_at[k] = fold(s * j + offset + k, w) * sw;
                        out[j] = (float)matlab_level(src, src_double, c * sn, row_at, col_at, taps, weights, tol,
                                                     levels);
                    }
            }
            if (dst_kind == 1)
                for (int64_t j = 0; j < out_w; j++) ((float *)dst)[at + j] = out[j] / 255.0f;
            else
                for (int64_t j = 0; j < out_w; j++) ((double *)dst)[at + j] = (double)out[j] / 255.0;
        }
    }
    status = 0;
done:
    free(cols);
    free(tags);
    free(tops);
    free(row_at);
    free(wf);
    free(rows);
    free(phases);
    free(ring);
    free(acc);
    free(split);
    free(out);
    return status;
}
