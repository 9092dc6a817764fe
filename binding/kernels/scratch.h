// Per-calling-thread scratch memory for kernels: grows to the largest request
// and is reused, so steady-state training allocates nothing.
#pragma once
#include <cstddef>

namespace bnkit {

// 64-byte aligned; valid until the same thread asks again.
void* scratchBytes(size_t bytes);

}  // namespace bnkit
