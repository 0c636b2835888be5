// The Objective-C runtime's C API made safe to use from C++ for the ane backend: typed message
// sends, a barrier that turns Objective-C exceptions into std::runtime_error, owned references,
// autorelease pools, and Foundation objects built the way clang builds Objective-C literals (so the
// framework receives exactly what every working client of it sends).
//
// Compiled for Apple silicon, and on Linux against the recorded-call stand-ins (test/ane/standin/).
#pragma once

#if (defined(__APPLE__) && defined(__aarch64__)) || defined(TUNELAB_ANE_STANDIN)
#define TUNELAB_ANE_FRAMEWORK 1

#include <CoreFoundation/CoreFoundation.h>
#include <objc/message.h>
#include <objc/runtime.h>

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

extern "C" void* objc_autoreleasePoolPush(void);
extern "C" void objc_autoreleasePoolPop(void* pool);
// Foundation's C function, the directory every client of the in-memory model API writes into.
extern "C" id NSTemporaryDirectory(void);

namespace tunelab::objc {

// objc_msgSend cast to the exact type of one message (arm64 has no _stret or _fpret variants).
template <typename R, typename... A>
R send(id target, SEL selector, A... args) {
  using Fn = R (*)(id, SEL, A...);
  return reinterpret_cast<Fn>(objc_msgSend)(target, selector, args...);
}

// The name of the exception being handled: an Objective-C exception's class (NSException), or a
// demangled C++ type. Only valid inside a catch block.
std::string currentExceptionName();

// Runs f. On Apple's 64-bit runtimes an Objective-C exception unwinds through C++ frames as a
// foreign exception that `catch (const std::exception&)` never sees (left alone it would reach the
// addon's thread and terminate the worker); here it becomes an error naming the message.
template <typename F>
auto guarded(const std::string& message, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception&) {
    throw;
  } catch (...) {
    throw std::runtime_error("the AppleNeuralEngine framework raised " + currentExceptionName() + " in " + message);
  }
}

// A message whose exceptions are caught: `label` is how a person names it, e.g.
// "-[_ANEInMemoryModel compileWithQoS:options:error:]".
template <typename R, typename... A>
R call(id target, const char* label, const char* selector, A... args) {
  SEL sel = sel_registerName(selector);
  return guarded(label, [&] { return send<R>(target, sel, args...); });
}

// One owned (+1) reference, released when it goes: what the backend keeps beyond an autorelease pool.
class Owned {
 public:
  Owned() = default;
  // Takes ownership of an object returned autoreleased (or borrowed) by retaining it; nil stays nil.
  static Owned retain(id object);
  Owned(Owned&& other) noexcept : object_(std::exchange(other.object_, nullptr)) {}
  Owned& operator=(Owned&& other) noexcept;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { reset(); }
  id get() const { return object_; }
  explicit operator bool() const { return object_ != nullptr; }
  void reset();

 private:
  id object_ = nullptr;
};

// Objects returned autoreleased (by every Foundation constructor and most framework calls) live
// until the innermost pool is popped; without a pool they leak.
class AutoreleasePool {
 public:
  AutoreleasePool() : token_(objc_autoreleasePoolPush()) {}
  ~AutoreleasePool() { objc_autoreleasePoolPop(token_); }
  AutoreleasePool(const AutoreleasePool&) = delete;
  AutoreleasePool& operator=(const AutoreleasePool&) = delete;
  // Pops and pushes again: releases what has piled up in a long loop.
  void drain() {
    objc_autoreleasePoolPop(token_);
    token_ = objc_autoreleasePoolPush();
  }

 private:
  void* token_;
};

// Foundation objects, autoreleased, made with the constructors clang emits for literals:
// @"..." is a constant string (CFSTR is the same object from C), @0 / @1 +numberWithInt:,
// @(size_t) +numberWithUnsignedLong:, @{k: v, ...} +[NSDictionary dictionaryWithObjects:forKeys:count:]
// with the keys in the order written, @[...] +[NSArray arrayWithObjects:count:].
id string(const std::string& text);
id number(int value);
id number(unsigned long value);
id data(const void* bytes, size_t size);
id dictionary(const std::vector<std::pair<id, id>>& entries);
id dictionary(std::initializer_list<std::pair<id, id>> entries);
id array(std::initializer_list<id> items);
inline id constant(CFStringRef s) { return (id)s; }

// The UTF-8 text of an NSString ("" for nil).
std::string utf8(id string);
// An NSError's localized description, or a sentence saying there was none.
std::string describeError(id error);

// Whether class `cls` (instance method) or its metaclass (class method) answers `selector`.
bool responds(Class cls, bool classMethod, const char* selector);

}  // namespace tunelab::objc

#endif
