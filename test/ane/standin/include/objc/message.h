// Stand-in for <objc/message.h>. As in the SDK (OBJC_OLD_DISPATCH_PROTOTYPES=0), objc_msgSend has no
// prototype: callers cast it to the exact type of each message.
#pragma once
#include <objc/objc.h>

#ifdef __cplusplus
extern "C" {
#endif
void objc_msgSend(void);
#ifdef __cplusplus
}
#endif
