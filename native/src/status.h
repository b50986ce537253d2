// Error reporting shared by every export: a thread-local message owned by the library, a status returned to the
// caller, and a guard that turns any C++ exception into a status so none crosses the C boundary.
#pragma once
#include "slothsharp.h"

#include <new>
#include <stdexcept>

namespace sloth {

// Formats the message into the calling thread's error slot and returns `status`.
sloth_status fail(sloth_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Runs `body` (which returns sloth_status) and converts escaping exceptions into SLOTH_ERROR_INTERNAL.
template <class Body>
sloth_status guarded(const char* fn, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(SLOTH_ERROR_INTERNAL, "%s: host memory allocation failed", fn);
    } catch (const std::exception& e) {
        return fail(SLOTH_ERROR_INTERNAL, "%s: unexpected C++ exception: %s", fn, e.what());
    } catch (...) {
        return fail(SLOTH_ERROR_INTERNAL, "%s: unexpected unknown C++ exception", fn);
    }
}

}  // namespace sloth
