// Where a step's data lives and what it runs with (model/backend.h): the memory spaces of buffers, and the
// execution context Model::Step takes.
#pragma once

#include "core/thread_pool.h"

namespace herd::model {

enum class MemorySpace {
  kHost,    // ordinary process memory
  kDevice,  // an accelerator's memory: not addressable by host code
};
const char* MemorySpaceName(MemorySpace space);

// What one step runs with: the host threads, and for a device backend the queue it enqueues on (a cudaStream_t).
// Made implicitly from a ThreadPool, so CPU callers pass their pool as before.
struct ExecContext {
  ExecContext(ThreadPool& p) : pool(&p) {}  // NOLINT(google-explicit-constructor): CPU callers pass a pool
  ThreadPool* pool;
  void* queue = nullptr;
};

}  // namespace herd::model
