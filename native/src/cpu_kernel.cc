#include "cpu_kernel.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && !defined(__APPLE__)
#include <immintrin.h>
#define TUNELAB_PACKED_KERNEL 1
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace tunelab {
namespace {

constexpr int kRows = 6;       // output rows per panel: 6 x 4 accumulators of 16 floats fit in 32 registers
constexpr int kMaxSpatial = 512;  // the activations of one layer must stay in cache across panels

#if defined(TUNELAB_PACKED_KERNEL)
// y[r, 0:16*NV] = sum_k w[k][r] * x[k, 0:16*NV] for the panel's rows; `rows` <= kRows are stored.
template <int NV>
__attribute__((target("avx512f,fma"))) void panel(const float* w, const float* x, int K, int S, float* y, int rows) {
  __m512 acc[kRows][NV];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    __m512 xs[NV];
    for (int v = 0; v < NV; ++v) xs[v] = _mm512_loadu_ps(x + size_t(k) * S + 16 * v);
    const float* wk = w + size_t(k) * kRows;
    for (int r = 0; r < kRows; ++r) {
      const __m512 b = _mm512_set1_ps(wk[r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(b, xs[v], acc[r][v]);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(y + size_t(r) * S + 16 * v, acc[r][v]);
}

void layer(const float* packed, const float* x, int cin, int cout, int S, float* y, int block) {
  const float* w = packed + size_t(block) * kRows * cin;
  const int rows = std::min(kRows, cout - block * kRows);
  float* yb = y + size_t(block) * kRows * S;
  for (int c0 = 0; c0 < S; c0 += 64) {
    switch (std::min(4, (S - c0) / 16)) {
      case 4: panel<4>(w, x + c0, cin, S, yb + c0, rows); break;
      case 3: panel<3>(w, x + c0, cin, S, yb + c0, rows); break;
      case 2: panel<2>(w, x + c0, cin, S, yb + c0, rows); break;
      default: panel<1>(w, x + c0, cin, S, yb + c0, rows); break;
    }
  }
}
#endif

}  // namespace

bool PackedStack::supports(const std::vector<int>& channels, int spatial) {
#if defined(TUNELAB_PACKED_KERNEL)
  (void)channels;
  return spatial % 16 == 0 && spatial <= kMaxSpatial && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#else
  (void)channels;
  (void)spatial;
  return false;
#endif
}

PackedStack::PackedStack(const std::vector<int>& channels, int spatial, const std::vector<std::vector<float>>& weights)
    : channels_(channels), spatial_(spatial) {
  size_t widest = 0;
  for (int c : channels_) widest = std::max(widest, size_t(c) * size_t(spatial_));
  ping_.resize(widest);
  pong_.resize(widest);
  for (size_t l = 0; l < weights.size(); ++l) {
    const int cin = channels_[l], cout = channels_[l + 1];
    const int blocks = (cout + kRows - 1) / kRows;
    std::vector<float> p(size_t(blocks) * kRows * cin, 0.0f);  // rows past cout stay zero
    for (int o = 0; o < cout; ++o) {
      float* dst = p.data() + size_t(o / kRows) * kRows * cin + (o % kRows);
      const float* src = weights[l].data() + size_t(o) * cin;
      for (int k = 0; k < cin; ++k) dst[size_t(k) * kRows] = src[k];
    }
    packed_.push_back(std::move(p));
  }
  // Threads meet at a barrier after every layer: a thread needs a few MFLOP per layer to be worth
  // its wait, so tiny layers (the training kernels) run on one thread.
  double flops = 0;
  for (size_t l = 0; l + 1 < channels_.size(); ++l) flops += 2.0 * channels_[l] * channels_[l + 1] * spatial_;
  const double perLayer = weights.empty() ? 0 : flops / double(weights.size());
#if defined(_OPENMP)
  threads_ = std::max(1, std::min(omp_get_max_threads(), int(perLayer / 2e6)));
#else
  (void)perLayer;
#endif
}

void PackedStack::evaluate(const float* input, float* output) {
#if defined(TUNELAB_PACKED_KERNEL)
  const int layers = int(packed_.size());
  if (layers == 0) {
    std::memcpy(output, input, sizeof(float) * size_t(channels_[0]) * size_t(spatial_));
    return;
  }
  // Every output element is summed by one thread in a fixed order: results do not depend on the
  // number of threads, so a resumed training run reproduces the same numbers.
#pragma omp parallel num_threads(threads_)
  for (int l = 0; l < layers; ++l) {
    const float* x = l == 0 ? input : (l % 2 == 1 ? ping_.data() : pong_.data());
    float* y = l + 1 == layers ? output : (l % 2 == 0 ? ping_.data() : pong_.data());
    const int cin = channels_[l], cout = channels_[l + 1];
    const int blocks = (cout + kRows - 1) / kRows;
#pragma omp for schedule(static)
    for (int b = 0; b < blocks; ++b) layer(packed_[l].data(), x, cin, cout, spatial_, y, b);
  }
#else
  (void)input;
  (void)output;
#endif
}

}  // namespace tunelab
