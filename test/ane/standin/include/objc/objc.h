// Stand-in for <objc/objc.h>: the runtime's basic types as arm64 macOS declares them (BOOL is bool
// there). The structs stay incomplete: code under test must not look inside objects.
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct objc_class* Class;
typedef struct objc_object* id;
typedef struct objc_selector* SEL;
typedef bool BOOL;
#define YES true
#define NO false
#ifndef nil
#define nil nullptr
#endif
