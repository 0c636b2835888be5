// Stand-ins, compiled on Linux, for what native/src/ane_backend.cc calls on a Mac: the Objective-C
// runtime (classes, selectors, objc_msgSend, autorelease pools), the Foundation classes it sends
// messages to, CoreFoundation, IOSurface, the AppleNeuralEngine framework's four classes, dlopen,
// mach_absolute_time and sysctlbyname. Every call is written to stdout as a JSON line with its
// receiver, selector and arguments as the callee sees them (an object's class, how it was made, its
// contents), so a test can compare the backend's sequence with the one known to work on a real ANE.
//
// The objects follow Cocoa's memory rules (a Create/Copy function or +1 retain gives an owned
// reference; convenience constructors return autoreleased objects; containers retain what they hold)
// and never really die: a freed object stays as a zombie, so an over-release or a message to a freed
// object is reported instead of corrupting memory. The framework checks what a compiler would need:
// the model directory on disk holds the program and weight files it was given, each BLOBFILE in the
// MIL names a weight file and an offset where a chunk header is, a program is loaded before it is
// evaluated, surfaces are unlocked while the framework reads them.
#include "standin.h"

#include <CoreFoundation/CoreFoundation.h>
#include <IOSurface/IOSurface.h>
#include <dirent.h>
#include <mach/mach_time.h>
#include <objc/runtime.h>
#include <sys/stat.h>
#include <sys/sysctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

// The runtime's opaque types, completed here and nowhere else.
struct objc_object {
  virtual ~objc_object() = default;
};
struct objc_selector {
  std::string name;
};
struct objc_class : objc_object {
  std::string name;
  objc_class* meta = nullptr;  // class methods live on the metaclass, as in the real runtime
  std::set<std::string> methods;
  bool isMeta = false;
};
struct objc_method {};

// What an Objective-C exception looks like to C++ code on Apple's 64-bit runtimes: an object thrown
// through the C++ unwinder whose type is not a std::exception. Its type name is the class name.
struct NSException {
  std::string reason;
};

namespace standin {
namespace {

enum class Kind { String, Number, Data, Dictionary, Array, Error, Surface, SurfaceObject, Descriptor, Model, Request };

struct Obj : objc_object {
  Kind kind = Kind::String;
  std::string cls;  // the class as a person reads it: NSDictionary, CFMutableDictionary, _ANEInMemoryModel
  std::string via;  // the call that made it
  int serial = 0;
  int refs = 1;
  bool immortal = false;
  bool dead = false;
  std::string text;            // String, Error
  std::vector<uint8_t> bytes;  // Data, Surface
  std::string numType;         // Number: the C type it was made from
  long long num = 0;
  std::vector<std::pair<Obj*, Obj*>> entries;  // Dictionary, in the order it was built
  std::vector<Obj*> items;                     // Array
  std::vector<Obj*> holds;                     // retained for as long as this object lives
  // _ANEInMemoryModel
  Obj* descriptor = nullptr;
  std::string hex;
  bool compiled = false, loaded = false;
  // IOSurface
  int locks = 0;
  uint32_t lockOptions = 0;
};

struct State {
  std::vector<Obj*> all;
  std::map<const void*, Obj*> objects;
  std::map<std::string, objc_class*> classes;
  std::set<const void*> classPointers;
  std::map<std::string, objc_selector*> selectors;
  std::vector<std::vector<Obj*>> pools;
  std::vector<std::string> problems;
  std::map<std::string, Obj*> constants;
  // Options.
  std::string os = "15.4";
  std::string tmp;
  bool noFramework = false;
  std::set<std::string> missing, raise, nils;
  std::map<std::string, int> fail;  // selector -> how many more calls fail (-1: all)
  // Framework state.
  int serials = 0;
  int loaded = 0;
  int compiles = 0;
  uint64_t ticks = 0;
  std::string dlerror;
  int events = 0;
};

State& S() {
  static State* state = new State();  // never destroyed: static destructors may still log
  return *state;
}

// ---------------------------------------------------------------------------------------------
// JSON

std::string esc(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += char(c);
    else if (c == '\n') out += "\\n";
    else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += char(c);
  }
  return out + "\"";
}

std::string fnv(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  char buf[20];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  return buf;
}

void write(const std::string& line) {
  // Unbuffered: a backend that lets an exception escape aborts the process, and the lines written
  // before that must survive to show where it happened.
  std::string text = line + "\n";
  size_t at = 0;
  while (at < text.size()) {
    ssize_t n = ::write(1, text.data() + at, text.size() - at);
    if (n <= 0) return;
    at += size_t(n);
  }
}

void event(const std::string& body) {
  write("{\"n\":" + std::to_string(++S().events) + "," + body + "}");
}

void problem(const std::string& what) {
  S().problems.push_back(what);
  event("\"ev\":\"problem\",\"what\":" + esc(what));
}

// ---------------------------------------------------------------------------------------------
// Objects and memory

Obj* make(Kind kind, const std::string& cls, const std::string& via) {
  Obj* o = new Obj();
  o->kind = kind;
  o->cls = cls;
  o->via = via;
  o->serial = ++S().serials;
  S().all.push_back(o);
  S().objects[static_cast<objc_object*>(o)] = o;
  return o;
}

Obj* known(const void* p) {
  auto it = S().objects.find(p);
  return it == S().objects.end() ? nullptr : it->second;
}

bool isClass(const void* p) { return S().classPointers.count(p) != 0; }

std::string label(const Obj* o) { return o->cls + "#" + std::to_string(o->serial); }

void retain(Obj* o) {
  if (!o || o->immortal) return;
  if (o->dead) {
    problem("retain of freed " + label(o));
    return;
  }
  ++o->refs;
}

void release(Obj* o) {
  if (!o || o->immortal) return;
  if (o->dead) {
    problem("release of freed " + label(o) + " (over-release)");
    return;
  }
  if (--o->refs > 0) return;
  o->dead = true;
  if (o->kind == Kind::Model && o->loaded) problem(label(o) + " freed while its program is still loaded");
  for (Obj* held : o->holds) release(held);
}

Obj* autoreleased(Obj* o) {
  if (S().pools.empty()) {
    problem(label(o) + " autoreleased with no pool in place: it leaks");
    return o;
  }
  S().pools.back().push_back(o);
  return o;
}

Obj* hold(Obj* owner, Obj* o) {
  if (o) {
    retain(o);
    owner->holds.push_back(o);
  }
  return o;
}

Obj* constantString(const std::string& text) {
  Obj*& c = S().constants[text];
  if (!c) {
    c = make(Kind::String, "NSString", "constant");
    c->text = text;
    c->immortal = true;
  }
  return c;
}

Obj* string(const std::string& text, const std::string& cls, const std::string& via) {
  Obj* o = make(Kind::String, cls, via);
  o->text = text;
  return o;
}

Obj* error(const std::string& message) {
  Obj* o = make(Kind::Error, "NSError", "framework");
  o->text = message;
  return autoreleased(o);
}

bool isDictionary(const Obj* o) { return o && o->kind == Kind::Dictionary; }
bool isData(const Obj* o) { return o && o->kind == Kind::Data; }

Obj* lookup(const Obj* dict, const std::string& key) {
  if (!isDictionary(dict)) return nullptr;
  for (const auto& [k, v] : dict->entries)
    if (k && k->kind == Kind::String && k->text == key) return v;
  return nullptr;
}

std::string describe(const void* p, int depth = 0) {
  if (!p) return "null";
  if (isClass(p)) return "{\"class\":" + esc(static_cast<const objc_class*>(static_cast<const objc_object*>(p))->name) + "}";
  Obj* o = known(p);
  if (!o) {
    char buf[32];
    snprintf(buf, sizeof buf, "%p", p);
    return std::string("{\"ptr\":\"") + buf + "\"}";
  }
  std::string s = "{\"o\":" + std::to_string(o->serial) + ",\"cls\":" + esc(o->cls) + ",\"via\":" + esc(o->via);
  if (o->dead) s += ",\"dead\":true";
  if (depth > 6) return s + "}";
  switch (o->kind) {
    case Kind::String: s += ",\"str\":" + esc(o->text); break;
    case Kind::Error: s += ",\"message\":" + esc(o->text); break;
    case Kind::Number: s += ",\"num\":" + esc(o->numType) + ",\"value\":" + std::to_string(o->num); break;
    case Kind::Data: s += ",\"len\":" + std::to_string(o->bytes.size()) + ",\"fnv\":\"" + fnv(o->bytes.data(), o->bytes.size()) + "\""; break;
    case Kind::Surface: s += ",\"len\":" + std::to_string(o->bytes.size()); break;
    case Kind::Dictionary: {
      s += ",\"entries\":[";
      for (size_t i = 0; i < o->entries.size(); ++i) {
        if (i) s += ",";
        s += "[" + describe(static_cast<objc_object*>(o->entries[i].first), depth + 1) + "," +
             describe(static_cast<objc_object*>(o->entries[i].second), depth + 1) + "]";
      }
      s += "]";
      break;
    }
    case Kind::Array: {
      s += ",\"items\":[";
      for (size_t i = 0; i < o->items.size(); ++i) s += (i ? "," : "") + describe(static_cast<objc_object*>(o->items[i]), depth + 1);
      s += "]";
      break;
    }
    default: break;
  }
  return s + "}";
}

std::string describeObj(const Obj* o) { return describe(o ? static_cast<const objc_object*>(o) : nullptr); }

Obj* objectArg(intptr_t raw, const std::string& where) {
  const void* p = reinterpret_cast<const void*>(raw);
  if (!p) return nullptr;
  Obj* o = known(p);
  if (!o) problem(where + " was given something that is not an object");
  else if (o->dead) problem(where + " was given freed " + label(o));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Classes and selectors

objc_class* defineClass(const std::string& name, std::set<std::string> classMethods, std::set<std::string> instanceMethods) {
  auto* meta = new objc_class();
  meta->name = name;
  meta->isMeta = true;
  meta->methods = std::move(classMethods);
  auto* cls = new objc_class();
  cls->name = name;
  cls->meta = meta;
  cls->methods = std::move(instanceMethods);
  for (const char* m : {"retain", "release", "autorelease", "description"}) cls->methods.insert(m);
  S().classes[name] = cls;
  S().classPointers.insert(static_cast<objc_object*>(cls));
  S().classPointers.insert(static_cast<objc_object*>(meta));
  return cls;
}

void defineClasses() {
  defineClass("NSString", {"stringWithUTF8String:"}, {"UTF8String"});
  defineClass("NSNumber",
              {"numberWithInt:", "numberWithUnsignedInt:", "numberWithLong:", "numberWithUnsignedLong:", "numberWithLongLong:",
               "numberWithUnsignedLongLong:"},
              {});
  defineClass("NSData", {"dataWithBytes:length:"}, {"bytes", "length"});
  defineClass("NSDictionary", {"dictionaryWithObjects:forKeys:count:", "dictionary"}, {"count"});
  defineClass("NSArray", {"arrayWithObjects:count:"}, {"count"});
  defineClass("NSError", {}, {"localizedDescription"});
  defineClass("_ANEInMemoryModelDescriptor", {"modelWithMILText:weights:optionsPlist:"}, {});
  defineClass("_ANEInMemoryModel", {"inMemoryModelWithDescriptor:"},
              {"hexStringIdentifier", "compileWithQoS:options:error:", "loadWithQoS:options:error:",
               "evaluateWithQoS:options:request:error:", "unloadWithQoS:error:"});
  defineClass("_ANERequest", {"requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:"}, {});
  defineClass("_ANEIOSurfaceObject", {"objectWithIOSurface:"}, {});
}

// The Objective-C class an instance answers to (CoreFoundation-made objects answer to their
// toll-free bridged Foundation class, as on macOS).
objc_class* classOf(const Obj* o) {
  std::string name = o->cls;
  if (name == "CFString") name = "NSString";
  if (name == "CFNumber") name = "NSNumber";
  if (name == "CFData") name = "NSData";
  if (name == "CFArray") name = "NSArray";
  if (name == "CFDictionary" || name == "CFMutableDictionary") name = "NSDictionary";
  if (name == "CFError") name = "NSError";
  auto it = S().classes.find(name);
  return it == S().classes.end() ? nullptr : it->second;
}

bool responds(const objc_class* cls, const std::string& sel) {
  if (!cls) return false;
  if (S().missing.count(sel)) return false;
  return cls->methods.count(sel) != 0;
}

// How each message's arguments are laid out, as the framework and Foundation declare them:
// @ object, I unsigned int, i int, Q NSUInteger, q long long, * C string, v pointer,
// A C array of objects (its length is the message's count argument), E NSError** out-parameter,
// S an IOSurfaceRef. The return: @ object, B BOOL, * C string, v nothing, Q NSUInteger.
struct Signature {
  std::string args;
  char ret;
};

const std::map<std::string, Signature>& signatures() {
  static const std::map<std::string, Signature> table = {
      {"stringWithUTF8String:", {"*", '@'}},
      {"UTF8String", {"", '*'}},
      {"numberWithInt:", {"i", '@'}},
      {"numberWithUnsignedInt:", {"I", '@'}},
      {"numberWithLong:", {"q", '@'}},
      {"numberWithUnsignedLong:", {"Q", '@'}},
      {"numberWithLongLong:", {"q", '@'}},
      {"numberWithUnsignedLongLong:", {"Q", '@'}},
      {"dataWithBytes:length:", {"vQ", '@'}},
      {"bytes", {"", 'v'}},
      {"length", {"", 'Q'}},
      {"count", {"", 'Q'}},
      {"dictionaryWithObjects:forKeys:count:", {"AAQ", '@'}},
      {"dictionary", {"", '@'}},
      {"arrayWithObjects:count:", {"AQ", '@'}},
      {"localizedDescription", {"", '@'}},
      {"description", {"", '@'}},
      {"retain", {"", '@'}},
      {"release", {"", 'v'}},
      {"autorelease", {"", '@'}},
      {"modelWithMILText:weights:optionsPlist:", {"@@@", '@'}},
      {"inMemoryModelWithDescriptor:", {"@", '@'}},
      {"hexStringIdentifier", {"", '@'}},
      {"compileWithQoS:options:error:", {"I@E", 'B'}},
      {"loadWithQoS:options:error:", {"I@E", 'B'}},
      {"evaluateWithQoS:options:request:error:", {"I@@E", 'B'}},
      {"unloadWithQoS:error:", {"IE", 'B'}},
      {"objectWithIOSurface:", {"S", '@'}},
      {"requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:", {"@@@@@@@", '@'}},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// The framework's checks

std::vector<std::string> listFiles(const std::string& dir, const std::string& prefix = "") {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = dir + "/" + name;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      for (const auto& f : listFiles(path, prefix + name + "/")) out.push_back(f);
    } else out.push_back(prefix + name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool readFile(const std::string& path, std::vector<uint8_t>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

uint32_t u32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[at + size_t(i)];
  return v;
}

std::string modelDir(const Obj* model) { return S().tmp + "/" + model->hex; }

// What the compiler reads: <tmp>/<hex>/model.mil and every weight file, which must be the ones the
// descriptor was given; each BLOBFILE(path, offset) must land on a chunk header in a given file.
bool checkCompileInputs(const Obj* model, std::string& why) {
  const Obj* desc = model->descriptor;
  const Obj* mil = desc->holds.size() > 0 ? desc->holds[0] : nullptr;
  const Obj* weights = desc->holds.size() > 1 ? desc->holds[1] : nullptr;
  const std::string dir = modelDir(model);
  bool ok = true;
  std::string files = "[";
  for (const auto& f : listFiles(dir)) {
    std::vector<uint8_t> bytes;
    readFile(dir + "/" + f, bytes);
    std::string same = "null";
    if (f == "model.mil" && mil) same = bytes == mil->bytes ? "\"mil\"" : "false";
    if (weights) {
      for (const auto& [k, v] : weights->entries) {
        Obj* data = lookup(v, "data");
        if (k && k->text == "@model_path/" + f && data) same = bytes == data->bytes ? esc(k->text) : "false";
      }
    }
    files += std::string(files.size() > 1 ? "," : "") + "{\"path\":" + esc(f) + ",\"len\":" + std::to_string(bytes.size()) +
             ",\"fnv\":\"" + fnv(bytes.data(), bytes.size()) + "\",\"matches\":" + same + "}";
  }
  files += "]";
  event("\"ev\":\"disk\",\"model\":" + std::to_string(model->serial) + ",\"files\":" + files);

  std::vector<uint8_t> onDisk;
  if (!mil || !readFile(dir + "/model.mil", onDisk) || onDisk != mil->bytes) {
    why = "model.mil is missing from " + dir + " or differs from the MIL text";
    return false;
  }
  if (weights) {
    for (const auto& [k, v] : weights->entries) {
      Obj* data = lookup(v, "data");
      const std::string rel = k && k->text.rfind("@model_path/", 0) == 0 ? k->text.substr(12) : "";
      std::vector<uint8_t> file;
      if (rel.empty() || !data || !readFile(dir + "/" + rel, file) || file != data->bytes) {
        why = "weight file " + (k ? k->text : std::string("?")) + " is missing from " + dir + " or differs from its dictionary entry";
        ok = false;
      }
    }
  }
  const std::string text(mil->bytes.begin(), mil->bytes.end());
  static const std::regex blobfile(
      R"re(tensor<fp16,\s*\[(\d+),\s*(\d+),\s*1,\s*1\]>\s*\(\s*BLOBFILE\s*\(\s*path\s*=\s*string\("([^"]+)"\)\s*,\s*offset\s*=\s*uint64\((\d+)\)\s*\)\s*\))re");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), blobfile); it != std::sregex_iterator(); ++it) {
    const size_t rows = std::stoul((*it)[1]), cols = std::stoul((*it)[2]), offset = std::stoul((*it)[4]);
    const std::string path = (*it)[3];
    const size_t size = rows * cols * 2;
    Obj* entry = lookup(weights, path);
    Obj* data = lookup(entry, "data");
    std::string issue;
    bool fatal = false;
    if (!data) issue = "no weights entry", fatal = true;
    else {
      const auto& b = data->bytes;
      if (b.size() < 64 || b[0] != 0x01 || b[4] != 0x02) issue = "bad file header";
      if (offset + 64 + size > b.size()) issue = "tensor runs past the end of the file", fatal = true;
      else if (u32(b, offset) != 0xdeadbeef || b[offset + 4] != 0x01) issue = "no chunk header at the offset", fatal = true;
      else if (u32(b, offset + 8) != size) issue = "chunk header's size is " + std::to_string(u32(b, offset + 8)) + ", the tensor needs " + std::to_string(size);
      else if (u32(b, offset + 16) != offset + 64) issue = "chunk header's data offset is " + std::to_string(u32(b, offset + 16)) + ", not " + std::to_string(offset + 64);
    }
    event("\"ev\":\"blobfile\",\"path\":" + esc(path) + ",\"offset\":" + std::to_string(offset) + ",\"shape\":[" + std::to_string(rows) +
          "," + std::to_string(cols) + "],\"ok\":" + (issue.empty() ? "true" : "false") + (issue.empty() ? "" : ",\"issue\":" + esc(issue)));
    if (fatal) {
      why = "BLOBFILE " + path + " at offset " + std::to_string(offset) + ": " + issue;
      ok = false;
    }
  }
  return ok;
}

Obj* surfaceOf(const Obj* array, size_t i) {
  if (!array || array->kind != Kind::Array || array->items.size() <= i) return nullptr;
  const Obj* wrapper = array->items[i];
  if (!wrapper || wrapper->kind != Kind::SurfaceObject || wrapper->holds.empty()) return nullptr;
  return wrapper->holds[0];
}

// ---------------------------------------------------------------------------------------------
// Message implementations

struct Call {
  std::string sel;
  const void* self;
  bool toClass;
  objc_class* cls;
  std::vector<intptr_t> raw;
};

Obj* number(const std::string& type, long long value, const std::string& via) {
  Obj* n = make(Kind::Number, "NSNumber", via);
  n->numType = type;
  n->num = value;
  return autoreleased(n);
}

void setError(intptr_t out, const std::string& message) {
  if (out) *reinterpret_cast<objc_object**>(out) = static_cast<objc_object*>(error(message));
}

intptr_t asRaw(Obj* o) { return reinterpret_cast<intptr_t>(o ? static_cast<objc_object*>(o) : nullptr); }

intptr_t perform(const Call& c, Obj* self) {
  const std::string& s = c.sel;
  const std::string via = std::string(c.toClass ? "+[" : "-[") + c.cls->name + " " + s + "]";
  const auto& a = c.raw;
  if (s == "retain") return retain(self), asRaw(self);
  if (s == "release") return release(self), 0;
  if (s == "autorelease") return asRaw(autoreleased(self));
  if (s == "description" || s == "localizedDescription") return asRaw(autoreleased(string(self ? self->text : "", "NSString", via)));
  if (s == "UTF8String") return reinterpret_cast<intptr_t>(self->text.c_str());
  if (s == "bytes") return reinterpret_cast<intptr_t>(self->bytes.data());
  if (s == "length") return intptr_t(self->bytes.size());
  if (s == "count") return intptr_t(self->kind == Kind::Array ? self->items.size() : self->entries.size());
  if (s == "stringWithUTF8String:") return asRaw(autoreleased(string(reinterpret_cast<const char*>(a[0]), "NSString", via)));
  if (s == "numberWithInt:") return asRaw(number("int", int32_t(a[0]), via));
  if (s == "numberWithUnsignedInt:") return asRaw(number("unsigned int", uint32_t(a[0]), via));
  if (s == "numberWithLong:") return asRaw(number("long", (long long)a[0], via));
  if (s == "numberWithUnsignedLong:") return asRaw(number("unsigned long", (long long)a[0], via));
  if (s == "numberWithLongLong:") return asRaw(number("long long", (long long)a[0], via));
  if (s == "numberWithUnsignedLongLong:") return asRaw(number("unsigned long long", (long long)a[0], via));
  if (s == "dataWithBytes:length:") {
    Obj* d = make(Kind::Data, "NSData", via);
    const auto* p = reinterpret_cast<const uint8_t*>(a[0]);
    d->bytes.assign(p, p + size_t(a[1]));
    return asRaw(autoreleased(d));
  }
  if (s == "dictionary" || s == "dictionaryWithObjects:forKeys:count:") {
    Obj* d = make(Kind::Dictionary, "NSDictionary", via);
    const size_t n = s == "dictionary" ? 0 : size_t(a[2]);
    for (size_t i = 0; i < n; ++i) {
      Obj* value = objectArg(reinterpret_cast<const intptr_t*>(a[0])[i], via);
      Obj* key = objectArg(reinterpret_cast<const intptr_t*>(a[1])[i], via);
      if (!value || !key) throw NSException{"*** -[__NSPlaceholderDictionary initWithObjects:forKeys:count:]: attempt to insert nil object"};
      d->entries.push_back({hold(d, key), hold(d, value)});
    }
    return asRaw(autoreleased(d));
  }
  if (s == "arrayWithObjects:count:") {
    Obj* arr = make(Kind::Array, "NSArray", via);
    for (size_t i = 0; i < size_t(a[1]); ++i) {
      Obj* item = objectArg(reinterpret_cast<const intptr_t*>(a[0])[i], via);
      if (!item) throw NSException{"*** -[__NSPlaceholderArray initWithObjects:count:]: attempt to insert nil object"};
      arr->items.push_back(hold(arr, item));
    }
    return asRaw(autoreleased(arr));
  }
  if (s == "modelWithMILText:weights:optionsPlist:") {
    Obj* mil = objectArg(a[0], via);
    Obj* weights = objectArg(a[1], via);
    if (!isData(mil) || !isDictionary(weights)) {
      problem(via + " needs MIL text as data and a weights dictionary");
      return 0;
    }
    for (const auto& [k, v] : weights->entries) {
      if (!k || k->kind != Kind::String || !isDictionary(v) || !lookup(v, "offset") || !isData(lookup(v, "data"))) {
        problem(via + ": weights entry " + (k ? k->text : std::string("?")) + " is not {offset, data}");
        return 0;
      }
    }
    Obj* d = make(Kind::Descriptor, "_ANEInMemoryModelDescriptor", via);
    hold(d, mil);
    hold(d, weights);
    return asRaw(autoreleased(d));
  }
  if (s == "inMemoryModelWithDescriptor:") {
    Obj* desc = objectArg(a[0], via);
    if (!desc || desc->kind != Kind::Descriptor) return 0;
    Obj* m = make(Kind::Model, "_ANEInMemoryModel", via);
    m->descriptor = hold(m, desc);
    std::string seed;
    for (Obj* h : desc->holds) seed += describeObj(h);
    m->hex = fnv(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()) + fnv(desc->holds[0]->bytes.data(), desc->holds[0]->bytes.size());
    return asRaw(autoreleased(m));
  }
  if (s == "hexStringIdentifier") return asRaw(autoreleased(string(self->hex, "NSString", via)));
  if (s == "compileWithQoS:options:error:") {
    std::string why;
    ++S().compiles;
    if (!checkCompileInputs(self, why)) {
      setError(a[2], "the compiler could not read its inputs: " + why);
      return 0;
    }
    self->compiled = true;
    return 1;
  }
  if (s == "loadWithQoS:options:error:") {
    if (!self->compiled) {
      problem(label(self) + " loaded before it was compiled");
      setError(a[2], "not compiled");
      return 0;
    }
    if (self->loaded) problem(label(self) + " loaded twice");
    self->loaded = true;
    ++S().loaded;
    return 1;
  }
  if (s == "unloadWithQoS:error:") {
    if (!self->loaded) {
      problem(label(self) + " unloaded but not loaded");
      return 0;
    }
    self->loaded = false;
    --S().loaded;
    return 1;
  }
  if (s == "objectWithIOSurface:") {
    Obj* surface = objectArg(a[0], via);
    if (!surface || surface->kind != Kind::Surface) return 0;
    Obj* w = make(Kind::SurfaceObject, "_ANEIOSurfaceObject", via);
    hold(w, surface);
    return asRaw(autoreleased(w));
  }
  if (s == "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:") {
    Obj* r = make(Kind::Request, "_ANERequest", via);
    for (size_t i = 0; i < 7; ++i) hold(r, objectArg(a[i], via));
    if (!surfaceOf(objectArg(a[0], via), 0) || !surfaceOf(objectArg(a[2], via), 0)) problem(via + " needs arrays of _ANEIOSurfaceObject");
    return asRaw(autoreleased(r));
  }
  if (s == "evaluateWithQoS:options:request:error:") {
    Obj* request = objectArg(a[2], via);
    if (!self->loaded) {
      problem(label(self) + " evaluated while not loaded");
      setError(a[3], "program not loaded");
      return 0;
    }
    if (!request || request->kind != Kind::Request || request->holds.size() < 3) return 0;
    Obj* in = surfaceOf(request->holds[0], 0);
    Obj* out = surfaceOf(request->holds[2], 0);
    if (!in || !out) return 0;
    if (in->locks || out->locks) problem(label(self) + " evaluated while a surface of its request is locked");
    const size_t inputs = in->bytes.size() / 4;
    std::vector<float> input(inputs);
    std::memcpy(input.data(), in->bytes.data(), inputs * 4);
    for (size_t j = 0; j < out->bytes.size() / 4; ++j) {
      float v = expectedOutput(input.data(), inputs, j);
      std::memcpy(out->bytes.data() + 4 * j, &v, 4);
    }
    return 1;
  }
  problem("the stand-in has no implementation of " + via);
  return 0;
}

}  // namespace
}  // namespace standin

using namespace standin;

// ---------------------------------------------------------------------------------------------
// The Objective-C runtime

extern "C" {

Class objc_getClass(const char* name) {
  auto it = S().classes.find(name ? name : "");
  Class found = it == S().classes.end() ? nullptr : it->second;
  event("\"ev\":\"fn\",\"fn\":\"objc_getClass\",\"args\":[" + esc(name ? name : "") + "],\"ret\":" + describe(found ? static_cast<objc_object*>(found) : nullptr));
  return found;
}

SEL sel_registerName(const char* str) {
  objc_selector*& sel = S().selectors[str];
  if (!sel) sel = new objc_selector{str};
  return sel;
}

const char* sel_getName(SEL sel) { return sel ? sel->name.c_str() : "<null selector>"; }

Class object_getClass(id obj) {
  if (!obj) return nullptr;
  if (isClass(obj)) return static_cast<objc_class*>(static_cast<objc_object*>(obj))->meta;
  Obj* o = known(obj);
  return o ? classOf(o) : nullptr;
}

const char* class_getName(Class cls) { return cls ? cls->name.c_str() : "nil"; }

BOOL class_respondsToSelector(Class cls, SEL sel) {
  const bool yes = responds(cls, sel ? sel->name : "");
  event("\"ev\":\"fn\",\"fn\":\"class_respondsToSelector\",\"args\":[" +
        (cls ? esc(std::string(cls->isMeta ? "+" : "-") + cls->name) : std::string("null")) + "," + esc(sel ? sel->name : "") +
        "],\"ret\":" + (yes ? "true" : "false"));
  return yes;
}

Method class_getClassMethod(Class cls, SEL name) {
  static objc_method m;
  return cls && responds(cls->meta, name ? name->name : "") ? &m : nullptr;
}

Method class_getInstanceMethod(Class cls, SEL name) {
  static objc_method m;
  return responds(cls, name ? name->name : "") ? &m : nullptr;
}

void* objc_autoreleasePoolPush(void) {
  S().pools.emplace_back();
  event("\"ev\":\"pool\",\"op\":\"push\",\"depth\":" + std::to_string(S().pools.size()));
  return reinterpret_cast<void*>(uintptr_t(S().pools.size()));
}

void objc_autoreleasePoolPop(void* token) {
  const size_t depth = size_t(reinterpret_cast<uintptr_t>(token));
  if (depth == 0 || depth > S().pools.size()) {
    problem("autorelease pool popped out of order or twice");
    return;
  }
  event("\"ev\":\"pool\",\"op\":\"pop\",\"depth\":" + std::to_string(depth));
  while (S().pools.size() >= depth) {
    std::vector<Obj*> drained = std::move(S().pools.back());
    S().pools.pop_back();
    for (Obj* o : drained) release(o);
  }
}

// Declared without a prototype in <objc/message.h>: callers cast it to each message's exact type.
// Seven integer-class arguments after the selector cover every message the backend sends; the
// ones a shorter message does not pass are never read (each selector's layout says how many).
intptr_t objc_msgSend(id self, SEL op, intptr_t a0, intptr_t a1, intptr_t a2, intptr_t a3, intptr_t a4, intptr_t a5, intptr_t a6) {
  const std::string sel = op ? op->name : "<null selector>";
  const intptr_t given[] = {a0, a1, a2, a3, a4, a5, a6};
  const auto sig = signatures().find(sel);
  std::string layout;
  if (sig != signatures().end()) layout = sig->second.args;
  else for (char ch : sel) if (ch == ':') layout += 'x';
  Call call{sel, self, self && isClass(self), nullptr, {}};
  for (size_t i = 0; i < layout.size() && i < 7; ++i) {
    intptr_t v = given[i];
    if (layout[i] == 'I') v = intptr_t(uint32_t(v));  // the upper half of a 32-bit argument's register is undefined
    if (layout[i] == 'i') v = intptr_t(int32_t(v));
    call.raw.push_back(v);
  }
  size_t count = 0;  // the length of 'A' arrays: the message's last NSUInteger argument
  for (size_t i = 0; i < layout.size(); ++i)
    if (layout[i] == 'Q') count = size_t(call.raw[i]);
  std::string args = "[";
  for (size_t i = 0; i < call.raw.size(); ++i) {
    if (i) args += ",";
    const intptr_t v = call.raw[i];
    switch (layout[i]) {
      case '@':
      case 'S': args += describe(reinterpret_cast<const void*>(v)); break;
      case 'I':
      case 'i':
      case 'Q':
      case 'q': args += "{\"int\":" + std::to_string((long long)v) + "}"; break;
      case '*': args += v ? "{\"cstr\":" + esc(reinterpret_cast<const char*>(v)) + "}" : "null"; break;
      case 'E': {
        auto* out = reinterpret_cast<objc_object**>(v);
        args += !out ? "null" : *out ? "{\"errorOut\":\"not nil\"}" : "{\"errorOut\":true}";
        break;
      }
      case 'A': {
        args += "[";
        for (size_t k = 0; k < count; ++k) args += (k ? "," : "") + describe(reinterpret_cast<const void* const*>(v)[k]);
        args += "]";
        break;
      }
      default: {
        char buf[32];
        snprintf(buf, sizeof buf, "\"0x%llx\"", (unsigned long long)v);
        args += buf;
      }
    }
  }
  args += "]";
  std::string recv;
  Obj* target = nullptr;
  if (!self) recv = "null";
  else if (call.toClass) {
    call.cls = static_cast<objc_class*>(static_cast<objc_object*>(self));
    recv = "{\"class\":" + esc(call.cls->name) + "}";
  } else {
    target = known(self);
    recv = describe(self);
    if (target) call.cls = classOf(target);
  }
  const std::string head = "\"ev\":\"msg\",\"recv\":" + recv + ",\"sel\":" + esc(sel) + ",\"args\":" + args;
  if (!self) {
    problem("message " + sel + " sent to nil");
    event(head + ",\"ret\":null");
    return 0;
  }
  if (target && target->dead) problem("message " + sel + " sent to freed " + label(target));
  const bool understood = call.cls && responds(call.toClass ? call.cls->meta : call.cls, sel);
  if (!understood || S().raise.count(sel)) {
    const std::string reason = !understood ? std::string(call.toClass ? "+[" : "-[") + (call.cls ? call.cls->name : "?") + " " + sel +
                                            "]: unrecognized selector sent to " + (call.toClass ? "class" : "instance")
                                      : "injected exception in " + sel;
    event(head + ",\"raised\":\"NSException\",\"reason\":" + esc(reason));
    throw NSException{reason};
  }
  const char ret = sig != signatures().end() ? sig->second.ret : '@';
  auto failing = S().fail.find(sel);
  if (failing != S().fail.end() && failing->second != 0) {
    if (failing->second > 0) --failing->second;
    if (ret == 'B') {
      size_t errorArg = layout.find('E');
      if (errorArg != std::string::npos) setError(call.raw[errorArg], "injected failure of " + sel);
      event(head + ",\"ret\":false,\"injected\":\"fail\"");
    } else event(head + ",\"ret\":null,\"injected\":\"fail\"");
    return 0;
  }
  if (S().nils.count(sel)) {
    event(head + ",\"ret\":null,\"injected\":\"nil\"");
    return 0;
  }
  const intptr_t result = perform(call, target);
  std::string retText;
  switch (ret) {
    case 'B': retText = result ? "true" : "false"; break;
    case 'v': retText = "null"; break;
    case 'Q': retText = std::to_string((long long)result); break;
    case '*': retText = result ? esc(reinterpret_cast<const char*>(result)) : "null"; break;
    default: retText = describe(reinterpret_cast<const void*>(result));
  }
  event(head + ",\"ret\":" + retText);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Foundation functions

id NSTemporaryDirectory(void) {
  Obj* s = autoreleased(string(S().tmp + "/", "NSString", "NSTemporaryDirectory()"));
  event("\"ev\":\"fn\",\"fn\":\"NSTemporaryDirectory\",\"args\":[],\"ret\":" + describeObj(s));
  return static_cast<objc_object*>(s);
}

// ---------------------------------------------------------------------------------------------
// CoreFoundation

const CFDictionaryKeyCallBacks kCFTypeDictionaryKeyCallBacks = {};
const CFDictionaryValueCallBacks kCFTypeDictionaryValueCallBacks = {};
const CFArrayCallBacks kCFTypeArrayCallBacks = {};

CFStringRef __CFStringMakeConstantString(const char* cStr) {
  return reinterpret_cast<CFStringRef>(static_cast<objc_object*>(constantString(cStr)));
}

static void fnEvent(const std::string& fn, const std::string& args, const std::string& ret) {
  event("\"ev\":\"fn\",\"fn\":" + esc(fn) + ",\"args\":[" + args + "],\"ret\":" + ret);
}

CFTypeRef CFRetain(CFTypeRef cf) {
  Obj* o = objectArg(reinterpret_cast<intptr_t>(cf), "CFRetain");
  fnEvent("CFRetain", describe(cf), "null");
  if (!cf) {
    problem("CFRetain(NULL) crashes");
    return cf;
  }
  retain(o);
  return cf;
}

void CFRelease(CFTypeRef cf) {
  fnEvent("CFRelease", describe(cf), "null");
  if (!cf) {
    problem("CFRelease(NULL) crashes");
    return;
  }
  release(known(cf));
}

CFDataRef CFDataCreate(CFAllocatorRef, const UInt8* bytes, CFIndex length) {
  Obj* d = make(Kind::Data, "CFData", "CFDataCreate");
  d->bytes.assign(bytes, bytes + length);
  fnEvent("CFDataCreate", "{\"int\":" + std::to_string(length) + "}", describeObj(d));
  return reinterpret_cast<CFDataRef>(static_cast<objc_object*>(d));
}

CFNumberRef CFNumberCreate(CFAllocatorRef, CFNumberType type, const void* valuePtr) {
  Obj* n = make(Kind::Number, "CFNumber", "CFNumberCreate");
  if (type == kCFNumberSInt32Type || type == kCFNumberIntType) n->numType = "int", n->num = *static_cast<const int32_t*>(valuePtr);
  else n->numType = "long long", n->num = *static_cast<const int64_t*>(valuePtr);
  fnEvent("CFNumberCreate", "{\"int\":" + std::to_string(type) + "}", describeObj(n));
  return reinterpret_cast<CFNumberRef>(static_cast<objc_object*>(n));
}

CFStringRef CFStringCreateWithCString(CFAllocatorRef, const char* cStr, CFStringEncoding) {
  Obj* s = string(cStr, "CFString", "CFStringCreateWithCString");
  fnEvent("CFStringCreateWithCString", esc(cStr), describeObj(s));
  return reinterpret_cast<CFStringRef>(static_cast<objc_object*>(s));
}

Boolean CFStringGetCString(CFStringRef theString, char* buffer, CFIndex bufferSize, CFStringEncoding) {
  Obj* s = known(theString);
  if (!s || bufferSize <= 0 || s->text.size() + 1 > size_t(bufferSize)) return 0;
  std::memcpy(buffer, s->text.c_str(), s->text.size() + 1);
  return 1;
}

CFArrayRef CFArrayCreate(CFAllocatorRef, const void** values, CFIndex numValues, const CFArrayCallBacks*) {
  Obj* a = make(Kind::Array, "CFArray", "CFArrayCreate");
  for (CFIndex i = 0; i < numValues; ++i) a->items.push_back(hold(a, objectArg(reinterpret_cast<intptr_t>(values[i]), "CFArrayCreate")));
  fnEvent("CFArrayCreate", "", describeObj(a));
  return reinterpret_cast<CFArrayRef>(static_cast<objc_object*>(a));
}

CFDictionaryRef CFDictionaryCreate(CFAllocatorRef, const void** keys, const void** values, CFIndex numValues,
                                   const CFDictionaryKeyCallBacks*, const CFDictionaryValueCallBacks*) {
  Obj* d = make(Kind::Dictionary, "CFDictionary", "CFDictionaryCreate");
  for (CFIndex i = 0; i < numValues; ++i) {
    d->entries.push_back({hold(d, objectArg(reinterpret_cast<intptr_t>(keys[i]), "CFDictionaryCreate")),
                          hold(d, objectArg(reinterpret_cast<intptr_t>(values[i]), "CFDictionaryCreate"))});
  }
  fnEvent("CFDictionaryCreate", "", describeObj(d));
  return reinterpret_cast<CFDictionaryRef>(static_cast<objc_object*>(d));
}

CFMutableDictionaryRef CFDictionaryCreateMutable(CFAllocatorRef, CFIndex, const CFDictionaryKeyCallBacks*, const CFDictionaryValueCallBacks*) {
  Obj* d = make(Kind::Dictionary, "CFMutableDictionary", "CFDictionaryCreateMutable");
  fnEvent("CFDictionaryCreateMutable", "", describeObj(d));
  return reinterpret_cast<CFMutableDictionaryRef>(static_cast<objc_object*>(d));
}

void CFDictionarySetValue(CFMutableDictionaryRef theDict, const void* key, const void* value) {
  Obj* d = known(theDict);
  Obj* k = objectArg(reinterpret_cast<intptr_t>(key), "CFDictionarySetValue");
  Obj* v = objectArg(reinterpret_cast<intptr_t>(value), "CFDictionarySetValue");
  fnEvent("CFDictionarySetValue", describe(theDict) + "," + describe(key) + "," + describe(value), "null");
  if (!d || !k || !v) return;
  for (auto& entry : d->entries) {
    if (entry.first->kind == Kind::String && k->kind == Kind::String && entry.first->text == k->text) {
      hold(d, v);
      entry.second = v;
      return;
    }
  }
  d->entries.push_back({hold(d, k), hold(d, v)});
}

CFStringRef CFErrorCopyDescription(CFErrorRef err) {
  Obj* e = known(err);
  Obj* s = string(e ? e->text : "", "CFString", "CFErrorCopyDescription");
  return reinterpret_cast<CFStringRef>(static_cast<objc_object*>(s));
}

// ---------------------------------------------------------------------------------------------
// IOSurface

const CFStringRef kIOSurfaceWidth = __CFStringMakeConstantString("IOSurfaceWidth");
const CFStringRef kIOSurfaceHeight = __CFStringMakeConstantString("IOSurfaceHeight");
const CFStringRef kIOSurfaceBytesPerElement = __CFStringMakeConstantString("IOSurfaceBytesPerElement");
const CFStringRef kIOSurfaceBytesPerRow = __CFStringMakeConstantString("IOSurfaceBytesPerRow");
const CFStringRef kIOSurfaceAllocSize = __CFStringMakeConstantString("IOSurfaceAllocSize");
const CFStringRef kIOSurfacePixelFormat = __CFStringMakeConstantString("IOSurfacePixelFormat");

IOSurfaceRef IOSurfaceCreate(CFDictionaryRef properties) {
  Obj* props = objectArg(reinterpret_cast<intptr_t>(properties), "IOSurfaceCreate");
  Obj* size = lookup(props, "IOSurfaceAllocSize");
  Obj* s = nullptr;
  if (!isDictionary(props) || !size || size->kind != Kind::Number || size->num <= 0) problem("IOSurfaceCreate needs a properties dictionary with IOSurfaceAllocSize");
  else {
    s = make(Kind::Surface, "IOSurface", "IOSurfaceCreate");
    s->bytes.assign(size_t(size->num), 0);
  }
  fnEvent("IOSurfaceCreate", describe(properties), describeObj(s));
  return reinterpret_cast<IOSurfaceRef>(s ? static_cast<objc_object*>(s) : nullptr);
}

kern_return_t IOSurfaceLock(IOSurfaceRef buffer, IOSurfaceLockOptions options, uint32_t*) {
  Obj* s = known(buffer);
  fnEvent("IOSurfaceLock", describe(buffer) + ",{\"int\":" + std::to_string(options) + "}", "0");
  if (!s) return 1;
  if (s->locks) problem("IOSurfaceLock on a surface already locked");
  ++s->locks;
  s->lockOptions = options;
  return 0;
}

kern_return_t IOSurfaceUnlock(IOSurfaceRef buffer, IOSurfaceLockOptions options, uint32_t*) {
  Obj* s = known(buffer);
  fnEvent("IOSurfaceUnlock", describe(buffer) + ",{\"int\":" + std::to_string(options) + "}", "0");
  if (!s) return 1;
  if (!s->locks) {
    problem("IOSurfaceUnlock on a surface that is not locked");
    return 1;
  }
  if (options != s->lockOptions) problem("IOSurfaceUnlock with options that differ from the lock's");
  --s->locks;
  return 0;
}

void* IOSurfaceGetBaseAddress(IOSurfaceRef buffer) {
  Obj* s = known(buffer);
  fnEvent("IOSurfaceGetBaseAddress", describe(buffer), "null");
  if (!s) return nullptr;
  if (!s->locks) problem("IOSurfaceGetBaseAddress on a surface that is not locked");
  return s->bytes.data();
}

// ---------------------------------------------------------------------------------------------
// libSystem

uint64_t mach_absolute_time(void) {
  event("\"ev\":\"clock\"");
  // 1000 ticks per read, one tick per nanosecond (see mach_timebase_info): a timed evaluation
  // between two reads lasts exactly 0.001 ms, which the driver checks.
  return S().ticks += 1000;
}

int mach_timebase_info(mach_timebase_info_t info) {
  info->numer = 1;
  info->denom = 1;
  return 0;
}

int sysctlbyname(const char* name, void* oldp, size_t* oldlenp, void*, size_t) {
  fnEvent("sysctlbyname", esc(name), "0");
  if (std::string(name) != "kern.osproductversion") {
    errno = ENOENT;
    return -1;
  }
  const size_t need = S().os.size() + 1;
  if (!oldp) {
    *oldlenp = need;
    return 0;
  }
  if (*oldlenp < need) {
    errno = ENOMEM;
    return -1;
  }
  std::memcpy(oldp, S().os.c_str(), need);
  *oldlenp = need;
  return 0;
}

// dlopen/dlerror are taken over in this executable (the backend links to these); anything but the
// framework goes to the C library's own.
void* dlsym(void* handle, const char* symbol);
static void* const kNext = reinterpret_cast<void*>(-1l);  // RTLD_NEXT on glibc

void* dlopen(const char* file, int mode) {
  static const std::string framework = "/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine";
  if (file && framework == file) {
    const bool ok = !S().noFramework;
    fnEvent("dlopen", esc(file) + ",{\"int\":" + std::to_string(mode) + "}", ok ? "\"handle\"" : "null");
    if (ok) {
      static int handle;
      return &handle;
    }
    S().dlerror = std::string("dlopen(") + file + ", " + std::to_string(mode) + "): image not found";
    return nullptr;
  }
  using Fn = void* (*)(const char*, int);
  return reinterpret_cast<Fn>(dlsym(kNext, "dlopen"))(file, mode);
}

char* dlerror(void) {
  if (!S().dlerror.empty()) {
    static std::string last;
    last = S().dlerror;
    S().dlerror.clear();
    return &last[0];
  }
  using Fn = char* (*)();
  return reinterpret_cast<Fn>(dlsym(kNext, "dlerror"))();
}

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// Control

namespace standin {

void configure(int argc, char** argv) {
  defineClasses();
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--os") S().os = next();
    else if (arg == "--tmp") S().tmp = next();
    else if (arg == "--no-framework") S().noFramework = true;
    else if (arg == "--missing") S().missing.insert(next());
    else if (arg == "--raise") S().raise.insert(next());
    else if (arg == "--nil") S().nils.insert(next());
    else if (arg == "--fail") {
      std::string spec = next();
      size_t eq = spec.find('=');
      S().fail[spec.substr(0, eq)] = eq == std::string::npos ? -1 : std::stoi(spec.substr(eq + 1));
    }
  }
  if (S().tmp.empty()) {
    char templ[] = "/tmp/tunelab-standin-XXXXXX";
    S().tmp = mkdtemp(templ);
  }
}

void emit(const std::string& json) { write(json); }

std::string quote(const std::string& text) { return esc(text); }

float expectedOutput(const float* input, size_t inputs, size_t j) {
  float sum = 0;
  for (size_t i = 0; i < inputs; ++i) sum += input[i];
  return sum + float(j);
}

void finish() {
  if (!S().pools.empty()) {
    problem(std::to_string(S().pools.size()) + " autorelease pool(s) left open");
    objc_autoreleasePoolPop(reinterpret_cast<void*>(uintptr_t(1)));
  }
  std::string live = "[";
  for (Obj* o : S().all) {
    if (o->immortal || o->dead) continue;
    live += std::string(live.size() > 1 ? "," : "") + describeObj(o);
  }
  live += "]";
  std::string dirs = "[";
  for (const auto& f : listFiles(S().tmp)) dirs += std::string(dirs.size() > 1 ? "," : "") + esc(f);
  dirs += "]";
  std::string problems = "[";
  for (const auto& p : S().problems) problems += std::string(problems.size() > 1 ? "," : "") + esc(p);
  problems += "]";
  event("\"ev\":\"report\",\"live\":" + live + ",\"loaded\":" + std::to_string(S().loaded) + ",\"compiles\":" + std::to_string(S().compiles) +
        ",\"filesLeft\":" + dirs + ",\"problems\":" + problems);
}

}  // namespace standin
