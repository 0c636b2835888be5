#include "ane_objc.h"

#if defined(TUNELAB_ANE_FRAMEWORK)

#include <cxxabi.h>

#include <cstdlib>
#include <typeinfo>

namespace tunelab::objc {
namespace {

Class foundation(const char* name) {
  Class cls = objc_getClass(name);
  if (!cls) throw std::runtime_error(std::string("Foundation has no class ") + name);
  return cls;
}

}  // namespace

std::string currentExceptionName() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (!type) return "an exception";
  int status = 0;
  char* readable = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  // An Objective-C exception's type name is its class name already, which does not demangle.
  std::string name = status == 0 && readable ? readable : type->name();
  std::free(readable);
  return name;
}

Owned Owned::retain(id object) {
  Owned owned;
  if (object) owned.object_ = (id)CFRetain((CFTypeRef)object);
  return owned;
}

Owned& Owned::operator=(Owned&& other) noexcept {
  if (this != &other) {
    reset();
    object_ = std::exchange(other.object_, nullptr);
  }
  return *this;
}

void Owned::reset() {
  if (object_) CFRelease((CFTypeRef)std::exchange(object_, nullptr));
}

id string(const std::string& text) {
  return call<id>((id)foundation("NSString"), "+[NSString stringWithUTF8String:]", "stringWithUTF8String:", text.c_str());
}

id number(int value) { return call<id>((id)foundation("NSNumber"), "+[NSNumber numberWithInt:]", "numberWithInt:", value); }

id number(unsigned long value) {
  return call<id>((id)foundation("NSNumber"), "+[NSNumber numberWithUnsignedLong:]", "numberWithUnsignedLong:", value);
}

id data(const void* bytes, size_t size) {
  return call<id>((id)foundation("NSData"), "+[NSData dataWithBytes:length:]", "dataWithBytes:length:", bytes, (unsigned long)size);
}

id dictionary(const std::vector<std::pair<id, id>>& entries) {
  Class cls = foundation("NSDictionary");
  if (entries.empty()) return call<id>((id)cls, "+[NSDictionary dictionary]", "dictionary");
  std::vector<id> keys, objects;
  for (const auto& [key, object] : entries) {
    keys.push_back(key);
    objects.push_back(object);
  }
  return call<id>((id)cls, "+[NSDictionary dictionaryWithObjects:forKeys:count:]", "dictionaryWithObjects:forKeys:count:", (const id*)objects.data(),
                  (const id*)keys.data(), (unsigned long)entries.size());
}

id dictionary(std::initializer_list<std::pair<id, id>> entries) { return dictionary(std::vector<std::pair<id, id>>(entries)); }

id array(std::initializer_list<id> items) {
  std::vector<id> list(items);
  return call<id>((id)foundation("NSArray"), "+[NSArray arrayWithObjects:count:]", "arrayWithObjects:count:", (const id*)list.data(),
                  (unsigned long)list.size());
}

std::string utf8(id text) {
  if (!text) return "";
  const char* chars = call<const char*>(text, "-[NSString UTF8String]", "UTF8String");
  return chars ? chars : "";
}

std::string describeError(id error) {
  if (!error) return "no reason given";
  return utf8(call<id>(error, "-[NSError localizedDescription]", "localizedDescription"));
}

bool responds(Class cls, bool classMethod, const char* selector) {
  if (!cls) return false;
  Class where = classMethod ? object_getClass((id)cls) : cls;
  return class_respondsToSelector(where, sel_registerName(selector));
}

}  // namespace tunelab::objc

#endif
