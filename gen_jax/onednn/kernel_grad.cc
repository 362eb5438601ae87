// dL/dkernel of an NHWC x HWIO -> NHWC convolution through oneDNN, as an XLA FFI handler for the CPU.
//
// Why: XLA:CPU's kernel-gradient convolution (Eigen) first copies x to [c h w b], and for the DDPM UNet's shapes it
// ran 1.6-4x slower than oneDNN's (the library PyTorch's CPU convolutions use); see gen_jax/onednn/__init__.py.
//
// Arguments: x [b h w ci] f32, g = dL/dout [b oh ow co] f32. Result: dL/dkernel [kh kw ci co] f32 (kh, kw from the
// result's shape). Attributes: strides and explicit paddings as in lax.conv_general_dilated (no dilation).
// Each shape's primitive is created once and kept (creation costs ~1 ms; a step runs ~50 of them). oneDNN picks
// its own blocked layout for the result, which a cached reorder turns into HWIO; the scratchpad is per call, so
// calls from several threads (XLA's CPU devices) may run the same primitive at once.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

struct Plan {
  dnnl::convolution_backward_weights primitive;
  dnnl::memory::desc x, g, blocked, hwio, scratchpad;
  bool needs_reorder = false;
  dnnl::reorder to_hwio;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Key: b h w ci kh kw co oh ow stride_h stride_w pad_top pad_bottom pad_left pad_right.
std::shared_ptr<const Plan> PlanFor(const std::vector<int64_t>& key) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(key);
  if (found != plans.end()) return found->second;
  const int64_t b = key[0], h = key[1], w = key[2], ci = key[3], kh = key[4], kw = key[5], co = key[6];
  const int64_t oh = key[7], ow = key[8];
  const dims strides{key[9], key[10]}, pad_l{key[11], key[13]}, pad_r{key[12], key[14]};
  auto plan = std::make_shared<Plan>();
  plan->x = dnnl::memory::desc({b, ci, h, w}, dt::f32, tag::nhwc);  // oneDNN's logical order is always NCHW / OIHW
  plan->g = dnnl::memory::desc({b, co, oh, ow}, dt::f32, tag::nhwc);
  plan->hwio = dnnl::memory::desc({co, ci, kh, kw}, dt::f32, tag::hwio);
  const dnnl::memory::desc any({co, ci, kh, kw}, dt::f32, tag::any);  // its own layout: 1.5-2.5x faster than HWIO
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto forward = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, plan->x, any, plan->g,
      strides, pad_l, pad_r);
  const auto backward = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, plan->x, any, plan->g, strides, pad_l, pad_r, forward, attr);
  plan->primitive = dnnl::convolution_backward_weights(backward);
  plan->blocked = backward.diff_weights_desc();
  plan->scratchpad = backward.scratchpad_desc();
  plan->needs_reorder = plan->blocked != plan->hwio;
  if (plan->needs_reorder) {
    plan->to_hwio = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), plan->blocked, Engine(), plan->hwio));
  }
  plans.emplace(key, plan);
  return plan;
}

// One batch chunk's kernel gradient, single-threaded, written as HWIO to `out`.
void ChunkKernelGrad(const Plan& plan, const float* x, const float* g, float* out) {
  omp_set_num_threads(1);  // this thread's OpenMP setting: XLA's thread pool supplies the parallelism
  dnnl::stream stream(Engine());
  std::vector<uint8_t> scratch(plan.scratchpad.get_size());
  dnnl::memory x_mem(plan.x, Engine(), const_cast<float*>(x));
  dnnl::memory g_mem(plan.g, Engine(), const_cast<float*>(g));
  dnnl::memory hwio(plan.hwio, Engine(), out);
  dnnl::memory scratch_mem(plan.scratchpad, Engine(), scratch.data());
  dnnl::memory result = plan.needs_reorder ? dnnl::memory(plan.blocked, Engine()) : hwio;
  plan.primitive.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_DST, g_mem},
                                  {DNNL_ARG_DIFF_WEIGHTS, result}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
  if (plan.needs_reorder) plan.to_hwio.execute(stream, result, hwio);
  stream.wait();
}

// The batch is split into chunks, one task each on XLA's intra-op thread pool (oneDNN single-threaded inside each),
// so the kernel gradient shares the cores with whatever else XLA runs meanwhile instead of oversubscribing them
// with OpenMP threads (in the DDPM step each call ran ~2x slower than alone that way). The last chunk to finish
// sums the chunks' gradients and completes the call.
ffi::Future KernelGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                       ffi::ResultBuffer<ffi::F32> kernel_grad, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                       int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  ffi::Promise promise;
  ffi::Future future(promise);
  const auto xd = x.dimensions(), gd = g.dimensions(), kd = kernel_grad->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || kd.size() != 4 || xd[0] != gd[0] || xd[3] != kd[2] || gd[3] != kd[3]) {
    promise.SetError(ffi::Error::InvalidArgument(
        "gen_jax oneDNN kernel gradient: expected x [b h w ci], g [b oh ow co], result [kh kw ci co]"));
    return future;
  }
  const int64_t batch = xd[0], chunks = std::max<int64_t>(1, std::min<int64_t>(batch, pool.num_threads()));
  const int64_t x_per_image = xd[1] * xd[2] * xd[3], g_per_image = gd[1] * gd[2] * gd[3];
  const int64_t kernel_size = kd[0] * kd[1] * kd[2] * kd[3];
  struct Call {
    std::atomic<int64_t> pending;
    std::vector<std::vector<float>> partials;  // chunk 0 writes into the result itself
    std::mutex mutex;
    std::string error;
    ffi::Promise promise;
  };
  auto call = std::make_shared<Call>();
  call->pending = chunks;
  call->partials.resize(chunks - 1, std::vector<float>(kernel_size));
  call->promise = promise;
  float* out = kernel_grad->typed_data();
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = batch * c / chunks, size = batch * (c + 1) / chunks - first;
    const std::vector<int64_t> key{size, xd[1], xd[2], xd[3], kd[0], kd[1], kd[3], gd[1], gd[2], stride_h, stride_w,
                                   pad_top, pad_bottom, pad_left, pad_right};
    const float* x_chunk = x.typed_data() + first * x_per_image;
    const float* g_chunk = g.typed_data() + first * g_per_image;
    float* chunk_out = c == 0 ? out : call->partials[c - 1].data();
    pool.Schedule([call, key, x_chunk, g_chunk, chunk_out, out, kernel_size] {
      try {
        ChunkKernelGrad(*PlanFor(key), x_chunk, g_chunk, chunk_out);
      } catch (const std::exception& e) {  // dnnl::error, std::bad_alloc: reported, never thrown into XLA
        std::lock_guard<std::mutex> lock(call->mutex);
        call->error = e.what();
      }
      if (call->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      if (!call->error.empty()) {
        call->promise.SetError(ffi::Error::Internal("gen_jax oneDNN kernel gradient: " + call->error));
        return;
      }
      for (const auto& partial : call->partials) {
        for (int64_t i = 0; i < kernel_size; ++i) out[i] += partial[i];
      }
      call->promise.SetAvailable();
    });
  }
  return future;
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnKernelGrad, KernelGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right"));
