// JavaScript face of the backends. Compiling, evaluating and timing run on libuv's thread pool
// (Napi::AsyncWorker) so that the worker process keeps answering cancel and ping while they run.
#include <napi.h>

#include <chrono>
#include <random>
#include <stdexcept>

#include "backend.h"

namespace tunelab {
namespace {

struct GraphBox {
  std::shared_ptr<Graph> graph;
  size_t inputElements = 0;
  size_t outputElements = 0;
};

Backend* backendNamed(const std::string& name) {
  if (name == "cpu") return &cpuBackend();
  if (name == "ane") return &aneBackend();
  return nullptr;
}

Backend* backendArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || !info[index].IsString()) {
    Napi::TypeError::New(info.Env(), "backend name expected").ThrowAsJavaScriptException();
    return nullptr;
  }
  Backend* backend = backendNamed(info[index].As<Napi::String>().Utf8Value());
  if (!backend) Napi::TypeError::New(info.Env(), "unknown backend; use ane or cpu").ThrowAsJavaScriptException();
  return backend;
}

GraphBox* graphArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "graph handle expected").ThrowAsJavaScriptException();
    return nullptr;
  }
  GraphBox* box = info[0].As<Napi::External<GraphBox>>().Data();
  if (!box->graph) {
    Napi::Error::New(info.Env(), "this graph was released").ThrowAsJavaScriptException();
    return nullptr;
  }
  return box;
}

bool floatArrayArg(const Napi::CallbackInfo& info, size_t index, size_t elements, const char* what) {
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a Float32Array").ThrowAsJavaScriptException();
    return false;
  }
  if (info[index].As<Napi::Float32Array>().ElementLength() != elements) {
    Napi::RangeError::New(info.Env(), std::string(what) + " has " +
                                          std::to_string(info[index].As<Napi::Float32Array>().ElementLength()) +
                                          " elements; the graph needs " + std::to_string(elements))
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// A worker that settles a promise; subclasses fill Execute and Result.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual Napi::Value Result() { return Env().Undefined(); }
  void OnOK() override { deferred_.Resolve(Result()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }
  // The backends promise std::runtime_error with a sentence; anything else escaping a thread-pool
  // thread would terminate the worker process, so it becomes an error too.
  template <typename F>
  void guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("the backend failed with an exception that is not a std::exception");
    }
  }
  Napi::Promise::Deferred deferred_;
};

class CompileWorker final : public PromiseWorker {
 public:
  CompileWorker(Napi::Env env, Backend* backend, GraphSpec spec) : PromiseWorker(env), backend_(backend), spec_(std::move(spec)) {}
  void Execute() override {
    guarded([&] { graph_ = backend_->compile(spec_); });
    spec_ = GraphSpec();  // the weights are baked into the graph now
  }
  Napi::Value Result() override {
    auto* box = new GraphBox{std::shared_ptr<Graph>(std::move(graph_)), inputs_, outputs_};
    return Napi::External<GraphBox>::New(Env(), box, [](Napi::Env, GraphBox* b) { delete b; });
  }
  size_t inputs_ = 0, outputs_ = 0;

 private:
  Backend* backend_;
  GraphSpec spec_;
  std::unique_ptr<Graph> graph_;
};

class EvaluateWorker final : public PromiseWorker {
 public:
  EvaluateWorker(Napi::Env env, std::shared_ptr<Graph> graph, Napi::Float32Array input, Napi::Float32Array output)
      : PromiseWorker(env), graph_(std::move(graph)), input_(input.Data()), output_(output.Data()) {
    // Keep both arrays alive while the thread pool writes into them.
    inputRef_ = Napi::Persistent(input.As<Napi::Object>());
    outputRef_ = Napi::Persistent(output.As<Napi::Object>());
  }
  void Execute() override {
    guarded([&] { graph_->evaluate(input_, output_); });
  }

 private:
  std::shared_ptr<Graph> graph_;
  const float* input_;
  float* output_;
  Napi::ObjectReference inputRef_, outputRef_;
};

class TimeWorker final : public PromiseWorker {
 public:
  TimeWorker(Napi::Env env, std::shared_ptr<Graph> graph, Napi::Float32Array input, int warmup, int iters, Napi::Int32Array stop)
      : PromiseWorker(env), graph_(std::move(graph)), input_(input.Data(), input.Data() + input.ElementLength()), warmup_(warmup), iters_(iters) {
    if (!stop.IsEmpty()) {
      stop_ = stop.Data();
      stopRef_ = Napi::Persistent(stop.As<Napi::Object>());
    }
  }
  void Execute() override {
    guarded([&] { times_ = graph_->time(input_.data(), warmup_, iters_, stop_); });
  }
  Napi::Value Result() override {
    auto array = Napi::Float64Array::New(Env(), times_.size());
    for (size_t i = 0; i < times_.size(); ++i) array[i] = times_[i];
    return array;
  }

 private:
  std::shared_ptr<Graph> graph_;
  std::vector<float> input_;
  int warmup_, iters_;
  std::vector<double> times_;
  // The JavaScript side sets stop[0] to cancel: a long timing loop ends at the next evaluation.
  int32_t* stop_ = nullptr;
  Napi::ObjectReference stopRef_;
};

class SgemmWorker final : public PromiseWorker {
 public:
  SgemmWorker(Napi::Env env, int n, int warmup, int iters) : PromiseWorker(env), n_(n), warmup_(warmup), iters_(iters) {}
  void Execute() override {
    const size_t count = size_t(n_) * size_t(n_);
    std::vector<float> a(count), b(count), c(count);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (size_t i = 0; i < count; ++i) a[i] = dist(rng), b[i] = dist(rng);
    for (int i = 0; i < warmup_; ++i) sgemmOnce(n_, a.data(), b.data(), c.data());
    for (int i = 0; i < iters_; ++i) {
      auto start = std::chrono::steady_clock::now();
      sgemmOnce(n_, a.data(), b.data(), c.data());
      times_.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }
  Napi::Value Result() override {
    auto array = Napi::Float64Array::New(Env(), times_.size());
    for (size_t i = 0; i < times_.size(); ++i) array[i] = times_[i];
    return array;
  }

 private:
  int n_, warmup_, iters_;
  std::vector<double> times_;
};

Napi::Value AvailabilityOf(const Napi::CallbackInfo& info) {
  Backend* backend = backendArg(info, 0);
  if (!backend) return info.Env().Undefined();
  tunelab::Availability a = backend->availability();
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("available", a.available);
  if (!a.available) result.Set("reason", a.reason);
  return result;
}

Napi::Value Compiles(const Napi::CallbackInfo& info) {
  Backend* backend = backendArg(info, 0);
  if (!backend) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), backend->compiles());
}

// compile(backend, {channels, spatial, weights?: Float32Array[], mil?: string, blobs?: [{path, bytes}]})
Napi::Value Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Backend* backend = backendArg(info, 0);
  if (!backend) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsObject()) {
    Napi::TypeError::New(env, "graph description expected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object desc = info[1].As<Napi::Object>();
  GraphSpec spec;
  Napi::Value channels = desc.Get("channels");
  if (!channels.IsArray() || channels.As<Napi::Array>().Length() < 1) {
    Napi::TypeError::New(env, "channels must be a non-empty array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array ch = channels.As<Napi::Array>();
  for (uint32_t i = 0; i < ch.Length(); ++i) {
    int c = ch.Get(i).As<Napi::Number>().Int32Value();
    if (c <= 0) {
      Napi::RangeError::New(env, "channels must be positive").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    spec.channels.push_back(c);
  }
  spec.spatial = desc.Get("spatial").As<Napi::Number>().Int32Value();
  if (spec.spatial <= 0) {
    Napi::RangeError::New(env, "spatial must be positive").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Value weights = desc.Get("weights");
  if (weights.IsArray()) {
    Napi::Array w = weights.As<Napi::Array>();
    for (uint32_t i = 0; i < w.Length(); ++i) {
      Napi::Value item = w.Get(i);
      if (!item.IsTypedArray() || item.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        Napi::TypeError::New(env, "weights must be Float32Arrays").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Float32Array f = item.As<Napi::Float32Array>();
      spec.weights.emplace_back(f.Data(), f.Data() + f.ElementLength());
    }
  }
  Napi::Value mil = desc.Get("mil");
  if (mil.IsString()) spec.mil = mil.As<Napi::String>().Utf8Value();
  Napi::Value blobs = desc.Get("blobs");
  if (blobs.IsArray()) {
    Napi::Array b = blobs.As<Napi::Array>();
    for (uint32_t i = 0; i < b.Length(); ++i) {
      Napi::Object item = b.Get(i).As<Napi::Object>();
      Napi::Uint8Array bytes = item.Get("bytes").As<Napi::Uint8Array>();
      spec.blobs.push_back({item.Get("path").As<Napi::String>().Utf8Value(),
                            std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ElementLength())});
    }
  }
  size_t inputs = spec.inputElements(), outputs = spec.outputElements();
  auto* worker = new CompileWorker(env, backend, std::move(spec));
  worker->inputs_ = inputs;
  worker->outputs_ = outputs;
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value Evaluate(const Napi::CallbackInfo& info) {
  GraphBox* box = graphArg(info);
  if (!box || !floatArrayArg(info, 1, box->inputElements, "input") || !floatArrayArg(info, 2, box->outputElements, "output")) {
    return info.Env().Undefined();
  }
  auto* worker = new EvaluateWorker(info.Env(), box->graph, info[1].As<Napi::Float32Array>(), info[2].As<Napi::Float32Array>());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// time(graph, input, warmup, iters, stop?: Int32Array) -> Float64Array of milliseconds per timed evaluation
Napi::Value Time(const Napi::CallbackInfo& info) {
  GraphBox* box = graphArg(info);
  if (!box || !floatArrayArg(info, 1, box->inputElements, "input")) return info.Env().Undefined();
  int warmup = info[2].As<Napi::Number>().Int32Value();
  int iters = info[3].As<Napi::Number>().Int32Value();
  if (warmup < 0 || iters < 1) {
    Napi::RangeError::New(info.Env(), "warmup must be >= 0 and iters >= 1").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Int32Array stop;
  if (info.Length() > 4 && info[4].IsTypedArray() && info[4].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    stop = info[4].As<Napi::Int32Array>();
  }
  auto* worker = new TimeWorker(info.Env(), box->graph, info[1].As<Napi::Float32Array>(), warmup, iters, stop);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsExternal()) info[0].As<Napi::External<GraphBox>>().Data()->graph.reset();
  return info.Env().Undefined();
}

// sgemm(n, warmup, iters) -> Float64Array of milliseconds per n x n x n product
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  int warmup = info[1].As<Napi::Number>().Int32Value();
  int iters = info[2].As<Napi::Number>().Int32Value();
  if (n < 1 || n > 16384 || warmup < 0 || iters < 1) {
    Napi::RangeError::New(info.Env(), "sgemm needs 1 <= n <= 16384, warmup >= 0, iters >= 1").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto* worker = new SgemmWorker(info.Env(), n, warmup, iters);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value Blas(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), blasDescription()); }

}  // namespace

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("availability", Napi::Function::New(env, AvailabilityOf));
  exports.Set("compiles", Napi::Function::New(env, Compiles));
  exports.Set("compile", Napi::Function::New(env, Compile));
  exports.Set("evaluate", Napi::Function::New(env, Evaluate));
  exports.Set("time", Napi::Function::New(env, Time));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("blas", Napi::Function::New(env, Blas));
  return exports;
}

}  // namespace tunelab

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return tunelab::InitAddon(env, exports); }

NODE_API_MODULE(tunelab_native, Init)
