// PixInsight/Siril winsorised sigma clip of sorted rows, one row per CUDA thread.
//
// The maths, arithmetic and order of operations of the numba kernel
// (zemosaic_xp/backends/numba/wsc_pixinsight.py) and of the core's
// wsc_pixinsight_fit, so that ranges, iteration counts, centres and kept sums are the
// same bits. Compiled with --fmad=false: a fused multiply-add would round once where
// NumPy and numba round twice. zemosaic_xp/backends/cuda_wsc.py fills in the constants
// (WSC_*) and compiles it with NVRTC through CuPy; tests/backends/test_cuda_wsc.py also
// compiles it as C++ on the host (WSC_HOST) to check it against the core without a GPU.
//
// No scratch memory: the anchored sums of d = x - median (float64) are recomputed by
// their own chains of additions at the two indices a step needs, and the MAD reads the
// deviations from the row; a step is then a few passes over one row of N samples.

#ifndef WSC_HOST
#define WSC_DEVICE __device__ __forceinline__
typedef long long wsc_int;
#else
#define WSC_DEVICE static inline
#endif

WSC_DEVICE float wsc_midpoint(float a, float b) {
    // a + 0.5 (b - a) in float32, a itself when equal (two equal infinities too).
    if (a == b) return a;
    float half = 0.5f * (b - a);
    return a + half;
}

WSC_DEVICE float wsc_median(const float* row, wsc_int lo, wsc_int count) {
    if (count <= 0) return WSC_NAN_F;
    return wsc_midpoint(row[lo + (count - 1) / 2], row[lo + count / 2]);
}

WSC_DEVICE float wsc_dev(const float* row, wsc_int j, float centre) {
    float d = row[j] - centre;
    return d < 0.0f ? -d : d;
}

WSC_DEVICE float wsc_mad(const float* row, wsc_int lo, wsc_int count, float centre) {
    // The k-th smallest |x - centre| of a sorted range is the least, over the windows of
    // k + 1 neighbours, of the larger deviation at the window's two ends.
    if (count <= 0) return WSC_NAN_F;
    wsc_int k = (count - 1) / 2;
    float lower = WSC_INF_F;
    for (wsc_int w = 0; w < count - k; ++w) {
        float x = wsc_dev(row, lo + w, centre), y = wsc_dev(row, lo + w + k, centre);
        float v = x > y ? x : y;
        lower = v < lower ? v : lower;
    }
    float upper = lower;
    if (count % 2 == 0) {
        upper = WSC_INF_F;
        for (wsc_int w = 0; w < count - k - 1; ++w) {
            float x = wsc_dev(row, lo + w, centre), y = wsc_dev(row, lo + w + k + 1, centre);
            float v = x > y ? x : y;
            upper = v < upper ? v : upper;
        }
    }
    return wsc_midpoint(lower, upper);
}

// The anchored sums f1[j], f2[j] (core: sorted_rows.anchored_sums) at two indices i <= j,
// each by its own chain: up from mid for indices above it, down from mid - 1 below.
WSC_DEVICE void wsc_anchored(const float* row, wsc_int n, double c, wsc_int i, wsc_int j,
                             double* fi1, double* fi2, double* fj1, double* fj2) {
    wsc_int mid = n / 2;
    double up1 = 0.0, up2 = 0.0;
    *fi1 = 0.0; *fi2 = 0.0; *fj1 = 0.0; *fj2 = 0.0;
    wsc_int top = i > j ? i : j;
    for (wsc_int t = mid; t < top; ++t) {
        double d = (double)row[t] - c;
        up1 += d;
        up2 += d * d;
        if (t + 1 == i) { *fi1 = up1; *fi2 = up2; }
        if (t + 1 == j) { *fj1 = up1; *fj2 = up2; }
    }
    wsc_int bottom = i < j ? i : j;
    double dn1 = 0.0, dn2 = 0.0;
    for (wsc_int t = mid - 1; t >= bottom; --t) {
        double e = (double)row[t] - c;
        dn1 += e;
        dn2 += e * e;
        if (t == i) { *fi1 = 0.0 - dn1; *fi2 = 0.0 - dn2; }
        if (t == j) { *fj1 = 0.0 - dn1; *fj2 = 0.0 - dn2; }
    }
}

// Start of a pass on [lo, hi): m = median (given), sigma = 1.4826 MAD, or the std if MAD = 0.
WSC_DEVICE double wsc_start(const float* row, wsc_int n, double c, wsc_int lo, wsc_int hi,
                            float med) {
    wsc_int count = hi - lo;
    double mad = (double)wsc_mad(row, lo, count, med);
    double k = (double)(count > 0 ? count : 1);
    double l1, l2, h1, h2;
    wsc_anchored(row, n, c, lo, hi, &l1, &l2, &h1, &h2);
    double mc = (h1 - l1) / k;
    double var = (h2 - l2) / k - mc * mc;
    return mad > 0 ? WSC_MAD_TO_SIGMA * mad : sqrt(var < 0.0 ? 0.0 : var);
}

WSC_DEVICE wsc_int wsc_first_at_least(const float* row, double t, wsc_int lo, wsc_int hi) {
    wsc_int j = lo;
    while (j < hi && (double)row[j] < t) ++j;
    return j;
}

WSC_DEVICE wsc_int wsc_first_above(const float* row, double t, wsc_int lo, wsc_int hi) {
    wsc_int j = hi;
    while (j > lo && !((double)row[j - 1] <= t)) --j;
    return j;
}

WSC_DEVICE void wsc_row(const float* row, wsc_int n_cols, wsc_int n, double kappa_low,
                        double kappa_high, wsc_int max_iters, wsc_int min_survivors,
                        wsc_int* out_lo, wsc_int* out_hi, wsc_int* out_it, float* out_c,
                        double* out_sum) {
    float centre = wsc_median(row, 0, n);
    if (centre != centre) centre = 0.0f;
    *out_c = centre;
    double c = (double)centre;
    wsc_int cap = n >= 3 ? n - 1 : n;
    wsc_int need = min_survivors < cap ? min_survivors : cap;
    wsc_int lo = 0, hi = n, passes = 0;
    if (n > need && max_iters > 0) {
        double m = (double)centre;
        double sigma = wsc_start(row, n, c, 0, n, centre);
        if (!(sigma > 0)) {
            passes = 1;  // a pass with sigma = 0 rejects nothing
        } else {
            double inv_k = 1.0 / (double)n;
            wsc_int steps = 0;
            for (;;) {
                // One inner step (the core's _winsor_step, operation for operation).
                double low = m - WSC_HUBER_C * sigma;
                double high = m + WSC_HUBER_C * sigma;
                wsc_int nb = 0, nu = 0;
                for (wsc_int j = 0; j < n_cols; ++j) {
                    double x = (double)row[j];
                    nb += x < low;
                    nu += x <= high;
                }
                wsc_int a = nb > lo ? nb : lo;
                a = a < hi ? a : hi;
                wsc_int b = nu > a ? nu : a;
                b = b < hi ? b : hi;
                double a1, a2, b1, b2;
                wsc_anchored(row, n, c, a, b, &a1, &a2, &b1, &b2);
                double n_low = (double)(a - lo), n_high = (double)(hi - b);
                double lc = low - c, hc = high - c;
                double s1 = n_low * lc + (b1 - a1) + n_high * hc;
                double s2 = n_low * (lc * lc) + (b2 - a2) + n_high * (hc * hc);
                double mc = s1 * inv_k;
                double var = s2 * inv_k - mc * mc;
                double sigma_new = WSC_WINSOR_CORRECTION * sqrt(var < 0.0 ? 0.0 : var);
                double m_new = c + mc;
                double tol = WSC_TOLERANCE * sigma;
                double ds = sigma_new - sigma, dm = m_new - m;
                bool stop = ((ds < 0 ? -ds : ds) <= tol && (dm < 0 ? -dm : dm) <= tol) || !(sigma_new > 0);
                m = m_new;
                sigma = sigma_new;
                ++steps;
                if (!stop && steps != WSC_INNER_MAX_ITERS) continue;
                // End of a pass: reject around (m, sigma); another pass if the range changed.
                ++passes;
                wsc_int new_lo = wsc_first_at_least(row, m - kappa_low * sigma, lo, hi);
                wsc_int new_hi = wsc_first_above(row, m + kappa_high * sigma, new_lo, hi);
                if (!(sigma > 0 && (new_lo != lo || new_hi != hi) && new_hi - new_lo >= need)) break;
                lo = new_lo;
                hi = new_hi;
                if (passes >= max_iters) break;
                float med = wsc_median(row, lo, hi - lo);
                m = (double)med;
                sigma = wsc_start(row, n, c, lo, hi, med);
                if (!(sigma > 0)) {
                    ++passes;  // a pass with sigma = 0 rejects nothing: the row is done
                    break;
                }
                inv_k = 1.0 / (double)(hi - lo);
                steps = 0;
            }
        }
    }
    double l1, l2, h1, h2;
    wsc_anchored(row, n, c, lo, hi, &l1, &l2, &h1, &h2);
    *out_lo = lo;
    *out_hi = hi;
    *out_it = passes;
    *out_sum = h1 - l1;
}

#ifndef WSC_HOST
extern "C" __global__ void wsc_pixinsight_rows(const float* s, const wsc_int* n_valid, wsc_int rows,
                                               wsc_int n_cols, double kappa_low, double kappa_high,
                                               wsc_int max_iters, wsc_int min_survivors,
                                               wsc_int* out_lo, wsc_int* out_hi, wsc_int* out_it,
                                               float* out_c, double* out_sum) {
    wsc_int r = (wsc_int)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    wsc_row(s + r * n_cols, n_cols, n_valid[r], kappa_low, kappa_high, max_iters, min_survivors,
            out_lo + r, out_hi + r, out_it + r, out_c + r, out_sum + r);
}
#endif
