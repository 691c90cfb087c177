// Host-side helpers shared by the kernel launchers: error reporting behind ptdit_last_error().
#pragma once

#include "ptdit_kernels.h"

#include <stdint.h>

namespace ptdit
{

// Record a printf-style message as this thread's last error and return `code`.
int32_t fail(int32_t code, char const* fmt, ...) __attribute__((format(printf, 2, 3)));

// Clear this thread's last error (every API call starts with it).
void clear_error();

// PTDIT_OK, or PTDIT_ERROR_CUDA naming `what` if the last launch failed.
int32_t check_launch(char const* what);

inline bool aligned16(void const* p)
{
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

inline char const* dtype_name(int32_t dtype)
{
    switch (dtype)
    {
    case PTDIT_FLOAT32: return "float32";
    case PTDIT_FLOAT16: return "float16";
    case PTDIT_BFLOAT16: return "bfloat16";
    default: return "unknown";
    }
}

} // namespace ptdit
