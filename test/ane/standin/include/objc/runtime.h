// Stand-in for <objc/runtime.h>: the lookups a client of a private framework makes.
#pragma once
#include <objc/objc.h>

#ifdef __cplusplus
extern "C" {
#endif
typedef struct objc_method* Method;
Class objc_getClass(const char* name);
SEL sel_registerName(const char* str);
const char* sel_getName(SEL sel);
Class object_getClass(id obj);
const char* class_getName(Class cls);
BOOL class_respondsToSelector(Class cls, SEL sel);
Method class_getClassMethod(Class cls, SEL name);
Method class_getInstanceMethod(Class cls, SEL name);
#ifdef __cplusplus
}
#endif
