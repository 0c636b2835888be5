// One interface for the two backends: compile a graph, evaluate it, release it, count compiles.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tunelab {

// A chain of 1x1 convolutions over a [1, C, 1, S] tensor (element (c, s) at c*S + s).
// Layer i maps channels[i] -> channels[i+1]; its weight is row-major [out, in].
struct GraphSpec {
  std::vector<int> channels;
  int spatial = 0;
  std::vector<std::vector<float>> weights;  // fp32, used by the cpu backend
  std::string mil;                          // MIL program text, used by the ane backend
  struct Blob {
    std::string path;  // relative to the model directory, e.g. "weights/w0.bin"
    std::vector<uint8_t> bytes;
  };
  std::vector<Blob> blobs;

  size_t inputElements() const { return size_t(channels.front()) * size_t(spatial); }
  size_t outputElements() const { return size_t(channels.back()) * size_t(spatial); }
};

class Graph {
 public:
  virtual ~Graph() = default;
  // fp32 in, fp32 out, both laid out as [C, S].
  virtual void evaluate(const float* input, float* output) = 0;

  // Milliseconds of each of `iters` timed evaluations of `input`, after `warmup` untimed ones; stops
  // early (fewer times) once *stop is non-zero. An evaluation here is the whole computation; a backend
  // whose evaluate also moves data in and out of a device may time the device's part alone.
  virtual std::vector<double> time(const float* input, int warmup, int iters, const int32_t* stop) {
    std::vector<float> output(outputElements_);
    auto stopped = [stop] { return stop && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0; };
    for (int i = 0; i < warmup && !stopped(); ++i) evaluate(input, output.data());
    std::vector<double> ms;
    ms.reserve(size_t(iters > 0 ? iters : 0));
    for (int i = 0; i < iters && !stopped(); ++i) {
      auto start = std::chrono::steady_clock::now();
      evaluate(input, output.data());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    return ms;
  }

 protected:
  explicit Graph(size_t outputElements) : outputElements_(outputElements) {}
  size_t outputElements_;
};

struct Availability {
  bool available;
  std::string reason;  // empty when available
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Availability availability() = 0;
  // Throws std::runtime_error with a sentence for a person when the graph cannot be compiled.
  virtual std::unique_ptr<Graph> compile(const GraphSpec& spec) = 0;
  int compiles() const { return compiles_.load(); }

 protected:
  std::atomic<int> compiles_{0};
};

Backend& cpuBackend();
Backend& aneBackend();

// A plain n x n x n sgemm through the same BLAS, for the cpu backend's honest ceiling.
void sgemmOnce(int n, const float* a, const float* b, float* c);
std::string blasDescription();

}  // namespace tunelab
