/* Max and average pooling over channels-last maps, on the CPU, forward and backward.
 *
 * x is N x H x W x C, out and its gradient g are N x OH x OW x C (channels-last NCHW tensors,
 * contiguous); a window is k x k with stride s and padding p, and only its taps inside the map
 * count. torch's channels-last kernels work pixel by pixel and are slow for the few channels of
 * a DARTS supernet; these take a block of channels (a 32-byte vector) per window instead. C must
 * be a multiple of the vector width (8 floats, 4 doubles). OpenMP threads (torch's own pool: the
 * process has one libgomp) take whole images, so no two threads write the same element.
 *
 * max: the first maximum in scan order (rows, then columns), or the last NaN, as torch's kernel
 * picks it; its backward gives each window's gradient to that tap.
 * average: the sum over the taps inside the map divided by their number (count_include_pad
 * false) or by k * k (true); its backward spreads each window's gradient likewise.
 */
#include <stdint.h>
#include <string.h>

/* The taps of window (oh, ow) inside the map: rows h0..h1, columns w0..w1 (exclusive). */
static inline void window(long oh, long ow, long H, long W, long k, long s, long p,
                          long *h0, long *h1, long *w0, long *w1) {
    *h0 = oh * s - p;
    *w0 = ow * s - p;
    *h1 = *h0 + k > H ? H : *h0 + k;
    *w1 = *w0 + k > W ? W : *w0 + k;
    if (*h0 < 0) *h0 = 0;
    if (*w0 < 0) *w0 = 0;
}

/* The body once per window (oh, ow) of every image n, with its taps h0..h1, w0..w1; OpenMP
   threads take whole images. ZEROED (an N x H x W x C map, or a null pointer) is zeroed image by
   image first, while the image is about to be used. */
#define FOR_EACH_WINDOW(ZEROED, ...)                                                          \
    _Pragma("omp parallel for num_threads(threads)")                                           \
    for (long n = 0; n < N; ++n) {                                                             \
        if (ZEROED) memset((ZEROED) + n * H * W * C, 0, sizeof(*(ZEROED)) * H * W * C);        \
        for (long oh = 0; oh < OH; ++oh)                                                       \
        for (long ow = 0; ow < OW; ++ow) {                                                     \
            long h0, h1, w0, w1;                                                               \
            window(oh, ow, H, W, k, s, p, &h0, &h1, &w0, &w1);                                 \
            __VA_ARGS__                                                                        \
        }                                                                                      \
    }

#define DEFINE(T, LANES, LANE_MASK)                                                            \
typedef T T##_vec __attribute__((vector_size(32)));                                           \
typedef LANE_MASK T##_mask __attribute__((vector_size(32)));  /* what comparisons give */      \
                                                                                               \
static inline T##_vec T##_load(const T *p) { T##_vec v; memcpy(&v, p, 32); return v; }        \
static inline void T##_store(T *p, T##_vec v) { memcpy(p, &v, 32); }                           \
static inline T##_vec T##_select(T##_mask m, T##_vec a, T##_vec b) {                           \
    return (T##_vec)((m & (T##_mask)a) | (~m & (T##_mask)b));                                  \
}                                                                                              \
                                                                                               \
void max_pool_forward_##T(const T *x, T *out, long N, long C, long H, long W, long OH,         \
                          long OW, long k, long s, long p, long threads) {                     \
    FOR_EACH_WINDOW((T *)0,                                                                    \
        for (long cb = 0; cb < C; cb += LANES) {                                               \
            T##_vec best = {0};                                                                \
            best -= (T)__builtin_inf();                                                        \
            for (long ih = h0; ih < h1; ++ih)                                                  \
            for (long iw = w0; iw < w1; ++iw) {                                                \
                const T##_vec v = T##_load(x + ((n * H + ih) * W + iw) * C + cb);              \
                best = T##_select((v > best) | (v != v), v, best);  /* NaN: the last one */    \
            }                                                                                  \
            T##_store(out + ((n * OH + oh) * OW + ow) * C + cb, best);                         \
        })                                                                                     \
}                                                                                              \
                                                                                               \
/* Adds grad to gx in the lanes of `lanes` at the first tap (order +1: in scan order; -1: in  \
   reverse) equal to best, or a NaN where best is one. */                                      \
static inline void T##_give(const T *x, T *gx, T##_vec best, T##_vec grad, T##_mask lanes,     \
                            long row, long W, long C, long h0, long h1, long w0, long w1,      \
                            long cb, int order) {                                              \
    const T##_vec none = {0};                                                                  \
    T##_mask taken = ~lanes;                                                                   \
    const long width = w1 - w0, taps = (h1 - h0) * width;                                      \
    for (long t = 0; t < taps; ++t) {                                                          \
        const long tap = order > 0 ? t : taps - 1 - t;                                         \
        const long at = ((row + h0 + tap / width) * W + w0 + tap % width) * C + cb;            \
        const T##_vec v = T##_load(x + at);                                                    \
        const T##_mask hit = ((v == best) | ((v != v) & (best != best))) & ~taken;             \
        T##_store(gx + at, T##_load(gx + at) + T##_select(hit, grad, none));                   \
        taken |= hit;                                                                          \
    }                                                                                          \
}                                                                                              \
                                                                                               \
void max_pool_backward_##T(const T *x, const T *out, const T *g, T *gx, long N, long C,        \
                           long H, long W, long OH, long OW, long k, long s, long p,           \
                           long threads) {                                                     \
    FOR_EACH_WINDOW(gx,                                                                        \
        for (long cb = 0; cb < C; cb += LANES) {                                               \
            const long at = ((n * OH + oh) * OW + ow) * C + cb;                                \
            const T##_vec best = T##_load(out + at), grad = T##_load(g + at);                  \
            const T##_mask nan = best != best;                                                 \
            T##_give(x, gx, best, grad, ~nan, n * H, W, C, h0, h1, w0, w1, cb, 1);             \
            int any_nan = 0;                                                                   \
            for (int l = 0; l < LANES; ++l) any_nan |= nan[l] != 0;                            \
            if (any_nan)  /* torch gives a NaN window's gradient to its last NaN */            \
                T##_give(x, gx, best, grad, nan, n * H, W, C, h0, h1, w0, w1, cb, -1);         \
        })                                                                                     \
}                                                                                              \
                                                                                               \
void avg_pool_forward_##T(const T *x, T *out, long N, long C, long H, long W, long OH,         \
                          long OW, long k, long s, long p, int include_pad, long threads) {    \
    FOR_EACH_WINDOW((T *)0,                                                                    \
        const T scale = (T)1 / (T)(include_pad ? k * k : (h1 - h0) * (w1 - w0));               \
        for (long cb = 0; cb < C; cb += LANES) {                                               \
            T##_vec sum = {0};                                                                 \
            for (long ih = h0; ih < h1; ++ih)                                                  \
            for (long iw = w0; iw < w1; ++iw)                                                  \
                sum += T##_load(x + ((n * H + ih) * W + iw) * C + cb);                         \
            T##_store(out + ((n * OH + oh) * OW + ow) * C + cb, sum * scale);                  \
        })                                                                                     \
}                                                                                              \
                                                                                               \
void avg_pool_backward_##T(const T *g, T *gx, long N, long C, long H, long W, long OH,         \
                           long OW, long k, long s, long p, int include_pad, long threads) {   \
    FOR_EACH_WINDOW(gx,                                                                        \
        const T scale = (T)1 / (T)(include_pad ? k * k : (h1 - h0) * (w1 - w0));               \
        for (long cb = 0; cb < C; cb += LANES) {                                               \
            const T##_vec share = T##_load(g + ((n * OH + oh) * OW + ow) * C + cb) * scale;    \
            for (long ih = h0; ih < h1; ++ih)                                                  \
            for (long iw = w0; iw < w1; ++iw) {                                                \
                T *target = gx + ((n * H + ih) * W + iw) * C + cb;                             \
                T##_store(target, T##_load(target) + share);                                   \
            }                                                                                  \
        })                                                                                     \
}

DEFINE(float, 8, int32_t)
DEFINE(double, 4, int64_t)
