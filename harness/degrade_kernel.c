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
 * Layout: the row pass reads float32 input rows in place when each row's planes lie in one run
 * (channels-last, or contiguous plane rows) and the row stride spreads the rows over the L1 sets; other
 * inputs have each row (every plane of it, laid out as in the input) copied once into a ring of float32
 * rows. The column pass copies each plane's row-pass result into s phase arrays (entry p·M + m
 * holds column fold(offset + s·m + p)), so that tap k of output column j is entry (k mod s)·M + j + k div s:
 * contiguous in j, as the row pass's entries are.
 */
#include <float.h>
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

/* Two output rows whose windows overlap in taps − s input rows, each input row read once:
 * dst0[q] = sum over k < taps of w[k]·src[k][q] and dst1[q] = sum of w[k]·src[k + s][q] (src holds
 * taps + s rows), each sum in the order weighted_sum uses. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=fast")))
#endif
static void weighted_sum2(float *restrict dst0, float *restrict dst1, const float *const *src, const float *w,
                          int64_t taps, int64_t s, int64_t len) {
    int64_t q = 0;
    for (; q + BLOCK <= len; q += BLOCK) {
        vec8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        for (int64_t u = 0; u < taps + s; u++) {
            const float *p = src[u] + q;
            vec8 x0 = load8(p), x1 = load8(p + 8), x2 = load8(p + 16), x3 = load8(p + 24);
            if (u < taps) {
                vec8 wk = {w[u], w[u], w[u], w[u], w[u], w[u], w[u], w[u]};
                a0 = a0 + wk * x0;
                a1 = a1 + wk * x1;
                a2 = a2 + wk * x2;
                a3 = a3 + wk * x3;
            }
            if (u >= s) {
                float v = w[u - s];
                vec8 wk = {v, v, v, v, v, v, v, v};
                b0 = b0 + wk * x0;
                b1 = b1 + wk * x1;
                b2 = b2 + wk * x2;
                b3 = b3 + wk * x3;
            }
        }
        store8(dst0 + q, a0);
        store8(dst0 + q + 8, a1);
        store8(dst0 + q + 16, a2);
        store8(dst0 + q + 24, a3);
        store8(dst1 + q, b0);
        store8(dst1 + q + 8, b1);
        store8(dst1 + q + 16, b2);
        store8(dst1 + q + 24, b3);
    }
    for (; q < len; q++) {
        float a = 0.0f, b = 0.0f;
        for (int64_t k = 0; k < taps; k++) {
            a += w[k] * src[k][q];
            b += w[k] * src[k + s][q];
        }
        dst0[q] = a;
        dst1[q] = b;
    }
}

/* The largest |value| of len float32 values and 1; infinity when a value is NaN or infinite. */
static float magnitude(const float *x, int64_t len) {
    float top = 1.0f;
    for (int64_t q = 0; q < len; q++) {
        if (!(fabsf(x[q]) <= FLT_MAX)) return INFINITY;
        top = fabsf(x[q]) > top ? fabsf(x[q]) : top;
    }
    return top;
}

/* One input row of every plane into dst as float32, plane c at dst + c·w: src holds plane c's element q
 * at c·sn + q·sw (elements of float32, or float64 with src_double). Returns the largest |value| if it
 * exceeds 1, else 1; infinity when a value is NaN or infinite. */
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
                outside |= !(fabsf(a) <= 1.0f) | !(fabsf(b) <= 1.0f) | !(fabsf(c) <= 1.0f);                  \
            }                                                                                                \
        else                                                                                                 \
            for (int64_t c = 0; c < n; c++)                                                                  \
                for (int64_t q = 0; q < w; q++) {                                                            \
                    dst[c * w + q] = (float)x[c * sn + q * sw];                                              \
                    outside |= !(fabsf(dst[c * w + q]) <= 1.0f);                                             \
                }                                                                                            \
    } while (0)
    if (src_double)
        COPY(double);
    else
        COPY(float);
#undef COPY
    return outside ? magnitude(dst, n * w) : 1.0f; /* rare: the bound grows with the largest |input| */
}

/* dst[(p·pitch + m)·g + e] = src[(s·m + p)·g + e], p < s, lo ≤ m < hi, e < g; inlined with s and g
 * constants, compilers vectorise it. */
static inline void deinterleave(float *restrict dst, int64_t pitch, const float *restrict src, int64_t lo,
                                int64_t hi, const int64_t s, const int64_t g) {
    for (int64_t m = lo; m < hi; m++)
        for (int64_t p = 0; p < s; p++)
            for (int64_t e = 0; e < g; e++) dst[(p * pitch + m) * g + e] = src[(s * m + p) * g + e];
}

/* The row-pass result x of g interleaved planes (w columns) in phase order, planes kept interleaved:
 * dst[(p·m_len + m)·g + e] = x[fold(offset + s·m + p)·g + e], m < m_len, e < g; cols holds those folded
 * column indices in the same order. */
static void split_phases(float *restrict dst, const float *restrict x, int64_t g, const int64_t *cols,
                         int64_t w, int64_t s, int64_t offset, int64_t m_len) {
    /* m in [lo, hi): every p reads x[offset + s·m + p] inside the row, no fold */
    int64_t lo = offset >= 0 ? 0 : (-offset + s - 1) / s, hi = (w - offset) / s;
    hi = hi < m_len ? hi : m_len;
    hi = hi > 0 ? hi : 0;
    lo = lo < hi ? lo : hi;
    for (int64_t p = 0; p < s; p++) {
        for (int64_t m = 0; m < lo; m++)
            for (int64_t e = 0; e < g; e++) dst[(p * m_len + m) * g + e] = x[cols[p * m_len + m] * g + e];
        for (int64_t m = hi; m < m_len; m++)
            for (int64_t e = 0; e < g; e++) dst[(p * m_len + m) * g + e] = x[cols[p * m_len + m] * g + e];
    }
    const float *inside = x + offset * g;
#define CASE(S, G)                                                                                           \
    if (s == S && g == G) {                                                                                  \
        deinterleave(dst, m_len, inside, lo, hi, S, G);                                                      \
        return;                                                                                              \
    }
    CASE(2, 1) CASE(3, 1) CASE(4, 1) CASE(2, 3) CASE(3, 3) CASE(4, 3)
#undef CASE
    deinterleave(dst, m_len, inside, lo, hi, s, g);
}

/* The largest |value| of len float32 values if it exceeds 1, else 1; infinity when a value is NaN or
 * infinite. */
static float largest_magnitude(const float *x, int64_t len) {
    int outside = 0; /* an integer OR vectorises; a float max reduction does not without -ffast-math */
    for (int64_t q = 0; q < len; q++) outside |= !(fabsf(x[q]) <= 1.0f);
    return outside ? magnitude(x, len) : 1.0f; /* rare */
}

/* Whether rows `stride` bytes apart, taps of them read at once, spread over the L1 sets (indexed by the
 * address modulo 4 KiB in 64-byte lines): no set holds more than 4 of them. */
static int rows_spread_over_sets(int64_t stride, int64_t taps) {
    int count[64] = {0};
    for (int64_t k = 0; k < taps; k++)
        if (++count[(((k * stride) % 4096) + 4096) % 4096 / 64] > 4) return 0;
    return 1;
}

/* x as MATLAB's im2double gives it: within tol of a level k/255, k/255 exactly; otherwise x. */
static inline double im2double(double x, double tol) {
    double level = nearbyint(x * 255.0) / 255.0;
    return fabs(x - level) <= tol ? level : x;
}

/* MATLAB's uint8 level of the output pixel whose input rows and columns lie at element offsets rows[k]
 * and cols[k] (k < taps) of the plane at `plane`, computed as MATLAB does (see the top of this file): the
 * taps column sums a[kc] are independent chains, run side by side (each in MATLAB's order over the rows);
 * then the row of sums in order. a: scratch for taps values. */
static double matlab_level(const void *src, int src_double, int64_t plane, const int64_t *rows,
                           const int64_t *cols, int64_t taps, const double *weights, double tol, double *a) {
    const float *x32 = src;
    const double *x64 = src;
    for (int64_t kr = 0; kr < taps; kr++) {
        const int64_t at = plane + rows[kr];
        const double w = weights[kr];
        for (int64_t kc = 0; kc < taps; kc++) {
            double x = im2double(src_double ? x64[at + cols[kc]] : (double)x32[at + cols[kc]], tol);
            a[kc] = kr == 0 ? x * w : a[kc] + x * w;
        }
    }
    double v = a[0] * weights[0];
    for (int64_t kc = 1; kc < taps; kc++) v = v + a[kc] * weights[kc];
    double t = v * 255.0;
    t = t < 0.0 ? 0.0 : t;
    t = t > 255.0 ? 255.0 : t;
    return floor(t + 0.5);
}

/* MATLAB bicubic downscaling by the integer factor s of n planes (h, w), element strides (sn, sh, sw) of
 * float32 (src_double 0) or float64 (1) values, quantised as MATLAB does: dst, contiguous
 * (n, ceil(h/s), ceil(w/s)), gets the uint8 level (dst_kind 0), or level/255 in float32 (1, divided in
 * float32) or float64 (2).
 * Output pixel j reads input s·j + offset + k, k < taps, with weights[k] (float64, MATLAB's order); inputs
 * within tol of a level k/255 are that level (im2double). bound: the largest error of the float32 pass,
 * in levels, for inputs in [-1, 1]. Returns 0; 1 when memory ran out; 2 when an input is NaN or infinite
 * (dst is then incomplete). */
int reprosr_bicubic_downsample(const void *src, int src_double, int64_t n, int64_t h, int64_t w, int64_t sn,
                               int64_t sh, int64_t sw, int64_t s, int64_t taps, int64_t offset,
                               const double *weights, double tol, double bound, void *dst, int dst_kind) {
    int64_t out_h = (h + s - 1) / s, out_w = (w + s - 1) / s;
    int64_t m_len = out_w - 1 + (taps + s - 1) / s; /* entries per phase */
    int64_t len = s * m_len;
    /* Output rows go in pairs (i, i + 1): away from the borders their windows overlap in taps − s rows,
     * and one pass over the taps + s rows feeds both. Ring rows: one input row of every plane, as
     * float32, plane after plane (n·w values), an odd number of cache lines apart (rows a multiple of
     * 4 KiB apart share L1 sets, and the row pass reads many of them at once: measured 3-4× slower); the
     * rows of a pair's windows lie in an interval of taps + s rows: distinct slots. */
    int64_t slots = taps + s, row_len = n * w, row_stride = (row_len + 31) / 32 * 32 + 16;
    size_t elem = src_double ? sizeof(double) : sizeof(float);
    /* float32 rows that hold their planes interleaved (channels-last) or a plane's run contiguously are
     * read in place, unless the row stride crowds the rows onto few L1 sets; others are copied */
    int interleaved = n > 1 && sn == 1 && sw == n;
    int in_place = !src_double && (interleaved || sw == 1) && rows_spread_over_sets(sh * 4, slots);
    int64_t xs = in_place && interleaved ? n : 1; /* the row pass's entry of plane c, column q: (c·w + q)
                                                     or, interleaved, (q·n + c) */
    const float *x32 = src;
    int64_t *cols = malloc(sizeof(int64_t) * (size_t)len);
    int64_t *tags = malloc(sizeof(int64_t) * (size_t)slots);
    float *tops = malloc(sizeof(float) * (size_t)slots);
    int64_t *row_at = malloc(sizeof(int64_t) * (size_t)(3 * taps)), *col_at = row_at + 2 * taps;
    double *sums = malloc(sizeof(double) * (size_t)taps);
    float *wf = malloc(sizeof(float) * (size_t)(2 * taps));
    /* the two windows' rows (taps each), then the pair's rows (taps + s) for one plane */
    const float **rows = malloc(sizeof(float *) * (size_t)(3 * taps + s)), **pair_rows = rows + 2 * taps;
    const float **phases = malloc(sizeof(float *) * (size_t)taps);
    float *ring = in_place ? NULL : malloc(sizeof(float) * (size_t)(slots * row_stride));
    float *acc = malloc(sizeof(float) * (size_t)(2 * row_len));
    float *split = malloc(sizeof(float) * (size_t)(len * n));
    float *out = malloc(sizeof(float) * (size_t)(out_w * n));
    int status = 1;
    if (!cols || !tags || !tops || !row_at || !sums || !wf || !rows || !phases || (!in_place && !ring) || !acc ||
        !split || !out)
        goto done;
    for (int64_t k = 0; k < taps; k++) {
        wf[k] = (float)(weights[k] * 255.0); /* the row pass gives levels */
        wf[taps + k] = (float)weights[k];
        phases[k] = split + ((k % s) * m_len + k / s) * xs;
    }
    for (int64_t k = 0; k < slots; k++) tags[k] = -1;
    for (int64_t p = 0; p < s; p++)
        for (int64_t m = 0; m < m_len; m++) cols[p * m_len + m] = fold(offset + s * m + p, w);
    for (int64_t i = 0; i < out_h; i += 2) {
        int64_t count = i + 1 < out_h ? 2 : 1;
        float top[2] = {1.0f, 1.0f};
        for (int64_t t = 0; t < count; t++)
            for (int64_t k = 0; k < taps; k++) {
                int64_t r = fold(s * (i + t) + offset + k, h), slot = r % slots;
                if (tags[slot] != r) {
                    if (!in_place)
                        tops[slot] = copy_row(ring + slot * row_stride, (const char *)src + r * sh * (int64_t)elem,
                                              src_double, n, w, sn, sw);
                    else if (interleaved)
                        tops[slot] = largest_magnitude(x32 + r * sh, row_len);
                    else
                        for (int64_t c = 0; c < n; c++) {
                            float m = largest_magnitude(x32 + c * sn + r * sh, w);
                            tops[slot] = c == 0 || m > tops[slot] ? m : tops[slot];
                        }
                    tags[slot] = r;
                    if (isinf(tops[slot])) {
                        status = 2;
                        goto done;
                    }
                }
                rows[t * taps + k] = in_place ? x32 + r * sh : ring + slot * row_stride;
                row_at[t * taps + k] = r * sh;
                top[t] = tops[slot] > top[t] ? tops[slot] : top[t];
            }
        int pair = count == 2;
        for (int64_t k = 0; pair && k < taps - s; k++) pair = rows[taps + k] == rows[k + s];
        /* the row pass: planar rows in place one plane at a time, other rows all planes at once */
        int64_t planes = in_place && !interleaved ? n : 1, run = planes == 1 ? row_len : w;
        for (int64_t c = 0; c < planes; c++) {
            int64_t shift = planes == 1 ? 0 : c * sn;
            for (int64_t u = 0; u < taps + s; u++)
                pair_rows[u] = (u < taps ? rows[u] : rows[taps + u - s]) + shift;
            if (pair)
                weighted_sum2(acc + c * run, acc + row_len + c * run, pair_rows, wf, taps, s, run);
            else
                for (int64_t t = 0; t < count; t++) {
                    for (int64_t k = 0; k < taps; k++) pair_rows[k] = rows[t * taps + k] + shift;
                    weighted_sum(acc + t * row_len + c * run, pair_rows, wf, taps, run);
                }
        }
        for (int64_t t = 0; t < count; t++) {
            const float *a = acc + t * row_len;
            /* the pixels whose float32 value lies within `lower` of a half level are recomputed */
            double margin = 0.5 - bound * top[t];
            float lower = (float)margin;
            if ((double)lower > margin) lower = nextafterf(lower, -1.0f);
            /* the column pass: interleaved planes all at once (out[j·g + e]), others one at a time */
            const int64_t g = xs, span = g * out_w;
            for (int64_t c0 = 0; c0 < n; c0 += g) {
                split_phases(split, g == 1 ? a + c0 * w : a, g, cols, w, s, offset, m_len);
                weighted_sum(out, phases, wf + taps, taps, span);
                for (int64_t j = 0; j < span; j++) {
                    float v = out[j];
                    v = v < 0.0f ? 0.0f : v;
                    v = v > 255.0f ? 255.0f : v;
                    float level = nearbyintf(v);
                    out[j] = fabsf(v - level) >= lower ? -1.0f : level;
                }
                for (int64_t j0 = 0; j0 < span; j0 += 16) {
                    int64_t j1 = j0 + 16 < span ? j0 + 16 : span;
                    int near = 0;
                    for (int64_t j = j0; j < j1; j++) near |= out[j] < 0.0f;
                    for (int64_t j = j0; near && j < j1; j++)
                        if (out[j] < 0.0f) {
                            int64_t col = j / g, c = c0 + j % g;
                            for (int64_t k = 0; k < taps; k++) col_at[k] = fold(s * col + offset + k, w) * sw;
                            out[j] = (float)matlab_level(src, src_double, c * sn, row_at + t * taps, col_at, taps,
                                                         weights, tol, sums);
                        }
                }
                for (int64_t e = 0; e < g; e++) {
                    int64_t at = ((c0 + e) * out_h + i + t) * out_w;
                    if (dst_kind == 0)
                        for (int64_t j = 0; j < out_w; j++) ((uint8_t *)dst)[at + j] = (uint8_t)out[j * g + e];
                    else if (dst_kind == 1)
                        for (int64_t j = 0; j < out_w; j++) ((float *)dst)[at + j] = out[j * g + e] / 255.0f;
                    else
                        for (int64_t j = 0; j < out_w; j++) ((double *)dst)[at + j] = (double)out[j * g + e] / 255.0;
                }
            }
        }
    }
    status = 0;
done:
    free(cols);
    free(tags);
    free(tops);
    free(row_at);
    free(sums);
    free(wf);
    free(rows);
    free(phases);
    free(ring);
    free(acc);
    free(split);
    free(out);
    return status;
}
