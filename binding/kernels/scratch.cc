#include "scratch.h"

#include <cstdlib>
#include <new>

namespace bnkit {
namespace {

struct ScratchBuffer {
  void* data = nullptr;
  size_t capacity = 0;
  ~ScratchBuffer() { std::free(data); }
};

thread_local ScratchBuffer buffer;

}  // namespace

void* scratchBytes(size_t bytes) {
  if (bytes > buffer.capacity) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* grown = std::aligned_alloc(64, rounded);
    if (grown == nullptr) throw std::bad_alloc();
    std::free(buffer.data);
    buffer.data = grown;
    buffer.capacity = rounded;
  }
  return buffer.data;
}

}  // namespace bnkit
