#include "status.h"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace sloth {
namespace {
// One slot per thread, so concurrent callers never see each other's messages.
thread_local std::string t_last_error;
}  // namespace

sloth_status fail(sloth_status status, const char* fmt, ...) {
    char buffer[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buffer, sizeof buffer, fmt, args);
    va_end(args);
    try {
        t_last_error.assign(buffer);
    } catch (...) {
        // Keep the status even if the message could not be stored.
    }
    return status;
}

}  // namespace sloth

extern "C" {

SLOTH_API int32_t sloth_abi_version(void) { return SLOTH_ABI_VERSION; }

SLOTH_API const char* sloth_last_error(void) { return sloth::t_last_error.c_str(); }

}  // extern "C"
