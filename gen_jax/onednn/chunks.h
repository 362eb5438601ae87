// What gen_jax's oneDNN FFI handlers (convolutions.cc, matmul.cc) share: the engine, primitives cached per geometry,
// and the runner that splits a call over the batch.
//
// Every handler splits the batch into one chunk per thread of XLA's intra-op pool, each a single-threaded oneDNN call
// (see InChunks): the op shares the cores with whatever else XLA runs meanwhile instead of oversubscribing them with
// OpenMP threads (in the DDPM step each kernel-gradient call ran ~2x slower than alone that way). Each geometry's
// primitive is created once and kept (creation costs ~1 ms); the scratchpad is per call, so calls from several
// threads (XLA's CPU devices) may run the same primitive at once.

#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include "xla/ffi/api/ffi.h"

namespace gen_jax_onednn {

namespace ffi = xla::ffi;
using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// A primitive's geometry, as the plan that reads it lays it out.
using Key = std::vector<int64_t>;

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Each plan type's primitives, created once per geometry (Shape: how the plan reads its key).
template <typename Plan, typename Shape>
std::shared_ptr<const Plan> Cached(const Key& key) {
  static std::mutex mutex;
  static std::map<Key, std::shared_ptr<const Plan>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(key);
  if (found != plans.end()) return found->second;
  auto plan = std::make_shared<const Plan>(Shape(key));
  plans.emplace(key, plan);
  return plan;
}

inline dnnl::memory Wrap(const dnnl::memory::desc& desc, const float* data) {
  return dnnl::memory(desc, Engine(), const_cast<float*>(data));
}

// Runs chunk(c, first, size) for `chunks` slices of the batch, each a single-threaded oneDNN call: this thread and
// helpers scheduled on XLA's intra-op pool claim chunks until none is left, then this thread waits for the claimed
// ones. Helpers that find the pool busy (another op) or the work gone do nothing, so the cores are never
// oversubscribed and nothing waits on a task that has not started. (A first version ran every chunk as a pool task
// and completed asynchronously: as fast in the train step, with more moving parts.)
inline ffi::Error InChunks(ffi::ThreadPool& pool, int64_t batch, int64_t chunks,
                    std::function<void(int64_t, int64_t, int64_t)> chunk) {
  struct Work {
    std::function<void(int64_t, int64_t, int64_t)> chunk;
    int64_t batch, chunks;
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable all_done;
    std::string error;
    void Claim() {
      omp_set_num_threads(1);  // this thread's OpenMP setting: the chunks are the parallelism
      for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
        const int64_t first = batch * c / chunks, size = batch * (c + 1) / chunks - first;
        try {
          chunk(c, first, size);
        } catch (const std::exception& e) {  // dnnl::error, std::bad_alloc: reported, never thrown into XLA
          std::lock_guard<std::mutex> lock(mutex);
          if (error.empty()) error = e.what();
        }
        if (done.fetch_add(1) + 1 == chunks) {
          std::lock_guard<std::mutex> lock(mutex);
          all_done.notify_all();
        }
      }
    }
  };
  auto work = std::make_shared<Work>();
  work->chunk = std::move(chunk);
  work->batch = batch;
  work->chunks = chunks;
  for (int64_t helper = 1; helper < chunks; ++helper) pool.Schedule([work] { work->Claim(); });
  work->Claim();
  std::unique_lock<std::mutex> lock(work->mutex);
  work->all_done.wait(lock, [&] { return work->done.load() == work->chunks; });
  if (!work->error.empty()) return ffi::Error::Internal("gen_jax oneDNN: " + work->error);
  return ffi::Error::Success();
}

inline int64_t ChunksFor(int64_t batch, ffi::ThreadPool& pool) {
  return std::max<int64_t>(1, std::min<int64_t>(batch, pool.num_threads()));
}

// Runs chunk(result, first, size) over the batch's chunks where each chunk's result (`result_size` floats) is summed
// over the batch (kernel gradients): chunk 0 writes into `out`, the others into their own buffers, which this thread
// adds to it once all are done.
inline ffi::Error SummedChunks(ffi::ThreadPool& pool, int64_t batch, int64_t result_size, float* out,
                        std::function<void(float*, int64_t, int64_t)> chunk) {
  const int64_t chunks = ChunksFor(batch, pool);
  auto partials = std::make_shared<std::vector<std::vector<float>>>(chunks - 1, std::vector<float>(result_size));
  auto run = [=](int64_t c, int64_t first, int64_t size) {
    chunk(c == 0 ? out : (*partials)[c - 1].data(), first, size);
  };
  if (auto error = InChunks(pool, batch, chunks, run); error.failure()) return error;
  for (const auto& partial : *partials) {
    for (int64_t i = 0; i < result_size; ++i) out[i] += partial[i];
  }
  return ffi::Error::Success();
}

}  // namespace gen_jax_onednn
