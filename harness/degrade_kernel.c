/* MATLAB imresize 'bicubic' downscaling by an integer factor, in MATLAB's float64 arithmetic.
 *
 * Built and loaded by harness/degrade_c.py (plain C99 + GCC/Clang vector extensions, no Python headers).
 * Compile with -ffp-contract=off and without -ffast-math: MATLAB rounds every product before adding it,
 * so a fused multiply-add or any reassociation changes the last bit of the sums, and with it which way an
 * exact rounding tie goes. Vectorisation runs across pixels only; the taps of each pixel are added in
 * MATLAB's order.
 *
 * For output pixel (i, j) of every plane, MATLAB computes, rows (dim 1) first:
 *   a(i, j') = ((x(r0, j')·w0 + x(r1, j')·w1) + ...)        r_k = fold(s·i + offset + k, h)
 *   v(i, j)  = ((a(i, c0)·w0 + a(i, c1)·w1) + ...)          c_k = fold(s·j + offset + k, w)
 * (fold: symmetric padding) over x = im2double of the input, then writes uint8 floor(clamp(255·v) + 0.5).
 *
 * Each input row (every plane of it, laid out as in the input) is converted once into a ring of float64
 * rows. The row pass computes ROWS output rows at a time, block of columns by block, so that the input
 * rows they share are read from L1. The column pass first copies each plane's row-pass result into s phase
 * arrays (entry p·M + m holds column fold(offset + s·m + p)), so that tap k of output column j is entry
 * (k mod s)·M + j + k div s: contiguous in j.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 16 /* doubles per register block: four 4-wide vectors */
#define ROWS 4   /* output rows per row pass */

typedef double vec4 __attribute__((vector_size(32)));

static inline vec4 load4(const double *p) {
    vec4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(double *p, vec4 v) { memcpy(p, &v, sizeof v); }

static int64_t fold(int64_t t, int64_t n) {
    int64_t period = 2 * n, m = t % period;
    if (m < 0) m += period;
    return m < n ? m : period - 1 - m;
}

/* For r < rows: dst[r][q] = sum over k < taps, in order, of w[k]·src[r·s + k][q] (each product rounded,
 * then added), q < len, len a multiple of BLOCK. */
static void weighted_sums(double *const *dst, int64_t rows, const double *const *src, int64_t s,
                          const double *w, int64_t taps, int64_t len) {
    for (int64_t q = 0; q < len; q += BLOCK)
        for (int64_t r = 0; r < rows; r++) {
            const double *const *x = src + r * s;
            vec4 w0 = {w[0], w[0], w[0], w[0]};
            vec4 a0 = w0 * load4(x[0] + q), a1 = w0 * load4(x[0] + q + 4);
            vec4 a2 = w0 * load4(x[0] + q + 8), a3 = w0 * load4(x[0] + q + 12);
            for (int64_t k = 1; k < taps; k++) {
                vec4 wk = {w[k], w[k], w[k], w[k]};
                const double *p = x[k] + q;
                a0 = a0 + wk * load4(p);
                a1 = a1 + wk * load4(p + 4);
                a2 = a2 + wk * load4(p + 8);
                a3 = a3 + wk * load4(p + 12);
            }
            store4(dst[r] + q, a0);
            store4(dst[r] + q + 4, a1);
            store4(dst[r] + q + 8, a2);
            store4(dst[r] + q + 12, a3);
        }
}

/* RN(k/255) for an integer-valued k: the product with RN(1/255) and one fma correction, equal to the
 * correctly rounded quotient for every |k| ≤ 2^22 (checked exhaustively by the tests). Beyond, the value
 * is never used (see convert). */
static inline double level_of(double k) {
    const double inv = 1.0 / 255.0;
    double q0 = k * inv;
    return fma(fma(-q0, 255.0, k), inv, q0);
}

/* im2double of len values src[q·stride] (float32, or float64 with src_double) into dst[q]: a value v
 * within tol of RN(k/255), k = round-half-even(255·v), becomes RN(k/255); tol < 0: every v as it is.
 * When |k| > 2^22 (|v| > 16448), level_of(k) may differ from RN(k/255), but only where either is v itself
 * or both lie farther than tol from v: float32 values there are multiples of 2^-9, ≥ 1/130560 from every
 * k/255 they differ from; float64 values and level_of(k) are ≥ 2^-38 apart when they differ; float16 and
 * bfloat16 values there are integers, whose RN(k/255) and level_of(k) are exactly v. */
static void convert(double *restrict dst, const void *src, int src_double, int64_t stride, int64_t len,
                    double tol) {
#define CONVERT(type, step)                                                                                  \
    do {                                                                                                     \
        const type *x = src;                                                                                 \
        if (tol < 0)                                                                                         \
            for (int64_t q = 0; q < len; q++) dst[q] = x[q * (step)];                                        \
        else                                                                                                 \
            for (int64_t q = 0; q < len; q++) {                                                              \
                double v = x[q * (step)], level = level_of(nearbyint(v * 255.0));                            \
                dst[q] = fabs(v - level) <= tol ? level : v;                                                 \
            }                                                                                                \
    } while (0)
    if (stride == 1 && src_double)
        CONVERT(double, 1);
    else if (stride == 1)
        CONVERT(float, 1);
    else if (src_double)
        CONVERT(double, stride);
    else
        CONVERT(float, stride);
#undef CONVERT
}

/* dst[c·stride + q] = src[cols[q] + c·plane_step] for every plane c < n: each plane's row-pass result in
 * phase order. Scalar loads and stores: the vectorised gather measured 3× slower. */
static void split_planes(double *restrict dst, int64_t stride, const double *restrict src, const int64_t *cols,
                         int64_t len, int64_t n, int64_t plane_step) {
    for (int64_t q = 0; q < len; q++) {
        const double *p = src + cols[q];
        for (int64_t c = 0; c < n; c++) dst[c * stride + q] = p[c * plane_step];
    }
}

/* One output row: v as it is (dst_kind 0, float64), or MATLAB's uint8 level floor(clamp(255·v) + 0.5)
 * as level/255 in float32 (1, divided in float32) or float64 (2). Overwrites v. */
static void store_row(void *dst, int dst_kind, int64_t at, double *restrict v, int64_t len) {
    if (dst_kind == 0) {
        memcpy((double *)dst + at, v, sizeof(double) * (size_t)len);
        return;
    }
    for (int64_t j = 0; j < len; j++) {
        double t = v[j] * 255.0;
        t = t < 0.0 ? 0.0 : t;
        t = t > 255.0 ? 255.0 : t;
        /* floor(t + 0.5) through nearbyint, which compilers vectorise (floor they keep scalar) */
        double y = t + 0.5, r = nearbyint(y);
        v[j] = r > y ? r - 1.0 : r;
    }
    if (dst_kind == 1)
        for (int64_t j = 0; j < len; j++) ((float *)dst)[at + j] = (float)v[j] / 255.0f;
    else
        for (int64_t j = 0; j < len; j++) ((double *)dst)[at + j] = v[j] / 255.0;
}

/* MATLAB bicubic downscaling by the integer factor s of n planes (h, w), element strides (sn, sh, sw) of
 * float32 (src_double 0) or float64 (1) values, into dst, contiguous (n, ceil(h/s), ceil(w/s)).
 * Output pixel j reads input s·j + offset + k, k < taps, with weights w[k] (float64, MATLAB's order).
 * tol ≥ 0: inputs are taken as im2double gives them (convert) and dst gets MATLAB's uint8 result as
 * level/255: float32 (dst_kind 1, divided in float32) or float64 (2); tol < 0 and dst_kind 0: the
 * unquantised float64 result. Returns 0, or 1 when memory ran out. */
int reprosr_bicubic_downscale(const void *src, int src_double, int64_t n, int64_t h, int64_t w, int64_t sn,
                              int64_t sh, int64_t sw, int64_t s, int64_t taps, int64_t offset,
                              const double *weights, double tol, void *dst, int dst_kind) {
    int64_t out_h = (h + s - 1) / s, out_w = (w + s - 1) / s;
    int64_t m_len = out_w - 1 + (taps + s - 1) / s; /* entries per phase */
    int64_t len = s * m_len;
    int64_t out_padded = (out_w + BLOCK - 1) / BLOCK * BLOCK;
    int64_t split_len = (len + BLOCK - 1) / BLOCK * BLOCK + BLOCK; /* the column pass reads past len */
    /* a ring row holds one input row of every plane as the input lays it out: one run of n·w values with
     * the planes interleaved (read_image's channels-last memory), else plane after plane */
    int interleaved = sw == n * sn;
    int64_t row_len = n * w, row_padded = (row_len + BLOCK - 1) / BLOCK * BLOCK;
    /* ring rows an odd number of cache lines apart: rows a multiple of 4 KiB apart share L1 sets, and
     * the row pass reads from taps of them at once (measured: 3-4× slower) */
    int64_t row_stride = row_padded + (row_padded / 8 % 2 == 0 ? 8 : 0);
    int64_t col_step = interleaved ? n : 1, plane_step = interleaved ? 1 : w;
    /* the input rows of ROWS windows lie in an interval of length < window: distinct slots mod window */
    int64_t window = taps + (ROWS - 1) * s;
    size_t elem = src_double ? sizeof(double) : sizeof(float);
    int64_t *cols = malloc(sizeof(int64_t) * (size_t)len);
    int64_t *tags = malloc(sizeof(int64_t) * (size_t)window);
    const double **rows = malloc(sizeof(double *) * (size_t)window);
    const double **phases = malloc(sizeof(double *) * (size_t)taps);
    double *ring = calloc((size_t)(window * row_stride), sizeof(double));
    double *acc = calloc((size_t)(ROWS * row_stride), sizeof(double));
    double *split = calloc((size_t)(n * split_len), sizeof(double));
    double *out = calloc((size_t)out_padded, sizeof(double));
    double *accs[ROWS];
    int status = 1;
    if (!cols || !tags || !rows || !phases || !ring || !acc || !split || !out) goto done;
    for (int64_t p = 0; p < s; p++)
        for (int64_t m = 0; m < m_len; m++) cols[p * m_len + m] = fold(offset + s * m + p, w) * col_step;
    for (int64_t k = 0; k < window; k++) tags[k] = -1;
    for (int64_t r = 0; r < ROWS; r++) accs[r] = acc + r * row_stride;
    for (int64_t i0 = 0; i0 < out_h; i0 += ROWS) {
        int64_t rows_now = out_h - i0 < ROWS ? out_h - i0 : ROWS;
        for (int64_t k = 0; k < taps + (rows_now - 1) * s; k++) {
            int64_t r = fold(s * i0 + offset + k, h), slot = r % window;
            double *row = ring + slot * row_stride;
            if (tags[slot] != r) {
                const char *first = (const char *)src + r * sh * (int64_t)elem;
                if (interleaved)
                    convert(row, first, src_double, sn, row_len, tol);
                else
                    for (int64_t c = 0; c < n; c++)
                        convert(row + c * w, first + c * sn * (int64_t)elem, src_double, sw, w, tol);
                tags[slot] = r;
            }
            rows[k] = row;
        }
        weighted_sums(accs, rows_now, rows, s, weights, taps, row_padded);
        for (int64_t r = 0; r < rows_now; r++) {
            split_planes(split, split_len, accs[r], cols, len, n, plane_step);
            for (int64_t c = 0; c < n; c++) {
                for (int64_t k = 0; k < taps; k++) phases[k] = split + c * split_len + (k % s) * m_len + k / s;
                weighted_sums(&out, 1, phases, 0, weights, taps, out_padded);
                store_row(dst, dst_kind, (c * out_h + i0 + r) * out_w, out, out_w);
            }
        }
    }
    status = 0;
done:
    free(cols);
    free(tags);
    free(rows);
    free(phases);
    free(ring);
    free(acc);
    free(split);
    free(out);
    return status;
}
