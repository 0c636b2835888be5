// The cpu backend: the same conv-stack graphs as the ANE, in fp32 through cblas
// (Accelerate on macOS, OpenBLAS on Linux).
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "backend.h"
#include "cpu_kernel.h"

#if defined(__APPLE__)
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
extern "C" {
// Present in OpenBLAS only; weak so that another cblas still links and just says less.
char* openblas_get_config(void) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}
#endif

namespace tunelab {
namespace {

// Packed once at compile time where the CPU allows it (PackedStack), else one cblas_sgemm per layer.
class CpuGraph final : public Graph {
 public:
  explicit CpuGraph(const GraphSpec& spec) : Graph(spec.outputElements()), channels_(spec.channels), spatial_(spec.spatial) {
    if (PackedStack::supports(channels_, spatial_) && !getenv("TUNELAB_CPU_BLAS_ONLY")) {
      packed_ = std::make_unique<PackedStack>(channels_, spatial_, spec.weights);
      return;
    }
    weights_ = spec.weights;
    size_t widest = 0;
    for (int c : channels_) widest = std::max(widest, size_t(c) * size_t(spatial_));
    ping_.resize(widest);
    pong_.resize(widest);
  }

  void evaluate(const float* input, float* output) override {
    if (packed_) {
      packed_->evaluate(input, output);
      return;
    }
    const size_t layers = weights_.size();
    const float* x = input;
    for (size_t i = 0; i < layers; ++i) {
      // The last layer writes straight into the caller's buffer: one copy fewer per eval.
      float* y = (i + 1 == layers) ? output : (i % 2 == 0 ? ping_.data() : pong_.data());
      const int cin = channels_[i], cout = channels_[i + 1];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, spatial_, cin, 1.0f, weights_[i].data(), cin, x,
                  spatial_, 0.0f, y, spatial_);
      x = y;
    }
    if (layers == 0) std::memcpy(output, input, sizeof(float) * size_t(channels_[0]) * size_t(spatial_));
  }

 private:
  std::vector<int> channels_;
  int spatial_;
  std::vector<std::vector<float>> weights_;
  std::vector<float> ping_, pong_;
  std::unique_ptr<PackedStack> packed_;
};

// TUNELAB_CPU_FAIL_COMPILE=N makes this process's N-th compile fail, as a compiler on a real ANE can;
// N:PATH does so only while PATH exists and removes it, so that the failure happens once across the
// workers of a run (a fresh worker that resumes does not meet it again). For tests of recovery.
bool injectedFailure(int compile) {
  const char* spec = getenv("TUNELAB_CPU_FAIL_COMPILE");
  if (!spec || !*spec) return false;
  char* rest = nullptr;
  const long at = strtol(spec, &rest, 10);
  if (at != compile) return false;
  if (rest && *rest == ':') return unlink(rest + 1) == 0;
  return true;
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Availability availability() override { return {true, ""}; }
  std::unique_ptr<Graph> compile(const GraphSpec& spec) override {
    if (spec.channels.size() != spec.weights.size() + 1) throw std::runtime_error("the graph needs one weight per layer");
    for (size_t i = 0; i < spec.weights.size(); ++i) {
      if (spec.weights[i].size() != size_t(spec.channels[i]) * size_t(spec.channels[i + 1])) {
        throw std::runtime_error("weight " + std::to_string(i) + " does not match its layer's channels");
      }
    }
    const int compile = compiles_.fetch_add(1) + 1;
    if (injectedFailure(compile)) {
      throw std::runtime_error("compile " + std::to_string(compile) + " of this process failed (injected by TUNELAB_CPU_FAIL_COMPILE)");
    }
    return std::make_unique<CpuGraph>(spec);
  }
};

}  // namespace

Backend& cpuBackend() {
  static CpuBackend backend;
  return backend;
}

void sgemmOnce(int n, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}

std::string blasDescription() {
#if defined(__APPLE__)
  return "Accelerate";
#else
  std::string text = "OpenBLAS";
  if (openblas_get_config) text = openblas_get_config();
  if (openblas_get_num_threads) text += " threads=" + std::to_string(openblas_get_num_threads());
  return text;
#endif
}

}  // namespace tunelab
