// The control surface of the stand-in Objective-C runtime, CoreFoundation, IOSurface and
// AppleNeuralEngine framework (standin.cc), used by the driver (driver.cc). Everything the backend
// under test does through those APIs is written to stdout as one JSON object per line.
#pragma once

#include <string>

namespace standin {

// Reads the fault-injection and environment options (see driver.cc's usage) and prepares the
// temporary directory that NSTemporaryDirectory() returns.
void configure(int argc, char** argv);

// Writes one JSON object (already serialised) as a line of the log.
void emit(const std::string& json);
std::string quote(const std::string& text);

// What the stand-in framework wrote into the output surface for an input surface holding `input`:
// out[j] = sum(input) + j. The driver checks that the backend read exactly this back.
float expectedOutput(const float* input, size_t inputs, size_t j);

// Drains every autorelease pool left open and writes the final report: objects still alive (created
// through the stand-ins and never released), programs still loaded, model directories left on disk,
// and every misuse seen (over-release, messages to freed objects, autorelease without a pool...).
void finish();

}  // namespace standin
