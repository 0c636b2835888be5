// Host kernels for the fast %tune path, called from Python through ctypes (C ABI at the end).
//
// Fused linear cross-entropy: for rows x_r (the final-normed hidden states at the positions the
// loss counts) and a frozen vocabulary head W (V x D), computes
//   ce_r = logsumexp(W x_r) - (W x_r)[t_r]        and        G_r = softmax(W x_r) @ W - W[t_r]
// without materialising the N x V logits: the vocabulary is walked in chunks small enough to
// stay in L2, each chunk's logits are exponentiated against a running maximum (online softmax,
// as in flash-attention) and immediately multiplied back into an N x D accumulator, so the time
// goes into FMAs rather than into writing and re-reading N x V floats.
//
// The vocabulary is cut into shares that threads take in turn; each share keeps its own running
// max, sum and accumulator, merged at the end in a fixed order. No CPU-specific flag is passed to
// the compiler: the AVX-512 and AVX2 paths carry target attributes and the best one the CPU has
// is picked at run time; the portable path is plain loops the compiler vectorises for the build's
// baseline (SSE2, NEON). Measured on a Zen 4 (N = 28 rows of SmolLM2's head, two threads): AVX-512
// 19 ms, AVX2 26 ms, portable ~200 ms, MLX's two OpenBLAS products ~40 ms.
//
// Frozen linear layers: y = x @ W^T forward and dx = dy @ W backward for a weight that never
// changes during a run. BLAS re-packs W at every call; here W^T is packed once (the head's panel
// layout) and both products walk W once per call, W's blocks outer and the few rows of x inner.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TUNELAB_X86_PATHS 1
#define TUNELAB_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#define TUNELAB_AVX2 __attribute__((target("avx2,fma")))
// On the loops over a register tile's rows and columns: without it GCC may keep the tile's
// accumulators in memory (a store per FMA; the AVX2 head ran 40 ms instead of 33).
#define TUNELAB_UNROLL _Pragma("GCC unroll 16")
#endif

namespace {

constexpr int kAbiVersion = 3;
constexpr int kPanel = 16;  // vocabulary rows per packed panel: one AVX-512 register of logits
// Vocabulary rows per chunk. The chunk's rows of W (192 x 576 floats = 432 KB for SmolLM2) must
// still be in L2 when the gradient reads them after the logits; measured on a Zen 4 (1 MB L2),
// N = 32: 64 rows 21.7 ms, 128 rows 20.8, 192 rows 19.1, 256 rows 19-24 (noisier).
constexpr int kDefaultChunk = 192;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// 64-byte aligned scratch, freed on scope exit.
class Scratch {
 public:
  explicit Scratch(size_t floats) {
    const size_t bytes = std::max<size_t>(64, (floats * sizeof(float) + 63) / 64 * 64);
    data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
  }
  ~Scratch() { std::free(data_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return data_; }

 private:
  float* data_ = nullptr;
};

struct Problem {
  const float* x;          // N x D
  const int32_t* targets;  // N
  int rows;                // N
  int dim;                 // D
  const float* weight;     // V x D, row-major
  const float* packed;     // W^T in panels: [ceil(V/16)][D][16], zero past V
  int vocab;               // V
  float* ce;               // N
  float* grad;             // N x D, or null when only the loss is wanted
  int chunk;               // vocabulary rows per chunk (a multiple of 16)
};

// Cephes' single-precision exp polynomial: e^r for |r| <= ln2/2, relative error ~1e-7.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpC[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// Each kernel set computes, for vocabulary rows [c0, c0 + count) of the problem:
//   logits:     s[n][j] = x_n . W[c0 + j]            (s has row stride lds, count <= lds)
//   row_max / exp_shifted_sum: the softmax numerators in place, and their sum
//   accumulate: acc[n] += sum_j s[n][j] * W[c0 + j]
// and the chunk loop below is shared.

// ---------------------------------------------------------------------------------------------
// Portable path: loops the compiler can vectorise without reassociating floating-point sums.

struct Portable {
  // Every argument is <= 0 (a logit minus its running max).
  static float exp_nonpositive(float x) {
    // e^-86 ~ 4e-38 counts for nothing next to the max's 1, and above it 2^n stays a normal float.
    if (!(x >= -86.0f)) return 0.0f;
    const float n = std::nearbyint(x * kLog2e);
    float r = x - n * kLn2Hi;
    r = r - n * kLn2Lo;
    float p = kExpC[0];
    for (int i = 1; i < 6; ++i) p = p * r + kExpC[i];
    p = p * (r * r) + r + 1.0f;
    int32_t bits;
    std::memcpy(&bits, &p, sizeof bits);
    bits += static_cast<int32_t>(n) * (1 << 23);  // p * 2^n for n in [-124, 0]
    std::memcpy(&p, &bits, sizeof p);
    return p;
  }

  // From the packed panels: 16 logits of one row at a time, accumulated over D (axpy form).
  static void logits(const Problem& p, int c0, int count, float* s, int lds) {
    const int D = p.dim;
    for (int j0 = 0; j0 < count; j0 += kPanel) {
      const float* panel = p.packed + size_t(c0 + j0) * D;
      for (int n = 0; n < p.rows; ++n) {
        const float* x = p.x + size_t(n) * D;
        float lanes[kPanel] = {};
        for (int k = 0; k < D; ++k)
          for (int l = 0; l < kPanel; ++l) lanes[l] += x[k] * panel[size_t(k) * kPanel + l];
        std::memcpy(s + size_t(n) * lds + j0, lanes, sizeof lanes);
      }
    }
  }

  static float row_max(const float* s, int count) {
    float m = kNegInf;
    for (int j = 0; j < count; ++j) m = std::max(m, s[j]);
    return m;
  }

  static float exp_shifted_sum(float* s, int count, float shift) {
    float total = 0.0f;
    for (int j = 0; j < count; ++j) {
      s[j] = exp_nonpositive(s[j] - shift);
      total += s[j];
    }
    return total;
  }

  static void accumulate(const Problem& p, int c0, int count, const float* e, int lde, float* acc) {
    const int D = p.dim;
    for (int n = 0; n < p.rows; ++n) {
      float* out = acc + size_t(n) * D;
      for (int j = 0; j < count; ++j) {
        const float a = e[size_t(n) * lde + j];
        const float* w = p.weight + size_t(c0 + j) * D;
        for (int k = 0; k < D; ++k) out[k] += a * w[k];
      }
    }
  }
};

// The frozen linear layers' products, portable: y[n][c] for output columns [c0, c1) (whole
// panels) from the packed W^T, and dx[n][k] for columns [k0, k1) of dx from the row-major W.
struct PortableLinear {
  static void forward(const float* x, int M, int K, const float* packed, int N, float* y, int c0, int c1) {
    for (int j0 = c0; j0 < c1; j0 += kPanel) {
      const float* panel = packed + size_t(j0) * K;
      const int live = std::min(kPanel, N - j0);
      for (int n = 0; n < M; ++n) {
        const float* row = x + size_t(n) * K;
        float lanes[kPanel] = {};
        for (int k = 0; k < K; ++k)
          for (int l = 0; l < kPanel; ++l) lanes[l] += row[k] * panel[size_t(k) * kPanel + l];
        std::memcpy(y + size_t(n) * N + j0, lanes, sizeof(float) * live);
      }
    }
  }

  static void backward(const float* dy, int M, int N, const float* w, int K, float* dx, int k0, int k1) {
    for (int n = 0; n < M; ++n) {
      float* out = dx + size_t(n) * K;
      std::fill(out + k0, out + k1, 0.0f);
      for (int j = 0; j < N; ++j) {
        const float a = dy[size_t(n) * N + j];
        const float* row = w + size_t(j) * K;
        for (int k = k0; k < k1; ++k) out[k] += a * row[k];
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// SIMD paths (x86-64, chosen at run time; D a multiple of 16): AVX-512 where the CPU has
// AVX-512F/DQ, else AVX2 + FMA. Each instruction set supplies register tiles and the softmax's
// element-wise loops (an `Isa`); the loops over tiles below are shared.

#if defined(TUNELAB_X86_PATHS)

// A logits tile: R rows of x against P panels (16 vocabulary rows each) over all of D, written to
// s (row stride lds), pulling `prefetch_lines` cache lines from `prefetch` into L2 on the way.
using LogitsTile = void (*)(const float* x, int D, const float* panels, float* s, int lds, const char* prefetch, int prefetch_lines);
// A gradient tile: acc[r][:] += sum_j e[r][j] * W[j][:] for R rows and V vectors of D's columns.
using AccumulateTile = void (*)(const float* e, int lde, int count, const float* w, int D, float* acc);

// Tables of an Isa's tile instantiations, indexed [rows - 1][columns - 1], for the edges of N and V/D.
template <class Isa, int R, size_t... P>
constexpr std::array<LogitsTile, sizeof...(P)> logits_row(std::index_sequence<P...>) {
  return {&Isa::template logits_tile<R, int(P) + 1>...};
}
template <class Isa, size_t... R>
constexpr std::array<std::array<LogitsTile, Isa::kFwdPanels>, sizeof...(R)> logits_table(std::index_sequence<R...>) {
  return {logits_row<Isa, int(R) + 1>(std::make_index_sequence<Isa::kFwdPanels>())...};
}
template <class Isa, int R, size_t... V>
constexpr std::array<AccumulateTile, sizeof...(V)> accumulate_row(std::index_sequence<V...>) {
  return {&Isa::template accumulate_tile<R, int(V) + 1>...};
}
template <class Isa, size_t... R>
constexpr std::array<std::array<AccumulateTile, Isa::kBwdVecs>, sizeof...(R)> accumulate_table(std::index_sequence<R...>) {
  return {accumulate_row<Isa, int(R) + 1>(std::make_index_sequence<Isa::kBwdVecs>())...};
}

// The fused head's chunk kernels (see Portable) from an Isa's tiles.
template <class Isa>
struct Tiled {
  static inline const auto kLogitsTiles = logits_table<Isa>(std::make_index_sequence<Isa::kFwdRows>());
  static inline const auto kAccumulateTiles = accumulate_table<Isa>(std::make_index_sequence<Isa::kBwdRows>());

  static void logits(const Problem& p, int c0, int count, float* s, int lds) {
    const int panels = (count + kPanel - 1) / kPanel;
    // The gradient reads this chunk's rows of W right after; the tiles pull them into L2 while
    // they compute (the row-major copy is not what they stream, so no hardware prefetcher would).
    const char* rows = reinterpret_cast<const char*>(p.weight + size_t(c0) * p.dim);
    const int lines = p.grad ? int((size_t(count) * p.dim * sizeof(float) + 63) / 64) : 0;
    const int tiles = (panels + Isa::kFwdPanels - 1) / Isa::kFwdPanels * ((p.rows + Isa::kFwdRows - 1) / Isa::kFwdRows);
    int tile = 0;
    for (int q0 = 0; q0 < panels; q0 += Isa::kFwdPanels) {
      const int q = std::min(Isa::kFwdPanels, panels - q0);
      const float* w = p.packed + size_t(c0 + q0 * kPanel) * p.dim;
      for (int n0 = 0; n0 < p.rows; n0 += Isa::kFwdRows, ++tile) {
        const int r = std::min(Isa::kFwdRows, p.rows - n0);
        const int first = int(int64_t(lines) * tile / tiles), last = int(int64_t(lines) * (tile + 1) / tiles);
        kLogitsTiles[r - 1][q - 1](p.x + size_t(n0) * p.dim, p.dim, w, s + size_t(n0) * lds + q0 * kPanel, lds, rows + size_t(first) * 64, last - first);
      }
    }
  }

  static float row_max(const float* s, int count) { return Isa::row_max(s, count); }

  static float exp_shifted_sum(float* s, int count, float shift) { return Isa::exp_shifted_sum(s, count, shift); }

  static void accumulate(const Problem& p, int c0, int count, const float* e, int lde, float* acc) {
    const int D = p.dim, vecs = D / Isa::kVec;
    const float* w = p.weight + size_t(c0) * D;
    // D columns outer: one column strip of the chunk (count x V vectors) stays in L1 for all rows.
    for (int q0 = 0; q0 < vecs; q0 += Isa::kBwdVecs) {
      const int q = std::min(Isa::kBwdVecs, vecs - q0);
      for (int n0 = 0; n0 < p.rows; n0 += Isa::kBwdRows) {
        const int r = std::min(Isa::kBwdRows, p.rows - n0);
        kAccumulateTiles[r - 1][q - 1](e + size_t(n0) * lde, lde, count, w + q0 * Isa::kVec, D, acc + size_t(n0) * D + q0 * Isa::kVec);
      }
    }
  }
};

// The frozen linear layers' products with an Isa's tiles. Forward: for each group of panels
// (kFwdPanels x 16 output columns, K x 16 kFwdPanels floats of W^T that stay in L2), every row
// tile of x; the last panel of a W with N % 16 != 0 goes through a scratch tile so y's row stride
// can be N. Backward: for each strip of dx's columns, W's rows in chunks that stay in L1, every
// row tile.
template <class Isa>
struct TiledLinear {
  // Rows of W per backward chunk. Longer chunks load and store the dx tile less often; measured
  // (AVX-512, M = 60, two threads), 64 / 192 / 512 / all rows: 636 / 575 / 555 / 543 us for
  // W 1536 x 576, with 512 and beyond within noise of each other.
  static constexpr int kBackwardChunk = 512;

  static void forward(const float* x, int M, int K, const float* packed, int N, float* y, int c0, int c1) {
    alignas(64) float edge[Isa::kFwdRows * Isa::kFwdPanels * kPanel];
    for (int j0 = c0; j0 < c1; j0 += Isa::kFwdPanels * kPanel) {
      const int q = std::min(Isa::kFwdPanels, (c1 - j0 + kPanel - 1) / kPanel);
      const int live = std::min(q * kPanel, N - j0);
      const float* w = packed + size_t(j0) * K;
      for (int n0 = 0; n0 < M; n0 += Isa::kFwdRows) {
        const int r = std::min(Isa::kFwdRows, M - n0);
        if (live == q * kPanel) {
          Tiled<Isa>::kLogitsTiles[r - 1][q - 1](x + size_t(n0) * K, K, w, y + size_t(n0) * N + j0, N, nullptr, 0);
        } else {
          Tiled<Isa>::kLogitsTiles[r - 1][q - 1](x + size_t(n0) * K, K, w, edge, q * kPanel, nullptr, 0);
          for (int i = 0; i < r; ++i) std::memcpy(y + size_t(n0 + i) * N + j0, edge + size_t(i) * q * kPanel, sizeof(float) * live);
        }
      }
    }
  }

  static void backward(const float* dy, int M, int N, const float* w, int K, float* dx, int k0, int k1) {
    for (int n = 0; n < M; ++n) std::fill(dx + size_t(n) * K + k0, dx + size_t(n) * K + k1, 0.0f);
    for (int c0 = k0; c0 < k1; c0 += Isa::kBwdVecs * Isa::kVec) {
      const int q = std::min(Isa::kBwdVecs, (k1 - c0) / Isa::kVec);
      for (int j0 = 0; j0 < N; j0 += kBackwardChunk) {
        const int count = std::min(kBackwardChunk, N - j0);
        for (int n0 = 0; n0 < M; n0 += Isa::kBwdRows) {
          const int r = std::min(Isa::kBwdRows, M - n0);
          Tiled<Isa>::kAccumulateTiles[r - 1][q - 1](dy + size_t(n0) * N + j0, N, count, w + size_t(j0) * K + c0, K, dx + size_t(n0) * K + c0);
        }
      }
    }
  }
};

namespace avx512 {

struct Isa {
  // Register tiles: 8 x 3 = 24 accumulators, leaving registers for the loaded operands. Measured
  // (chunk 192, N = 32, two threads), logits 8x3 / 6x4 / 12x2: 18.9 / 20.5 / 19.6 ms; gradient
  // 8x3 / 6x4 / 12x2 / 4x6 all within noise (18.8-19.0 ms).
  static constexpr int kFwdRows = 8;    // x rows per logits tile
  static constexpr int kFwdPanels = 3;  // 16-wide vocabulary panels per logits tile
  static constexpr int kBwdRows = 8;    // rows per gradient tile
  static constexpr int kBwdVecs = 3;    // vectors of D's columns per gradient tile
  static constexpr int kVec = 16;       // floats per vector

  TUNELAB_AVX512 static __m512 exp_ps(__m512 x) {
    // Below -104, 2^n underflows to zero in scalef; the clamp keeps r finite for -inf inputs.
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(kExpC[0]);
    for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC[i]));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
  }

  TUNELAB_AVX512 static __mmask16 first_lanes(int count) {
    return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
  }

  TUNELAB_AVX512 static __m128 fold_to_128(__m512 v, bool max) {
    const __m256 lo = _mm512_castps512_ps256(v), hi = _mm512_extractf32x8_ps(v, 1);
    const __m256 a = max ? _mm256_max_ps(lo, hi) : _mm256_add_ps(lo, hi);
    const __m128 l = _mm256_castps256_ps128(a), h = _mm256_extractf128_ps(a, 1);
    return max ? _mm_max_ps(l, h) : _mm_add_ps(l, h);
  }

  TUNELAB_AVX512 static float horizontal_max(__m512 v) {
    __m128 a = fold_to_128(v, true);
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
  }

  TUNELAB_AVX512 static float horizontal_sum(__m512 v) {
    __m128 a = fold_to_128(v, false);
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
  }

  // R rows x P panels of logits: per dimension k, P panel loads and R broadcasts feed R*P FMAs.
  template <int R, int P>
  TUNELAB_AVX512 static void logits_tile(const float* x, int D, const float* panels, float* s, int lds, const char* prefetch, int prefetch_lines) {
    __m512 acc[R][P];
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < P; ++q) acc[r][q] = _mm512_setzero_ps();
    const int lines_per_k = (prefetch_lines + D - 1) / D;
    for (int k = 0; k < D; ++k) {
      for (int i = k * lines_per_k; i < std::min(prefetch_lines, (k + 1) * lines_per_k); ++i) _mm_prefetch(prefetch + size_t(i) * 64, _MM_HINT_T1);
      __m512 w[P];
      TUNELAB_UNROLL for (int q = 0; q < P; ++q) w[q] = _mm512_loadu_ps(panels + (size_t(q) * D + k) * kPanel);
      TUNELAB_UNROLL for (int r = 0; r < R; ++r) {
        const __m512 b = _mm512_set1_ps(x[size_t(r) * D + k]);
        TUNELAB_UNROLL for (int q = 0; q < P; ++q) acc[r][q] = _mm512_fmadd_ps(b, w[q], acc[r][q]);
      }
    }
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < P; ++q) _mm512_storeu_ps(s + size_t(r) * lds + q * kPanel, acc[r][q]);
  }

  // acc[r][:] += sum_j e[r][j] * W[j][:] for R rows and V 16-wide columns of D: per vocabulary
  // row, V loads of W and R broadcasts of e feed R*V FMAs; the tile stays in registers.
  template <int R, int V>
  TUNELAB_AVX512 static void accumulate_tile(const float* e, int lde, int count, const float* w, int D, float* acc) {
    __m512 a[R][V];
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) a[r][q] = _mm512_setzero_ps();
    for (int j = 0; j < count; ++j) {
      __m512 wv[V];
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) wv[q] = _mm512_loadu_ps(w + size_t(j) * D + q * 16);
      TUNELAB_UNROLL for (int r = 0; r < R; ++r) {
        const __m512 b = _mm512_set1_ps(e[size_t(r) * lde + j]);
        TUNELAB_UNROLL for (int q = 0; q < V; ++q) a[r][q] = _mm512_fmadd_ps(b, wv[q], a[r][q]);
      }
    }
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) {
        float* out = acc + size_t(r) * D + q * 16;
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), a[r][q]));
      }
  }

  TUNELAB_AVX512 static float row_max(const float* s, int count) {
    __m512 m = _mm512_set1_ps(kNegInf);
    for (int j = 0; j < count; j += 16) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(kNegInf), first_lanes(count - j), s + j));
    return horizontal_max(m);
  }

  TUNELAB_AVX512 static float exp_shifted_sum(float* s, int count, float shift) {
    const __m512 m = _mm512_set1_ps(shift);
    __m512 total = _mm512_setzero_ps();
    for (int j = 0; j < count; j += 16) {
      const __mmask16 live = first_lanes(count - j);
      const __m512 e = _mm512_maskz_mov_ps(live, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, s + j), m)));
      _mm512_mask_storeu_ps(s + j, live, e);
      total = _mm512_add_ps(total, e);
    }
    return horizontal_sum(total);
  }

  static bool usable(int dim) {
    return dim % 16 == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  }
};

}  // namespace avx512

namespace avx2 {

// The same tiles in 8-wide registers, for x86 CPUs without AVX-512 (most desktop and laptop
// CPUs): 16 registers, so 6 rows x 2 vectors = 12 accumulators plus 2 loads and a broadcast.
struct Isa {
  static constexpr int kFwdRows = 6;    // x rows per logits tile
  static constexpr int kFwdPanels = 1;  // 16-wide vocabulary panels per logits tile (2 registers)
  static constexpr int kBwdRows = 6;    // rows per gradient tile
  static constexpr int kBwdVecs = 2;    // vectors of D's columns per gradient tile
  static constexpr int kVec = 8;        // floats per vector

  // e^x for x <= 0 (a logit minus its running max), as Portable::exp_nonpositive: 0 below -86,
  // where 2^n (n >= -125) is built by adding n to the polynomial's exponent bits.
  TUNELAB_AVX2 static __m256 exp_nonpositive(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-86.0f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-86.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 p = _mm256_set1_ps(kExpC[0]);
    for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC[i]));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i scaled = _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23));
    return _mm256_and_ps(_mm256_castsi256_ps(scaled), live);
  }

  // All-ones in the lanes below `count`.
  TUNELAB_AVX2 static __m256i first_lanes(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  TUNELAB_AVX2 static float horizontal(__m256 v, bool max) {
    const __m128 l = _mm256_castps256_ps128(v), h = _mm256_extractf128_ps(v, 1);
    __m128 a = max ? _mm_max_ps(l, h) : _mm_add_ps(l, h);
    a = max ? _mm_max_ps(a, _mm_movehl_ps(a, a)) : _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = max ? _mm_max_ss(a, _mm_shuffle_ps(a, a, 1)) : _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
  }

  // R rows x P panels of logits, each panel two registers wide.
  template <int R, int P>
  TUNELAB_AVX2 static void logits_tile(const float* x, int D, const float* panels, float* s, int lds, const char* prefetch, int prefetch_lines) {
    __m256 acc[R][2 * P];
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < 2 * P; ++q) acc[r][q] = _mm256_setzero_ps();
    const int lines_per_k = (prefetch_lines + D - 1) / D;
    for (int k = 0; k < D; ++k) {
      for (int i = k * lines_per_k; i < std::min(prefetch_lines, (k + 1) * lines_per_k); ++i) _mm_prefetch(prefetch + size_t(i) * 64, _MM_HINT_T1);
      __m256 w[2 * P];
      TUNELAB_UNROLL for (int q = 0; q < P; ++q) {
        w[2 * q] = _mm256_loadu_ps(panels + (size_t(q) * D + k) * kPanel);
        w[2 * q + 1] = _mm256_loadu_ps(panels + (size_t(q) * D + k) * kPanel + 8);
      }
      TUNELAB_UNROLL for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(x + size_t(r) * D + k);
        TUNELAB_UNROLL for (int q = 0; q < 2 * P; ++q) acc[r][q] = _mm256_fmadd_ps(b, w[q], acc[r][q]);
      }
    }
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < 2 * P; ++q) _mm256_storeu_ps(s + size_t(r) * lds + q * 8, acc[r][q]);
  }

  template <int R, int V>
  TUNELAB_AVX2 static void accumulate_tile(const float* e, int lde, int count, const float* w, int D, float* acc) {
    __m256 a[R][V];
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) a[r][q] = _mm256_setzero_ps();
    for (int j = 0; j < count; ++j) {
      __m256 wv[V];
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) wv[q] = _mm256_loadu_ps(w + size_t(j) * D + q * 8);
      TUNELAB_UNROLL for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(e + size_t(r) * lde + j);
        TUNELAB_UNROLL for (int q = 0; q < V; ++q) a[r][q] = _mm256_fmadd_ps(b, wv[q], a[r][q]);
      }
    }
    TUNELAB_UNROLL for (int r = 0; r < R; ++r)
      TUNELAB_UNROLL for (int q = 0; q < V; ++q) {
        float* out = acc + size_t(r) * D + q * 8;
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), a[r][q]));
      }
  }

  TUNELAB_AVX2 static float row_max(const float* s, int count) {
    const __m256 lowest = _mm256_set1_ps(kNegInf);
    __m256 m = lowest;
    for (int j = 0; j < count; j += 8) {
      const __m256i live = first_lanes(count - j);
      m = _mm256_max_ps(m, _mm256_blendv_ps(lowest, _mm256_maskload_ps(s + j, live), _mm256_castsi256_ps(live)));
    }
    return horizontal(m, true);
  }

  TUNELAB_AVX2 static float exp_shifted_sum(float* s, int count, float shift) {
    const __m256 m = _mm256_set1_ps(shift);
    __m256 total = _mm256_setzero_ps();
    for (int j = 0; j < count; j += 8) {
      const __m256i live = first_lanes(count - j);
      const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(s + j, live), m)), _mm256_castsi256_ps(live));
      _mm256_maskstore_ps(s + j, live, e);
      total = _mm256_add_ps(total, e);
    }
    return horizontal(total, false);
  }

  static bool usable(int dim) { return dim % 16 == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
};

}  // namespace avx2
#endif

// Which loops a call takes. `cap` (the C ABI's last int) limits it: 0 the best the CPU has,
// 1 the portable loops, 2 at most AVX2 (tests and benchmarks of the lower paths on a newer CPU).
enum class Path { kPortable, kAvx2, kAvx512 };

Path choose(int dim, int cap) {
#if defined(TUNELAB_X86_PATHS)
  if (cap == 0 && avx512::Isa::usable(dim)) return Path::kAvx512;
  if (cap != 1 && avx2::Isa::usable(dim)) return Path::kAvx2;
#else
  (void)dim;
  (void)cap;
#endif
  return Path::kPortable;
}

const char* path_name(Path path) {
  switch (path) {
    case Path::kAvx512:
      return "avx512";
    case Path::kAvx2:
      return "avx2";
    default:
      return "portable";
  }
}

// Threads kept between calls for the fused head and the frozen linear layers. A layer's product
// takes 0.1-0.7 ms and a training step makes dozens of them; starting and joining a std::thread
// costs ~65 us on the 2-core VM this was measured on (as much as a k/v projection's whole
// product), a wake-up of a parked one ~10x less. Helpers spin briefly after a job, since the next
// product usually follows within microseconds, and then sleep so they do not compete with BLAS's
// own threads.
class WorkerPool {
 public:
  static WorkerPool& instance() {
    // Never destroyed: its threads are parked for the life of the process (a static destructor
    // would have to join them while the interpreter shuts down).
    static WorkerPool* pool = new WorkerPool();
    return *pool;
  }

  // Runs `work` on `threads` threads, the caller's included, and returns when all have returned.
  void run(int threads, const std::function<void()>& work) {
    std::lock_guard<std::mutex> one_job_at_a_time(run_mutex_);
    const int helpers = std::max(0, threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (int(workers_.size()) < helpers) {
        const int index = int(workers_.size());
        workers_.emplace_back([this, index]() { serve(index); });
      }
      job_ = &work;
      helpers_ = helpers;
      remaining_.store(helpers, std::memory_order_relaxed);
      published_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work();
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    while (remaining_.load(std::memory_order_acquire) != 0 && std::chrono::steady_clock::now() < deadline) pause();
    if (remaining_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this]() { return remaining_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  static constexpr std::chrono::microseconds kSpin{50};

  static void pause() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }

  void serve(int index) {
    uint64_t seen = 0;
    for (;;) {
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      while (published_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < deadline) pause();
      const std::function<void()>* job;
      int helpers;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&]() { return published_.load(std::memory_order_relaxed) != seen; });
        seen = published_.load(std::memory_order_relaxed);
        job = job_;
        helpers = helpers_;
      }
      if (index >= helpers) continue;
      (*job)();
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void()>* job_ = nullptr;
  int helpers_ = 0;
  std::atomic<uint64_t> published_{0};
  std::atomic<int> remaining_{0};
};

// ---------------------------------------------------------------------------------------------
// The chunk loop and the merge, shared by both paths.

// The vocabulary is cut into a fixed number of shares, whatever the number of threads: threads
// take shares from a counter, so a thread whose core is also running something else (OpenBLAS's
// worker spinning between MLX's BLAS calls) simply finishes fewer of them. Each share's partial
// result depends only on its boundaries and the merge runs in share order, so the output is the
// same bit for bit for any number of threads (a resumed run reproduces its numbers).
constexpr int kShares = 16;

// One share of the vocabulary, reduced to what the merge needs.
struct Partial {
  std::vector<float> max;  // running max of each row's logits over the share
  std::vector<float> sum;  // sum of exp(logit - max) over the share
  float* acc = nullptr;    // N x D: sum of exp(logit - max) * W[v] over the share
};

template <class K>
void run_share(const Problem& p, int begin, int end, Partial& part, float* s, float* target_logit) {
  const int N = p.rows, D = p.dim, chunk = p.chunk;
  part.max.assign(N, kNegInf);
  part.sum.assign(N, 0.0f);
  if (p.grad) std::fill(part.acc, part.acc + size_t(N) * D, 0.0f);
  for (int c0 = begin; c0 < end; c0 += chunk) {
    const int count = std::min(chunk, end - c0);
    K::logits(p, c0, count, s, chunk);
    for (int n = 0; n < N; ++n) {
      const int t = p.targets[n];
      if (t >= c0 && t < c0 + count) target_logit[n] = s[size_t(n) * chunk + (t - c0)];
    }
    for (int n = 0; n < N; ++n) {
      float* row = s + size_t(n) * chunk;
      const float seen = part.max[n];
      const float m = std::max(seen, K::row_max(row, count));
      if (m > seen && seen != kNegInf) {
        // A larger max shrinks everything summed so far by exp(seen - m).
        const float scale = std::exp(seen - m);
        part.sum[n] *= scale;
        if (p.grad)
          for (int k = 0; k < D; ++k) part.acc[size_t(n) * D + k] *= scale;
      }
      part.max[n] = m;
      part.sum[n] += K::exp_shifted_sum(row, count, m);
    }
    if (p.grad) K::accumulate(p, c0, count, s, chunk, part.acc);
  }
}

template <class K>
void run(const Problem& p, int threads) {
  const int N = p.rows, D = p.dim;
  const int panels = (p.vocab + kPanel - 1) / kPanel;
  const int shares = std::min(kShares, panels);
  threads = std::max(1, std::min(threads, shares));
  std::vector<Partial> parts(shares);
  // Each target lies in exactly one share, whose thread alone writes its entry.
  std::vector<float> target_logit(N, 0.0f);
  Scratch accumulators(p.grad ? size_t(shares) * N * D : 1);
  for (int i = 0; i < shares; ++i) parts[i].acc = accumulators.get() + size_t(i) * N * D;
  std::atomic<int> next{0};
  const std::function<void()> work = [&]() {
    Scratch logits(size_t(N) * p.chunk);
    for (int i = next.fetch_add(1); i < shares; i = next.fetch_add(1)) {
      // Shares are whole panels, so the last one alone reads the packed copy's padding.
      const int begin = int(int64_t(panels) * i / shares) * kPanel;
      const int end = std::min(p.vocab, int(int64_t(panels) * (i + 1) / shares) * kPanel);
      run_share<K>(p, begin, end, parts[i], logits.get(), target_logit.data());
    }
  };
  WorkerPool::instance().run(threads, work);

  std::vector<double> weight(shares), row(D);
  for (int n = 0; n < N; ++n) {
    float m = kNegInf;
    for (const Partial& part : parts) m = std::max(m, part.max[n]);
    double total = 0.0;
    for (int i = 0; i < shares; ++i) {
      weight[i] = std::exp(double(parts[i].max[n]) - m);
      total += weight[i] * parts[i].sum[n];
    }
    // The max skips NaN, so a non-finite input row is reported as such, as MLX's softmax would.
    const bool finite = std::all_of(p.x + size_t(n) * D, p.x + size_t(n + 1) * D, [](float v) { return std::isfinite(v); });
    p.ce[n] = finite ? float(double(m) + std::log(total) - double(target_logit[n])) : kNaN;
    if (!p.grad) continue;
    if (!finite) {
      std::fill(p.grad + size_t(n) * D, p.grad + size_t(n + 1) * D, kNaN);
      continue;
    }
    // In double: the shares' sums nearly cancel against W[target] where the model is confident.
    const float* w_target = p.weight + size_t(p.targets[n]) * D;
    for (int k = 0; k < D; ++k) row[k] = -double(w_target[k]);
    for (int i = 0; i < shares; ++i) {
      const double scale = weight[i] / total;
      const float* acc = parts[i].acc + size_t(n) * D;
      for (int k = 0; k < D; ++k) row[k] += scale * acc[k];
    }
    float* g = p.grad + size_t(n) * D;
    for (int k = 0; k < D; ++k) g[k] = float(row[k]);
  }
}


// The frozen linear layers: output columns cut into strips that threads take from a counter.
// Every element of the result is computed by the same loop whatever strip holds it, so the
// result does not depend on the number of threads. A strip is a whole number of register tiles.
template <class L>
void linear_forward(const float* x, int M, int K, const float* packed, int N, float* y, int threads) {
  constexpr int kStrip = 3 * kPanel;  // whole tiles on every path: AVX-512's 3 panels, AVX2's 1
  const int strips = (N + kStrip - 1) / kStrip;
  std::atomic<int> next{0};
  const std::function<void()> work = [&]() {
    for (int i = next.fetch_add(1); i < strips; i = next.fetch_add(1))
      L::forward(x, M, K, packed, N, y, i * kStrip, std::min(N, (i + 1) * kStrip));
  };
  WorkerPool::instance().run(std::max(1, std::min(threads, strips)), work);
}

template <class L>
void linear_backward(const float* dy, int M, int N, const float* w, int K, float* dx, int threads) {
  constexpr int kStrip = 3 * 16;  // whole tiles on every path: AVX-512's 3 x 16, AVX2's 2 x 8 (x3)
  const int strips = (K + kStrip - 1) / kStrip;
  std::atomic<int> next{0};
  const std::function<void()> work = [&]() {
    for (int i = next.fetch_add(1); i < strips; i = next.fetch_add(1))
      L::backward(dy, M, N, w, K, dx, i * kStrip, std::min(K, (i + 1) * kStrip));
  };
  WorkerPool::instance().run(std::max(1, std::min(threads, strips)), work);
}

}  // namespace

extern "C" {

// Bumped whenever a signature below changes; the Python side refuses a library that differs.
int tunelab_host_kernels_abi(void) { return kAbiVersion; }

// Which path `tunelab_fused_cross_entropy` takes for this D: "avx512", "avx2" or "portable"
// (cap as in `choose`).
const char* tunelab_fused_cross_entropy_path(int dim, int cap) { return path_name(choose(dim, cap)); }

// packed[(v / 16) * D * 16 + k * 16 + v % 16] = weight[v * D + k]; rows past V are zero.
// `packed` holds ceil(V / 16) * 16 * D floats.
void tunelab_pack_head(const float* weight, int vocab, int dim, float* packed) {
  const int panels = (vocab + kPanel - 1) / kPanel;
  for (int q = 0; q < panels; ++q) {
    float* panel = packed + size_t(q) * dim * kPanel;
    for (int l = 0; l < kPanel; ++l) {
      const int v = q * kPanel + l;
      if (v < vocab) {
        const float* row = weight + size_t(v) * dim;
        for (int k = 0; k < dim; ++k) panel[size_t(k) * kPanel + l] = row[k];
      } else {
        for (int k = 0; k < dim; ++k) panel[size_t(k) * kPanel + l] = 0.0f;
      }
    }
  }
}

// ce[n] = logsumexp(W x_n) - (W x_n)[targets[n]]; grad (N x D, may be null) = softmax(W x_n) @ W
// - W[targets[n]]. Returns 0, or 1 when a target is outside [0, V) or a size is not positive.
// chunk <= 0 picks the default; threads < 1 means one.
int tunelab_fused_cross_entropy(const float* x, const int32_t* targets, int rows, int dim, const float* weight, const float* packed, int vocab,
                                float* ce, float* grad, int threads, int chunk, int cap) {
  if (rows <= 0 || dim <= 0 || vocab <= 0) return 1;
  for (int n = 0; n < rows; ++n)
    if (targets[n] < 0 || targets[n] >= vocab) return 1;
  chunk = chunk <= 0 ? kDefaultChunk : (chunk + kPanel - 1) / kPanel * kPanel;
  const Problem p{x, targets, rows, dim, weight, packed, vocab, ce, grad, chunk};
  switch (choose(dim, cap)) {
#if defined(TUNELAB_X86_PATHS)
    case Path::kAvx512:
      run<Tiled<avx512::Isa>>(p, threads);
      return 0;
    case Path::kAvx2:
      run<Tiled<avx2::Isa>>(p, threads);
      return 0;
#endif
    default:
      run<Portable>(p, threads);
      return 0;
  }
}

// Which path the linear products take for an input width K (cap as in `choose`).
const char* tunelab_linear_path(int in_features, int cap) { return path_name(choose(in_features, cap)); }

// y (M x N) = x (M x K) @ W^T, with packed = tunelab_pack_head(W, N, K, .) for W (N x K) row-major.
// Returns 1 when a size is not positive; threads < 1 means one.
int tunelab_linear_forward(const float* x, int rows, int in_features, const float* packed, int out_features, float* y, int threads, int cap) {
  if (rows <= 0 || in_features <= 0 || out_features <= 0) return 1;
  switch (choose(in_features, cap)) {
#if defined(TUNELAB_X86_PATHS)
    case Path::kAvx512:
      linear_forward<TiledLinear<avx512::Isa>>(x, rows, in_features, packed, out_features, y, threads);
      return 0;
    case Path::kAvx2:
      linear_forward<TiledLinear<avx2::Isa>>(x, rows, in_features, packed, out_features, y, threads);
      return 0;
#endif
    default:
      linear_forward<PortableLinear>(x, rows, in_features, packed, out_features, y, threads);
      return 0;
  }
}

// dx (M x K) = dy (M x N) @ W, for W (N x K) row-major. Returns 1 when a size is not positive.
int tunelab_linear_backward(const float* dy, int rows, int out_features, const float* weight, int in_features, float* dx, int threads, int cap) {
  if (rows <= 0 || in_features <= 0 || out_features <= 0) return 1;
  switch (choose(in_features, cap)) {
#if defined(TUNELAB_X86_PATHS)
    case Path::kAvx512:
      linear_backward<TiledLinear<avx512::Isa>>(dy, rows, out_features, weight, in_features, dx, threads);
      return 0;
    case Path::kAvx2:
      linear_backward<TiledLinear<avx2::Isa>>(dy, rows, out_features, weight, in_features, dx, threads);
      return 0;
#endif
    default:
      linear_backward<PortableLinear>(dy, rows, out_features, weight, in_features, dx, threads);
      return 0;
  }
}

}  // extern "C"
