/* The weight gradient of a depthwise convolution over channels-last maps, on the CPU.
 *
 *   grad_w[kh][kw][c] = sum over n, oh, ow of g[n][oh][ow][c] * x[n][ih][iw][c],
 *   ih = oh * stride - pad + kh * dil,  iw = ow * stride - pad + kw * dil  (taps inside the map)
 *
 * x is N x H x W x C and g is N x OH x OW x C (channels-last NCHW tensors, contiguous); the
 * result is K x K x C. Each output row (n, oh) and kernel row kh keeps the K taps of a block of
 * channels in vector registers while it walks the row's columns, so g is loaded once per K
 * taps. C must be a multiple of the vector width (8 floats or 4 doubles, 32 bytes). Partial
 * sums run in the input's precision along one row and are added in double precision.
 * `threads` OpenMP threads (torch's own pool: the process has one libgomp) take contiguous ranges
 * of the batch; each adds into its own K x K x C slice of `out` (threads x K x K x C doubles,
 * zeroed by the caller), which the caller sums.
 */
#include <string.h>

typedef struct {
    const void *x, *g;
    double *out;
    long n0, n1, C, H, W, OH, OW, stride, pad, dil;
} Work;

#define KERNEL(NAME, T, LANES, KS)                                                            \
typedef T NAME##_vec __attribute__((vector_size(32)));                                      \
static void NAME(const Work *w) {                                                             \
    const T *x = (const T *)w->x, *g = (const T *)w->g;                                       \
    const long C = w->C, H = w->H, W = w->W, OH = w->OH, OW = w->OW;                          \
    const long stride = w->stride, pad = w->pad, dil = w->dil;                                \
    long lo = 0, hi = OW; /* columns whose every tap lies inside the map */                   \
    while (lo < OW && lo * stride - pad < 0) ++lo;                                            \
    while (hi > lo && (hi - 1) * stride - pad + (KS - 1) * dil >= W) --hi;                    \
    for (long n = w->n0; n < w->n1; ++n)                                                      \
    for (long oh = 0; oh < OH; ++oh)                                                          \
    for (long kh = 0; kh < KS; ++kh) {                                                        \
        const long ih = oh * stride - pad + kh * dil;                                         \
        if (ih < 0 || ih >= H) continue;                                                      \
        const T *g_row = g + (n * OH + oh) * OW * C;                                          \
        const T *x_row = x + (n * H + ih) * W * C;                                            \
        for (long cb = 0; cb < C; cb += LANES) {                                              \
            NAME##_vec acc[KS], gv, xv;                                                       \
            for (int k = 0; k < KS; ++k) acc[k] = (NAME##_vec){0};                            \
            for (long ow = lo; ow < hi; ++ow) {                                               \
                memcpy(&gv, g_row + ow * C + cb, 32);                                         \
                const T *x_tap = x_row + (ow * stride - pad) * C + cb;                        \
                for (int k = 0; k < KS; ++k) {                                                \
                    memcpy(&xv, x_tap + k * dil * C, 32);                                     \
                    acc[k] += gv * xv;                                                        \
                }                                                                             \
            }                                                                                 \
            const long border[2][2] = {{0, lo}, {hi, OW}}; /* the rest, tap by tap */         \
            for (int r = 0; r < 2; ++r)                                                       \
            for (long ow = border[r][0]; ow < border[r][1]; ++ow) {                           \
                memcpy(&gv, g_row + ow * C + cb, 32);                                         \
                for (int k = 0; k < KS; ++k) {                                                \
                    const long iw = ow * stride - pad + k * dil;                              \
                    if (iw < 0 || iw >= W) continue;                                          \
                    memcpy(&xv, x_row + iw * C + cb, 32);                                     \
                    acc[k] += gv * xv;                                                        \
                }                                                                             \
            }                                                                                 \
            for (int k = 0; k < KS; ++k) {                                                    \
                double *o = w->out + (kh * KS + k) * C + cb;                                  \
                for (int l = 0; l < LANES; ++l) o[l] += acc[k][l];                            \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

KERNEL(f32_k3, float, 8, 3)
KERNEL(f32_k5, float, 8, 5)
KERNEL(f32_k7, float, 8, 7)
KERNEL(f64_k3, double, 4, 3)
KERNEL(f64_k5, double, 4, 5)
KERNEL(f64_k7, double, 4, 7)

typedef void (*Kernel)(const Work *);

/* Returns 0, or -1 when K has no kernel. */
int depthwise_weight_grad(const void *x, const void *g, double *out, int double_precision,
                          long K, long N, long C, long H, long W, long OH, long OW,
                          long stride, long pad, long dil, long threads) {
    static const Kernel kernels[2][3] = {{f32_k3, f32_k5, f32_k7}, {f64_k3, f64_k5, f64_k7}};
    if (K != 3 && K != 5 && K != 7) return -1;
    const Kernel kernel = kernels[double_precision != 0][(K - 3) / 2];
    if (threads > N) threads = N;
    if (threads < 1) threads = 1;
    #pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (long t = 0; t < threads; ++t) {
        const Work work = {x, g, out + t * K * K * C, N * t / threads, N * (t + 1) / threads,
                           C, H, W, OH, OW, stride, pad, dil};
        kernel(&work);
    }
    return 0;
}
