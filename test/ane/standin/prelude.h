// Force-included into the backend under test: what Darwin's libc declares and glibc does not.
#pragma once
#ifndef _CS_DARWIN_USER_TEMP_DIR
#define _CS_DARWIN_USER_TEMP_DIR 65537
#endif
