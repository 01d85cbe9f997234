/*
 * Ternary linear layer on 2-bit packed weights and 8-bit per-token activations (BitNet b1.58 inference).
 *
 * y[m, n] = (sum_k t[n, k] * q[m, k]) * w_scale[n] / x_scale[m] + bias[n]
 * with q = round(x * x_scale) clamped to int8, x_scale = 127 / max|x[m, :]| (the BitLinear formula).
 *
 * Weights are stored as codes c = t + 1 in {0, 1, 2}, four to a byte, one row after another; a row has
 * k_pad = k rounded up to 64 weights. A row is cut greedily into chunks of 256, then 128, then 64
 * weights; in a chunk of C weights, byte j holds weights j + s * C / 4 at bits 2s (s = 0..3), so one
 * shift-and-mask gives C / 4 consecutive weights matching one contiguous load of activations.
 * The integer dot uses unsigned codes times signed activations (VNNI vpdpbusd or AVX2 maddubs), so
 * sum(t * q) = sum(c * q) - sum(q); every partial sum is exact in int32.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define TG_PATH 3
#elif defined(__AVX2__)
#define TG_PATH 2
#else
#define TG_PATH 1
#endif

#if TG_PATH >= 2
#include <immintrin.h>
#endif

/* Which dot-product path this build uses: 3 AVX-512 VNNI, 2 AVX2, 1 portable C. */
int tg_kernel_path(void) { return TG_PATH; }

/* Quantize one token to int8 (absmax), zero the padding; returns x_scale, writes sum(q). */
static float quantize_token(const float *x, int k, int k_pad, int8_t *q, int32_t *q_sum, float eps)
{
    /* max |x| on the bit patterns: for non-negative floats integer order is float order, and an
       integer max reduction vectorises without -ffast-math. */
    uint32_t max_bits = 0;
    for (int i = 0; i < k; ++i) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        bits &= 0x7fffffffu;
        max_bits = bits > max_bits ? bits : max_bits;
    }
    float amax;
    memcpy(&amax, &max_bits, sizeof amax);
    if (!(amax >= eps)) amax = eps;
    const float scale = 127.0f / amax;
    int32_t total = 0;
    for (int i = 0; i < k; ++i) {
        float v = nearbyintf(x[i] * scale);
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)v;
        total += (int32_t)q[i];
    }
    memset(q + k, 0, (size_t)(k_pad - k));
    *q_sum = total;
    return scale;
}

#if TG_PATH == 3
#define TG_ROWS 4
/* The four 2-bit fields of each byte of b as separate bytes (codes for four runs of weights). */
#define TG_FIELD512(b, s) _mm512_and_si512(_mm512_srli_epi16((b), 2 * (s)), _mm512_set1_epi8(3))
#define TG_FIELD256(b, s) _mm256_and_si256(_mm256_srli_epi16((b), 2 * (s)), _mm256_set1_epi8(3))
#define TG_FIELD128(b, s) _mm_and_si128(_mm_srli_epi16((b), 2 * (s)), _mm_set1_epi8(3))

/* Dot products of TG_ROWS consecutive rows with one token: activations are loaded once for all rows. */
static inline __m128i dot_rows(const uint8_t *w, size_t row_bytes, const int8_t *q, int k_pad)
{
    __m512i acc[TG_ROWS];
    for (int r = 0; r < TG_ROWS; ++r) acc[r] = _mm512_setzero_si512();
    int k = 0;
    for (; k + 256 <= k_pad; k += 256, w += 64) {
        for (int s = 0; s < 4; ++s) {
            const __m512i a = _mm512_loadu_si512((const void *)(q + k + 64 * s));
            for (int r = 0; r < TG_ROWS; ++r) {
                const __m512i b = _mm512_loadu_si512((const void *)(w + r * row_bytes));
                acc[r] = _mm512_dpbusd_epi32(acc[r], TG_FIELD512(b, s), a);
            }
        }
    }
    __m256i part[TG_ROWS];
    for (int r = 0; r < TG_ROWS; ++r)
        part[r] = _mm256_add_epi32(_mm512_castsi512_si256(acc[r]), _mm512_extracti64x4_epi64(acc[r], 1));
    if (k + 128 <= k_pad) {
        for (int s = 0; s < 4; ++s) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(q + k + 32 * s));
            for (int r = 0; r < TG_ROWS; ++r) {
                const __m256i b = _mm256_loadu_si256((const __m256i *)(w + r * row_bytes));
                part[r] = _mm256_dpbusd_epi32(part[r], TG_FIELD256(b, s), a);
            }
        }
        k += 128;
        w += 32;
    }
    __m128i half[TG_ROWS];
    for (int r = 0; r < TG_ROWS; ++r)
        half[r] = _mm_add_epi32(_mm256_castsi256_si128(part[r]), _mm256_extracti128_si256(part[r], 1));
    if (k + 64 <= k_pad) {
        for (int s = 0; s < 4; ++s) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(q + k + 16 * s));
            for (int r = 0; r < TG_ROWS; ++r) {
                const __m128i b = _mm_loadu_si128((const __m128i *)(w + r * row_bytes));
                half[r] = _mm_dpbusd_epi32(half[r], TG_FIELD128(b, s), a);
            }
        }
    }
    return _mm_hadd_epi32(_mm_hadd_epi32(half[0], half[1]), _mm_hadd_epi32(half[2], half[3]));
}

static inline int32_t dot_row(const uint8_t *w, const int8_t *q, int k_pad)
{
    __m512i acc = _mm512_setzero_si512();
    int k = 0;
    for (; k + 256 <= k_pad; k += 256, w += 64) {
        const __m512i b = _mm512_loadu_si512((const void *)w);
        for (int s = 0; s < 4; ++s)
            acc = _mm512_dpbusd_epi32(acc, TG_FIELD512(b, s), _mm512_loadu_si512((const void *)(q + k + 64 * s)));
    }
    int32_t total = _mm512_reduce_add_epi32(acc);
    if (k + 128 <= k_pad) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)w);
        __m256i s256 = _mm256_setzero_si256();
        for (int s = 0; s < 4; ++s)
            s256 = _mm256_dpbusd_epi32(s256, TG_FIELD256(b, s), _mm256_loadu_si256((const __m256i *)(q + k + 32 * s)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s256), _mm256_extracti128_si256(s256, 1));
        total += _mm_cvtsi128_si32(_mm_hadd_epi32(_mm_hadd_epi32(h, h), h));
        k += 128;
        w += 32;
    }
    if (k + 64 <= k_pad) {
        const __m128i b = _mm_loadu_si128((const __m128i *)w);
        __m128i h = _mm_setzero_si128();
        for (int s = 0; s < 4; ++s)
            h = _mm_dpbusd_epi32(h, TG_FIELD128(b, s), _mm_loadu_si128((const __m128i *)(q + k + 16 * s)));
        total += _mm_cvtsi128_si32(_mm_hadd_epi32(_mm_hadd_epi32(h, h), h));
    }
    return total;
}
#elif TG_PATH == 2
/* Codes times activations, pairs summed to int16 (at most 2 * 2 * 128, no saturation), then to int32. */
static inline __m256i dot32(__m256i acc, __m256i codes, const int8_t *q)
{
    const __m256i pairs = _mm256_maddubs_epi16(codes, _mm256_loadu_si256((const __m256i *)q));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

static inline __m128i dot16(__m128i acc, __m128i codes, const int8_t *q)
{
    const __m128i pairs = _mm_maddubs_epi16(codes, _mm_loadu_si128((const __m128i *)q));
    return _mm_add_epi32(acc, _mm_madd_epi16(pairs, _mm_set1_epi16(1)));
}

static inline int32_t dot_row(const uint8_t *w, const int8_t *q, int k_pad)
{
    const __m256i m = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
    int k = 0;
    for (; k + 256 <= k_pad; k += 256, w += 64) {
        for (int half = 0; half < 2; ++half) {
            const __m256i b = _mm256_loadu_si256((const __m256i *)(w + 32 * half));
            const int8_t *qh = q + k + 32 * half;
            acc = dot32(acc, _mm256_and_si256(b, m), qh);
            acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 2), m), qh + 64);
            acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 4), m), qh + 128);
            acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 6), m), qh + 192);
        }
    }
    if (k + 128 <= k_pad) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)w);
        acc = dot32(acc, _mm256_and_si256(b, m), q + k);
        acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 2), m), q + k + 32);
        acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 4), m), q + k + 64);
        acc = dot32(acc, _mm256_and_si256(_mm256_srli_epi16(b, 6), m), q + k + 96);
        k += 128;
        w += 32;
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    if (k + 64 <= k_pad) {
        const __m128i m16 = _mm_set1_epi8(3);
        const __m128i b = _mm_loadu_si128((const __m128i *)w);
        s = dot16(s, _mm_and_si128(b, m16), q + k);
        s = dot16(s, _mm_and_si128(_mm_srli_epi16(b, 2), m16), q + k + 16);
        s = dot16(s, _mm_and_si128(_mm_srli_epi16(b, 4), m16), q + k + 32);
        s = dot16(s, _mm_and_si128(_mm_srli_epi16(b, 6), m16), q + k + 48);
    }
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
#else
static inline int32_t dot_chunk(const uint8_t *w, const int8_t *q, int chunk)
{
    const int quarter = chunk / 4;
    int32_t total = 0;
    for (int s = 0; s < 4; ++s)
        for (int j = 0; j < quarter; ++j)
            total += (int32_t)((w[j] >> (2 * s)) & 3) * (int32_t)q[s * quarter + j];
    return total;
}

static inline int32_t dot_row(const uint8_t *w, const int8_t *q, int k_pad)
{
    int32_t total = 0;
    int k = 0;
    for (int chunk = 256; chunk >= 64; chunk /= 2) {
        for (; k + chunk <= k_pad; k += chunk, w += chunk / 4) total += dot_chunk(w, q + k, chunk);
    }
    return total;
}
#endif

/*
 * x: (m, k) float32; codes: (n, k_pad / 4) uint8; w_scale: (n,) float32; bias: (n,) or NULL; y: (m, n).
 * Returns 0, or -1 when k_pad is not the padded size of k or scratch memory is short.
 */
int tg_ternary_linear(const float *x, int m, int k, const uint8_t *codes, int n, int k_pad, const float *w_scale,
                      const float *bias, float *y, float eps)
{
    if (k_pad % 64 != 0 || k_pad < k || k_pad - k >= 64) return -1;
    if (m <= 0 || n <= 0) return 0;
    int8_t stack_q[8192];
    int8_t *q = (size_t)m * k_pad <= sizeof(stack_q) ? stack_q : (int8_t *)malloc((size_t)m * k_pad);
    float *inv_scale = (float *)malloc(sizeof(float) * (size_t)m);
    int32_t *q_sum = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    if (!q || !inv_scale || !q_sum) {
        if (q != stack_q) free(q);
        free(inv_scale);
        free(q_sum);
        return -1;
    }
    for (int t = 0; t < m; ++t)
        inv_scale[t] = 1.0f / quantize_token(x + (size_t)t * k, k, k_pad, q + (size_t)t * k_pad, q_sum + t, eps);
    const size_t row_bytes = (size_t)k_pad / 4;
    int r = 0;
#if TG_PATH == 3
    for (; r + TG_ROWS <= n; r += TG_ROWS) {
        const __m128 scale = _mm_loadu_ps(w_scale + r);
        const __m128 b = bias ? _mm_loadu_ps(bias + r) : _mm_setzero_ps();
        for (int t = 0; t < m; ++t) {
            const __m128i dots = _mm_sub_epi32(dot_rows(codes + r * row_bytes, row_bytes, q + (size_t)t * k_pad, k_pad),
                                               _mm_set1_epi32(q_sum[t]));
            const __m128 y4 = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(dots), _mm_mul_ps(scale, _mm_set1_ps(inv_scale[t]))), b);
            _mm_storeu_ps(y + (size_t)t * n + r, y4);
        }
    }
#endif
    for (; r < n; ++r) {
        const uint8_t *w = codes + (size_t)r * row_bytes;
        const float b = bias ? bias[r] : 0.0f;
        for (int t = 0; t < m; ++t) {
            const int32_t dot = dot_row(w, q + (size_t)t * k_pad, k_pad) - q_sum[t];
            y[(size_t)t * n + r] = (float)dot * (w_scale[r] * inv_scale[t]) + b;
        }
    }
    if (q != stack_q) free(q);
    free(inv_scale);
    free(q_sum);
    return 0;
}

/* A layer's fixed arguments, bound once from Python so a call converts four arguments instead of ten. */
typedef struct {
    const uint8_t *codes;
    const float *w_scale;
    const float *bias;
    int32_t k;
    int32_t n;
    int32_t k_pad;
    float eps;
} tg_layer;

int tg_ternary_linear_layer(const tg_layer *layer, const float *x, int m, float *y)
{
    return tg_ternary_linear(x, m, layer->k, layer->codes, layer->n, layer->k_pad, layer->w_scale, layer->bias, y,
                             layer->eps);
}
