// Drives the real ane backend (native/src/ane_backend.cc, compiled against the stand-ins) through a
// graph's whole life: availability, compile, one evaluation, a timing run, release. The graph comes
// from a directory the test writes: spec.txt ("channels C0 C1 ...", "spatial S", "blob <path> <file>"
// per weight file) and model.mil.
//
//   standin-driver <spec-dir> [--time WARMUP,ITERS] [--os VERSION] [--tmp DIR] [--no-framework]
//                  [--missing SEL] [--raise SEL] [--nil SEL] [--fail SEL[=TIMES]]
//
// Only std::exception is caught, as in the addon's workers: anything else the backend lets escape
// ends the process, as it would end the ANE worker.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend.h"
#include "standin.h"

using tunelab::GraphSpec;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

GraphSpec readSpec(const std::string& dir) {
  GraphSpec spec;
  std::istringstream lines(slurp(dir + "/spec.txt"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "channels") {
      int c;
      while (words >> c) spec.channels.push_back(c);
    } else if (key == "spatial") words >> spec.spatial;
    else if (key == "blob") {
      std::string path, file;
      words >> path >> file;
      const std::string bytes = slurp(dir + "/" + file);
      spec.blobs.push_back({path, std::vector<uint8_t>(bytes.begin(), bytes.end())});
    }
  }
  spec.mil = slurp(dir + "/model.mil");
  return spec;
}

// Older backends had no Graph::time; the driver then skips the timing run.
template <typename G, typename = void>
struct HasTime : std::false_type {};
template <typename G>
struct HasTime<G, std::void_t<decltype(std::declval<G&>().time(nullptr, 0, 0, nullptr))>> : std::true_type {};

void step(const std::string& name, bool ok, const std::string& extra = "") {
  standin::emit("{\"ev\":\"step\",\"step\":\"" + name + "\",\"ok\":" + (ok ? "true" : "false") + extra + "}");
}

template <typename G>
void timeIt(G& graph, const std::vector<float>& input, int warmup, int iters) {
  if constexpr (HasTime<G>::value) {
    try {
      std::vector<double> ms = graph.time(input.data(), warmup, iters, nullptr);
      std::string list = "[";
      for (size_t i = 0; i < ms.size(); ++i) list += (i ? "," : "") + std::to_string(ms[i]);
      step("time", true, ",\"ms\":" + list + "]");
    } catch (const std::exception& e) {
      step("time", false, ",\"message\":" + standin::quote(e.what()));
    }
  } else {
    step("time", false, ",\"message\":\"this backend has no Graph::time\"");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  int warmup = 2, iters = 3;
  for (int i = 2; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--time") sscanf(argv[i + 1], "%d,%d", &warmup, &iters);
  standin::configure(argc - 2, argv + 2);
  tunelab::Backend& backend = tunelab::aneBackend();
  const tunelab::Availability a = backend.availability();
  step("availability", a.available, ",\"reason\":" + standin::quote(a.reason));
  if (a.available) {
    GraphSpec spec = readSpec(argv[1]);
    std::unique_ptr<tunelab::Graph> graph;
    try {
      graph = backend.compile(spec);
      step("compile", true);
    } catch (const std::exception& e) {
      step("compile", false, ",\"message\":" + standin::quote(e.what()));
    }
    if (graph) {
      std::vector<float> input(spec.inputElements()), output(spec.outputElements(), -1.0f);
      for (size_t i = 0; i < input.size(); ++i) input[i] = float(std::sin(double(i))) * 0.5f;
      try {
        graph->evaluate(input.data(), output.data());
        bool matches = true;
        for (size_t j = 0; j < output.size(); ++j) matches = matches && output[j] == standin::expectedOutput(input.data(), input.size(), j);
        step("evaluate", true, std::string(",\"outputMatches\":") + (matches ? "true" : "false"));
      } catch (const std::exception& e) {
        step("evaluate", false, ",\"message\":" + standin::quote(e.what()));
      }
      timeIt(*graph, input, warmup, iters);
      graph.reset();
      step("release", true);
    }
    step("compiles", true, ",\"count\":" + std::to_string(backend.compiles()));
  }
  standin::finish();
  return 0;
}
