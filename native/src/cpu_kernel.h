// A conv-stack kernel for x86-64 with AVX-512: weights are packed once, when the graph is
// compiled (as the ANE bakes them in), so an evaluation only streams them through FMA panels.
// A BLAS call per layer would repack every 1 MiB weight on every evaluation instead.
#pragma once

#include <vector>

namespace tunelab {

class PackedStack {
 public:
  // True when this CPU and this shape can use the packed kernel (else the caller uses cblas).
  static bool supports(const std::vector<int>& channels, int spatial);
  PackedStack(const std::vector<int>& channels, int spatial, const std::vector<std::vector<float>>& weights);
  void evaluate(const float* input, float* output);

 private:
  std::vector<int> channels_;
  int spatial_;
  std::vector<std::vector<float>> packed_;  // per layer: blocks of kRows output rows, [k][row] within a block
  std::vector<float> ping_, pong_;
  int threads_ = 1;
};

}  // namespace tunelab
