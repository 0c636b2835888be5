// Stand-in for <mach/mach_time.h>: the clock the timing loop reads (every read is recorded).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
struct mach_timebase_info {
  uint32_t numer;
  uint32_t denom;
};
typedef struct mach_timebase_info* mach_timebase_info_t;
typedef struct mach_timebase_info mach_timebase_info_data_t;
uint64_t mach_absolute_time(void);
int mach_timebase_info(mach_timebase_info_t info);
#ifdef __cplusplus
}
#endif
