// Resolving a library's functions after dlopen (NCCL, cuBLASLt: libslothsharp links neither, so machines without them
// still load it and get a clear "unsupported").
#pragma once
#include <dlfcn.h>

#include <string>

namespace sloth {

// out = the symbol `name` of `handle`, as the function pointer type Fn; a missing one is appended to `missing`
// (comma-separated), so a loader can name every absent function in one message.
template <class Fn>
bool resolve_symbol(void* handle, const char* name, Fn& out, std::string& missing) {
    out = reinterpret_cast<Fn>(dlsym(handle, name));
    if (out == nullptr) missing += missing.empty() ? name : std::string(", ") + name;
    return out != nullptr;
}

}  // namespace sloth
