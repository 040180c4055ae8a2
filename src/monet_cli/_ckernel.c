/* The fused per-pixel render kernel in C: the same math, tables and rounding as the numba
 * kernel in _kernel.py (see there), for rows [y0, y1) of a C-contiguous (H, W, 3) image.
 * monet compiles this file once with the system C compiler and caches the shared library
 * (monet_cli/_ckernel.py); the Python side splits the rows between threads (ctypes releases
 * the GIL for the call). No state, no allocation, no libc.
 *
 * Pixels go through in blocks of BLOCK, one step at a time over the block, every step
 * branch-free (selects instead of ifs), so that the compiler turns each step into SIMD code;
 * table lookups become gathers where the CPU has them. On x86-64 the function is built
 * twice, for the baseline and for AVX2, and the loader picks the one this CPU runs
 * (target_clones), so a cached library stays right on any x86-64 machine. Float results are
 * those of the scalar formulas: no fast-math, no FMA contraction (ISO C mode). Measured on a
 * 24 MP photo with all 33 ops (benchmarks/apply.py): 1.3 s per thread for the per-pixel
 * version with branches, 0.54 s for this one.
 */
#include <stdint.h>
#include <string.h>

/* MANT_BITS, LOG_MIN, HUE_STEPS and CHROMA_FULL come from monet_cli/_tables.py as -D flags
 * (_ckernel.FLAGS), so the two kernels cannot disagree on the table layout. */
#define SHIFT (23 - MANT_BITS)
#define BASE ((127 + LOG_MIN) << MANT_BITS)
#define BLOCK 256

/* target_clones needs the loader's IFUNC support: glibc on Linux, GCC or clang >= 14. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) && \
    (!defined(__clang__) || __clang_major__ >= 14) && !defined(MONET_NO_CLONES)
#define HAVE_CLONES 1
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HAVE_CLONES 0
#define CLONES
#endif

/* Table index and fraction of v on the log2 grid: below the grid (and v <= 0) index 0,
 * fraction 0; above it (and NaN) the last interval, fraction 1. */
#define LOG_INDEX(v, n, i, f)                                                     \
    do {                                                                          \
        int32_t bits_;                                                            \
        float v_ = (v);                                                           \
        memcpy(&bits_, &v_, sizeof bits_);                                        \
        int32_t t_ = (bits_ >> SHIFT) - BASE;                                     \
        float f_ = (float)(bits_ & ((1 << SHIFT) - 1)) * (1.0f / (float)(1 << SHIFT)); \
        int lo_ = t_ < 0, hi_ = t_ >= (int32_t)(n);                               \
        (i) = lo_ ? 0 : (hi_ ? (int32_t)(n) - 1 : t_);                            \
        (f) = lo_ ? 0.0f : (hi_ ? 1.0f : f_);                                     \
    } while (0)

/* rgb = m · rgb for the n pixels of a block (m row-major 3x3), in place. */
static inline void mat3_block(const float *m, float *R, float *G, float *B, int n) {
    const float m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3], m4 = m[4], m5 = m[5], m6 = m[6], m7 = m[7],
                m8 = m[8];
    for (int k = 0; k < n; k++) {
        float r = R[k], g = G[k], b = B[k];
        R[k] = m0 * r + m1 * g + m2 * b;
        G[k] = m3 * r + m4 * g + m5 * b;
        B[k] = m6 * r + m7 * g + m8 * b;
    }
}

/* src: uint16 (decode_lut given, n_decode > 0) or float32 linear; dst: uint16 (encode_lut
 * given, n_encode > 0) or float32. Matrices row-major 3x3 float32. hsl_lut (n_hsl, 4). */
CLONES
int monet_render_rows(const void *src, void *dst, int64_t y0, int64_t y1, int64_t W,
                      const float *decode_lut, int64_t n_decode, const float *m_in, const float *luma,
                      int tone_on, const float *tone_ratio, const float *tone_pedestal, int64_t n_tone_points,
                      int color_on, const float *m_col, int hsl_on, const float *hsl_lut, int64_t n_hsl,
                      const float *m_out, const float *encode_lut, int64_t n_encode_points, float out_max) {
    const int use_decode = n_decode > 0, use_encode = n_encode_points > 0;
    const int32_t n_tone = (int32_t)(n_tone_points - 1), n_enc = (int32_t)(n_encode_points - 1);
    const int32_t nh = (int32_t)n_hsl;
    const float inv_sqrt3 = 0.57735026918962576f; /* (float)(1 / sqrt(3)) */
    const float l0 = luma[0], l1 = luma[1], l2 = luma[2];
    const int32_t qmax = (int32_t)out_max;
    const uint16_t *s16 = (const uint16_t *)src;
    const float *sf = (const float *)src;
    uint16_t *d16 = (uint16_t *)dst;
    float *df = (float *)dst;
    float R[BLOCK], G[BLOCK], B[BLOCK];

    for (int64_t y = y0; y < y1; y++) {
        for (int64_t x0 = 0; x0 < W; x0 += BLOCK) {
            const int n = (int)(W - x0 < BLOCK ? W - x0 : BLOCK);
            const int64_t p0 = (y * W + x0) * 3;
            if (use_decode) {
                const uint16_t *s = s16 + p0;
                for (int k = 0; k < n; k++) {
                    R[k] = decode_lut[s[3 * k]]; G[k] = decode_lut[s[3 * k + 1]]; B[k] = decode_lut[s[3 * k + 2]];
                }
            } else {
                const float *s = sf + p0;
                for (int k = 0; k < n; k++) {
                    R[k] = s[3 * k]; G[k] = s[3 * k + 1]; B[k] = s[3 * k + 2];
                }
            }
            mat3_block(m_in, R, G, B, n);
            if (tone_on) {
                for (int k = 0; k < n; k++) {
                    float r = R[k], g = G[k], b = B[k];
                    float Y = l0 * r + l1 * g + l2 * b;
                    int32_t i; float f;
                    LOG_INDEX(Y, n_tone, i, f);
                    float ratio = tone_ratio[i] + f * (tone_ratio[i + 1] - tone_ratio[i]);
                    float ped = tone_pedestal[i] + f * (tone_pedestal[i + 1] - tone_pedestal[i]);
                    R[k] = r * ratio + ped; G[k] = g * ratio + ped; B[k] = b * ratio + ped;
                }
            }
            if (color_on) mat3_block(m_col, R, G, B, n);
            if (hsl_on) {
                for (int k = 0; k < n; k++) {
                    float r = R[k], g = G[k], b = B[k];
                    float mx = r > g ? r : g; mx = mx > b ? mx : b;
                    float mn = r < g ? r : g; mn = mn < b ? mn : b;
                    float c = mx - mn;
                    int on = c > 1e-12f; /* false for NaN too: such pixels pass unchanged */
                    float inv_c = (float)HUE_STEPS / (on ? c : 1.0f);
                    /* the sextant of the hue: max == r, else max == g, else b (ties as such) */
                    int rmax = (mx == r), gmax = !rmax && (mx == g);
                    float num = rmax ? g - b : (gmax ? b - r : r - g);
                    float off = rmax ? 0.0f : (gmax ? (float)(2 * HUE_STEPS) : (float)(4 * HUE_STEPS));
                    float t = num * inv_c + off;
                    t = t < 0 ? t + (float)(6 * HUE_STEPS) : t;
                    /* in [0, 6 * HUE_STEPS] for finite input; anything else (inf, NaN) reads entry 0 */
                    t = (t >= 0.0f && t <= (float)(6 * HUE_STEPS)) ? t : 0.0f;
                    int32_t i = (int32_t)t;
                    float f = t - (float)i;
                    i = i >= nh ? i - nh : i;
                    int32_t j = i + 1 >= nh ? 0 : i + 1;
                    const float *e = hsl_lut + 4 * i, *e2 = hsl_lut + 4 * j;
                    float cs = e[0] + f * (e2[0] - e[0]);
                    float sn = e[1] + f * (e2[1] - e[1]);
                    float chroma = e[2] + f * (e2[2] - e[2]);
                    float gain = e[3] + f * (e2[3] - e[3]);
                    float Y = l0 * r + l1 * g + l2 * b;
                    float dr = r - Y, dg = g - Y, db = b - Y;
                    /* Rodrigues' rotation about the neutral axis (1, 1, 1)/sqrt(3) */
                    float dot = (dr + dg + db) * inv_sqrt3 * (1.0f - cs) * inv_sqrt3;
                    float xr = (db - dg) * inv_sqrt3, xg = (dr - db) * inv_sqrt3, xb = (dg - dr) * inv_sqrt3;
                    float rr = dr * cs + xr * sn + dot, rg = dg * cs + xg * sn + dot, rb = db * cs + xb * sn + dot;
                    float ly = l0 * rr + l1 * rg + l2 * rb;
                    float s = mx > 0 ? c / (mx > 0 ? mx : 1.0f) : 0.0f; /* no 0/0 in any SIMD lane */
                    float q = s / (float)CHROMA_FULL;
                    q = q > 1 ? 1.0f : q;
                    q = q * q * (3.0f - 2.0f * q);
                    float m = 1.0f + (gain - 1.0f) * q;
                    float nr = (Y + (rr - ly) * chroma) * m;
                    float ng = (Y + (rg - ly) * chroma) * m;
                    float nb = (Y + (rb - ly) * chroma) * m;
                    R[k] = on ? nr : r; G[k] = on ? ng : g; B[k] = on ? nb : b;
                }
            }
            mat3_block(m_out, R, G, B, n);
            if (use_encode) {
                uint16_t *d = d16 + p0;
                for (int k = 0; k < n; k++) {
                    const float v[3] = {R[k], G[k], B[k]};
                    for (int ch = 0; ch < 3; ch++) {
                        int32_t i; float f;
                        LOG_INDEX(v[ch], n_enc, i, f);
                        float e = encode_lut[i] + f * (encode_lut[i + 1] - encode_lut[i]);
                        /* e in [0, 1] (the table is clipped), so truncation is floor */
                        int32_t code = (int32_t)(e * out_max + 0.5f);
                        code = v[ch] >= 1.0f ? qmax : code;
                        code = v[ch] > 0.0f ? code : 0; /* also NaN */
                        d[3 * k + ch] = (uint16_t)code;
                    }
                }
            } else {
                float *d = df + p0;
                for (int k = 0; k < n; k++) {
                    d[3 * k] = R[k]; d[3 * k + 1] = G[k]; d[3 * k + 2] = B[k];
                }
            }
        }
    }
    return 0;
}

/* Which build of monet_render_rows this CPU runs: 2 the AVX2 clone, 1 the baseline clone
 * (no AVX2 here), 0 the one build there is (no CPU dispatch on this platform or compiler). */
int monet_kernel_simd(void) {
#if HAVE_CLONES
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 2 : 1;
#else
    return 0;
#endif
}

/* The version of this interface; the Python side refuses a library that answers otherwise. */
int monet_kernel_abi(void) { return 1; }

/* Rows [j0, j1) of an exact area (box-filter) downscale of a C-contiguous (H, W, 3) image to
 * (h, w, 3) float64 `out` (zeroed by the caller), the same sums in the same order as the numba
 * kernel in _area_numba.py. kind: 0 uint8, 1 uint16 (both through `lut` when it is given),
 * 2 float32, 3 float64. Per input row y: its output row ry0[y] with weight rw0[y] and, when
 * rw1[y] > 0, row ry0[y] + 1 with rw1[y]; likewise per column. starts[j + 1] - 1 is the last
 * input row whose first output row is j (a prefix count). Then every sum times `scale`. */
int monet_box_rows(const void *src, int kind, int64_t W, const float *lut,
                   const int64_t *ry0, const double *rw0, const double *rw1,
                   const int64_t *cx0, const double *cw0, const double *cw1,
                   const int64_t *starts, int64_t j0, int64_t j1, int64_t w, double scale, double *out) {
    const uint8_t *s8 = (const uint8_t *)src;
    const uint16_t *s16 = (const uint16_t *)src;
    const float *sf = (const float *)src;
    const double *sd = (const double *)src;
    for (int64_t j = j0; j < j1; j++) {
        double *o = out + j * w * 3;
        int64_t y_begin = starts[j] > 0 ? starts[j] - 1 : 0;
        for (int64_t y = y_begin; y < starts[j + 1]; y++) {
            double wy;
            if (ry0[y] == j) wy = rw0[y];
            else if (ry0[y] == j - 1) wy = rw1[y];
            else continue;
            if (wy == 0.0) continue;
            const int64_t row = y * W * 3;
            for (int64_t x = 0; x < W; x++) {
                const int64_t a = cx0[x] * 3;
                for (int c = 0; c < 3; c++) {
                    const int64_t p = row + x * 3 + c;
                    double v;
                    switch (kind) {
                    case 0: v = lut ? (double)lut[s8[p]] : (double)s8[p]; break;
                    case 1: v = lut ? (double)lut[s16[p]] : (double)s16[p]; break;
                    case 2: v = (double)sf[p]; break;
                    default: v = sd[p]; break;
                    }
                    o[a + c] += wy * cw0[x] * v;
                    if (cw1[x] > 0.0) o[a + 3 + c] += wy * cw1[x] * v;
                }
            }
        }
        for (int64_t k = 0; k < w * 3; k++) o[k] *= scale;
    }
    return 0;
}
