/* The fused per-pixel render kernel in C: the same math, tables and rounding as the numba
 * kernel in _kernel.py (see there), for rows [y0, y1) of a C-contiguous (H, W, 3) image.
 * monet compiles this file once with the system C compiler and caches the shared library
 * (monet_cli/_ckernel.py); the Python side splits the rows between threads (ctypes releases
 * the GIL for the call). No state, no allocation, no libc beyond floorf.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* MANT_BITS, LOG_MIN, HUE_STEPS and CHROMA_FULL come from monet_cli/_tables.py as -D flags
 * (_ckernel.FLAGS), so the two kernels cannot disagree on the table layout. */
#define SHIFT (23 - MANT_BITS)
#define BASE ((127 + LOG_MIN) << MANT_BITS)

static inline void log_index(float v, int64_t n, int64_t *i, float *f) {
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int64_t t = (int64_t)(bits >> SHIFT) - BASE;
    if (t < 0) { *i = 0; *f = 0.0f; return; }
    if (t >= n) { *i = n - 1; *f = 1.0f; return; }
    *i = t;
    *f = (float)(bits & ((1 << SHIFT) - 1)) * (1.0f / (float)(1 << SHIFT));
}

static inline float encode(float v, const float *lut, int64_t n, float out_max) {
    if (!(v > 0.0f)) return 0.0f; /* also NaN */
    if (v >= 1.0f) return out_max;
    int64_t i; float f;
    log_index(v, n, &i, &f);
    float e = lut[i] + f * (lut[i + 1] - lut[i]);
    return floorf(e * out_max + 0.5f);
}

static inline float maxf3(float a, float b, float c) { float m = a > b ? a : b; return m > c ? m : c; }
static inline float minf3(float a, float b, float c) { float m = a < b ? a : b; return m < c ? m : c; }

/* src: uint16 (decode_lut given, n_decode > 0) or float32 linear; dst: uint16 (encode_lut
 * given, n_encode > 0) or float32. Matrices row-major 3x3 float32. hsl_lut (n_hsl, 4). */
int monet_render_rows(const void *src, void *dst, int64_t y0, int64_t y1, int64_t W,
                      const float *decode_lut, int64_t n_decode, const float *m_in, const float *luma,
                      int tone_on, const float *tone_ratio, const float *tone_pedestal, int64_t n_tone_points,
                      int color_on, const float *m_col, int hsl_on, const float *hsl_lut, int64_t n_hsl,
                      const float *m_out, const float *encode_lut, int64_t n_encode_points, float out_max) {
    const int use_decode = n_decode > 0, use_encode = n_encode_points > 0;
    const int64_t n_tone = n_tone_points - 1, n_enc = n_encode_points - 1;
    const float inv_sqrt3 = (float)(1.0 / sqrt(3.0));
    const float l0 = luma[0], l1 = luma[1], l2 = luma[2];
    const uint16_t *s16 = (const uint16_t *)src;
    const float *sf = (const float *)src;
    uint16_t *d16 = (uint16_t *)dst;
    float *df = (float *)dst;
    for (int64_t y = y0; y < y1; y++) {
        for (int64_t x = 0; x < W; x++) {
            const int64_t p = (y * W + x) * 3;
            float r0, g0, b0;
            if (use_decode) {
                r0 = decode_lut[s16[p]]; g0 = decode_lut[s16[p + 1]]; b0 = decode_lut[s16[p + 2]];
            } else {
                r0 = sf[p]; g0 = sf[p + 1]; b0 = sf[p + 2];
            }
            float r = m_in[0] * r0 + m_in[1] * g0 + m_in[2] * b0;
            float g = m_in[3] * r0 + m_in[4] * g0 + m_in[5] * b0;
            float b = m_in[6] * r0 + m_in[7] * g0 + m_in[8] * b0;

            if (tone_on) {
                float Y = l0 * r + l1 * g + l2 * b;
                int64_t i; float f;
                log_index(Y, n_tone, &i, &f);
                float ratio = tone_ratio[i] + f * (tone_ratio[i + 1] - tone_ratio[i]);
                float ped = tone_pedestal[i] + f * (tone_pedestal[i + 1] - tone_pedestal[i]);
                r = r * ratio + ped; g = g * ratio + ped; b = b * ratio + ped;
            }
            if (color_on) {
                float r1 = m_col[0] * r + m_col[1] * g + m_col[2] * b;
                float g1 = m_col[3] * r + m_col[4] * g + m_col[5] * b;
                float b1 = m_col[6] * r + m_col[7] * g + m_col[8] * b;
                r = r1; g = g1; b = b1;
            }
            if (hsl_on) {
                float mx = maxf3(r, g, b), mn = minf3(r, g, b), c = mx - mn;
                if (c > 1e-12f) {
                    float inv_c = (float)HUE_STEPS / c, t;
                    if (mx == r) {
                        t = (g - b) * inv_c;
                        if (t < 0) t += (float)(6 * HUE_STEPS);
                    } else if (mx == g) {
                        t = (b - r) * inv_c + (float)(2 * HUE_STEPS);
                    } else {
                        t = (r - g) * inv_c + (float)(4 * HUE_STEPS);
                    }
                    int64_t i = (int64_t)t;
                    float f = t - (float)i;
                    if (i >= n_hsl) i -= n_hsl;
                    int64_t j = i + 1;
                    if (j >= n_hsl) j = 0;
                    const float *a = hsl_lut + 4 * i, *bb = hsl_lut + 4 * j;
                    float cs = a[0] + f * (bb[0] - a[0]);
                    float sn = a[1] + f * (bb[1] - a[1]);
                    float chroma = a[2] + f * (bb[2] - a[2]);
                    float gain = a[3] + f * (bb[3] - a[3]);
                    float Y = l0 * r + l1 * g + l2 * b;
                    float dr = r - Y, dg = g - Y, db = b - Y;
                    /* Rodrigues' rotation about the neutral axis (1, 1, 1)/sqrt(3) */
                    float dot = (dr + dg + db) * inv_sqrt3 * (1.0f - cs) * inv_sqrt3;
                    float xr = (db - dg) * inv_sqrt3, xg = (dr - db) * inv_sqrt3, xb = (dg - dr) * inv_sqrt3;
                    float rr = dr * cs + xr * sn + dot, rg = dg * cs + xg * sn + dot, rb = db * cs + xb * sn + dot;
                    float ly = l0 * rr + l1 * rg + l2 * rb;
                    float s = mx > 0 ? c / mx : 0.0f;
                    float k = s / (float)CHROMA_FULL;
                    if (k > 1) k = 1.0f;
                    k = k * k * (3.0f - 2.0f * k);
                    float m = 1.0f + (gain - 1.0f) * k;
                    r = (Y + (rr - ly) * chroma) * m;
                    g = (Y + (rg - ly) * chroma) * m;
                    b = (Y + (rb - ly) * chroma) * m;
                }
            }
            float o0 = m_out[0] * r + m_out[1] * g + m_out[2] * b;
            float o1 = m_out[3] * r + m_out[4] * g + m_out[5] * b;
            float o2 = m_out[6] * r + m_out[7] * g + m_out[8] * b;
            if (use_encode) {
                d16[p] = (uint16_t)encode(o0, encode_lut, n_enc, out_max);
                d16[p + 1] = (uint16_t)encode(o1, encode_lut, n_enc, out_max);
                d16[p + 2] = (uint16_t)encode(o2, encode_lut, n_enc, out_max);
            } else {
                df[p] = o0; df[p + 1] = o1; df[p + 2] = o2;
            }
        }
    }
    return 0;
}

/* The version of this interface; the Python side refuses a library that answers otherwise. */
int monet_kernel_abi(void) { return 1; }
