// NHWC x HWIO -> NHWC convolutions through oneDNN (the library PyTorch's CPU convolutions use), as XLA FFI handlers
// for the CPU: the forward conv, dL/dx and dL/dkernel; and attention's batched matmul (GenJaxOnednnMatmul, below).
// Why: for the DDPM UNet's shapes XLA:CPU's (Eigen's) kernel gradient ran 1.6-4x slower than oneDNN's (it first copies
// x to [c h w b]), its 3x3 forward conv 1.2-1.4x slower, a strided conv's input gradient 1.4-1.9x slower and
// attention's batched dots 1.5-2.7x; see gen_jax/onednn/__init__.py.
//
// GenJaxOnednnConv: x [b h w ci], kernel [kh kw ci co] -> y [b oh ow co]. GenJaxOnednnKernelGrad: x [b h w ci],
// g = dL/dy [b oh ow co] -> dL/dkernel [kh kw ci co] (kh, kw from the result's shape). GenJaxOnednnInputGrad:
// g = dL/dy [b oh ow co], kernel [kh kw ci co] -> dL/dx [b h w ci] (h, w from the result's shape; a strided conv's
// input gradient is a transposed conv). All f32. Attributes: strides and explicit paddings of the forward conv, as in
// lax.conv_general_dilated (no dilation).
//
// All split the batch into one chunk per thread of XLA's intra-op pool, each a single-threaded oneDNN call (see
// InChunks): the convolution shares the cores with whatever else XLA runs meanwhile instead of oversubscribing them
// with OpenMP threads (in the DDPM step each kernel-gradient call ran ~2x slower than alone that way). Each
// geometry's primitive is created once and kept (creation costs ~1 ms); the scratchpad is per call, so calls from
// several threads (XLA's CPU devices) may run the same primitive at once.

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

namespace ffi = xla::ffi;

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One chunk's geometry: b h w ci kh kw co oh ow stride_h stride_w pad_top pad_bottom pad_left pad_right.
using Key = std::vector<int64_t>;

struct Geometry {
  explicit Geometry(const Key& k)
      : b(k[0]), h(k[1]), w(k[2]), ci(k[3]), kh(k[4]), kw(k[5]), co(k[6]), oh(k[7]), ow(k[8]),
        strides{k[9], k[10]}, pad_l{k[11], k[13]}, pad_r{k[12], k[14]} {}
  int64_t b, h, w, ci, kh, kw, co, oh, ow;
  dims strides, pad_l, pad_r;
  // oneDNN's logical order is always NCHW / OIHW; these are the NHWC / HWIO layouts XLA's buffers have.
  dnnl::memory::desc x() const { return dnnl::memory::desc({b, ci, h, w}, dt::f32, tag::nhwc); }
  dnnl::memory::desc y() const { return dnnl::memory::desc({b, co, oh, ow}, dt::f32, tag::nhwc); }
  dnnl::memory::desc hwio() const { return dnnl::memory::desc({co, ci, kh, kw}, dt::f32, tag::hwio); }
  dnnl::memory::desc any_kernel() const { return dnnl::memory::desc({co, ci, kh, kw}, dt::f32, tag::any); }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Each plan type's primitives, created once per geometry (Shape: how the plan reads its key).
template <typename Plan, typename Shape = Geometry>
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

// A plan's kernel operand: XLA's HWIO buffer, or (where oneDNN picked its own layout) a copy reordered into it in
// each call.
struct KernelOperand {
  void Init(const dnnl::memory::desc& hwio_desc, const dnnl::memory::desc& chosen) {
    hwio = hwio_desc;
    blocked = chosen;
    if (blocked != hwio) from_hwio = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), hwio, Engine(), blocked));
  }
  dnnl::memory Get(dnnl::stream& stream, const float* data) const {
    auto given = dnnl::memory(hwio, Engine(), const_cast<float*>(data));
    if (blocked == hwio) return given;
    auto reordered = dnnl::memory(blocked, Engine());
    from_hwio.execute(stream, given, reordered);
    return reordered;
  }
  dnnl::memory::desc hwio, blocked;
  dnnl::reorder from_hwio;
};

struct ConvPlan {
  // The kernel in the layout oneDNN picks, reordered from HWIO in each call: with HWIO, oneDNN 3.2 took its im2col +
  // GEMM form at AVX2 (the UNet step 1.19x slower than XLA's convs; blocked: 0.94x) and as fast a form with AVX-512.
  static constexpr int kIn = DNNL_ARG_SRC, kOut = DNNL_ARG_DST;  // in: x, out: y
  explicit ConvPlan(const Geometry& g) : in(g.x()), out(g.y()) {
    const auto pd = dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, in, g.any_kernel(), out,
        g.strides, g.pad_l, g.pad_r, UserScratchpad());
    primitive = dnnl::convolution_forward(pd);
    scratchpad = pd.scratchpad_desc();
    kernel.Init(g.hwio(), pd.weights_desc());
  }
  dnnl::memory::desc in, out, scratchpad;
  KernelOperand kernel;
  dnnl::convolution_forward primitive;
};

struct KernelGradPlan {
  explicit KernelGradPlan(const Geometry& g) : x(g.x()), g(g.y()), hwio(g.hwio()) {
    // oneDNN's own layout for the result (1.5-2.5x faster than HWIO), reordered to HWIO after.
    const auto forward = dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x, g.any_kernel(), this->g,
        g.strides, g.pad_l, g.pad_r);
    const auto pd = dnnl::convolution_backward_weights::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, x, g.any_kernel(), this->g, g.strides, g.pad_l, g.pad_r,
        forward, UserScratchpad());
    primitive = dnnl::convolution_backward_weights(pd);
    blocked = pd.diff_weights_desc();
    scratchpad = pd.scratchpad_desc();
    needs_reorder = blocked != hwio;
    if (needs_reorder) to_hwio = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), blocked, Engine(), hwio));
  }
  dnnl::memory::desc x, g, hwio, blocked, scratchpad;
  dnnl::convolution_backward_weights primitive;
  bool needs_reorder = false;
  dnnl::reorder to_hwio;
};

struct InputGradPlan {
  // The kernel in oneDNN's own layout (reordered from HWIO in each call) where dx has 16 or more channels: oneDNN then
  // picks its direct strided kernels, with HWIO its im2col + GEMM form (alone, batch 64, 4x4 s2: 0.47-0.65x XLA's
  // time against 0.68-1.03x); with 3 channels the GEMM form was the faster (0.69x against 1.6x).
  static constexpr int kIn = DNNL_ARG_DIFF_DST, kOut = DNNL_ARG_DIFF_SRC;  // in: g = dL/dy, out: dL/dx
  explicit InputGradPlan(const Geometry& g) : in(g.y()), out(g.x()) {
    const auto weights = g.ci >= 16 ? g.any_kernel() : g.hwio();
    const auto forward = dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, out, weights, in,
        g.strides, g.pad_l, g.pad_r);
    const auto pd = dnnl::convolution_backward_data::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, out, weights, in, g.strides, g.pad_l, g.pad_r, forward,
        UserScratchpad());
    primitive = dnnl::convolution_backward_data(pd);
    scratchpad = pd.scratchpad_desc();
    kernel.Init(g.hwio(), pd.weights_desc());
  }
  dnnl::memory::desc in, out, scratchpad;
  KernelOperand kernel;
  dnnl::convolution_backward_data primitive;
};

dnnl::memory Wrap(const dnnl::memory::desc& desc, const float* data) {
  return dnnl::memory(desc, Engine(), const_cast<float*>(data));
}

// Runs chunk(c, first, size) for `chunks` slices of the batch, each a single-threaded oneDNN call: this thread and
// helpers scheduled on XLA's intra-op pool claim chunks until none is left, then this thread waits for the claimed
// ones. Helpers that find the pool busy (another op) or the work gone do nothing, so the cores are never
// oversubscribed and nothing waits on a task that has not started. (A first version ran every chunk as a pool task
// and completed asynchronously: as fast in the train step, with more moving parts.)
ffi::Error InChunks(ffi::ThreadPool& pool, int64_t batch, int64_t chunks,
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

int64_t ChunksFor(int64_t batch, ffi::ThreadPool& pool) {
  return std::max<int64_t>(1, std::min<int64_t>(batch, pool.num_threads()));
}

// Runs chunk(result, first, size) over the batch's chunks where each chunk's result (`result_size` floats) is summed
// over the batch (kernel gradients): chunk 0 writes into `out`, the others into their own buffers, which this thread
// adds to it once all are done.
ffi::Error SummedChunks(ffi::ThreadPool& pool, int64_t batch, int64_t result_size, float* out,
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

Key ChunkKey(int64_t size, ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd,
             const std::vector<int64_t>& attrs) {
  Key key{size, xd[1], xd[2], xd[3], kd[0], kd[1], kd[3], yd[1], yd[2]};
  key.insert(key.end(), attrs.begin(), attrs.end());
  return key;
}

// x [b h w ci], kernel [kh kw ci co], y [b oh ow co]: the one geometry all three handlers take (for the kernel
// gradient, its result is the kernel and g the y; for the input gradient, its result is x and g the y).
bool ConvShapes(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd) {
  return xd.size() == 4 && kd.size() == 4 && yd.size() == 4 && xd[0] == yd[0] && xd[3] == kd[2] && kd[3] == yd[3];
}

// The forward conv and the input gradient: one operand (x, or g) and the result split over the batch, the kernel
// shared. xd, kd, yd: the forward conv's x, kernel and y (see ConvShapes); Plan says which of x and y is which.
template <typename Plan>
ffi::Error KernelSharedChunks(ffi::ThreadPool& pool, const float* in, const float* kernel, float* out,
                              ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd,
                              const std::vector<int64_t>& attrs) {
  const bool forward = Plan::kIn == DNNL_ARG_SRC;
  const int64_t x_per_image = xd[1] * xd[2] * xd[3], y_per_image = yd[1] * yd[2] * yd[3];
  const int64_t in_per_image = forward ? x_per_image : y_per_image, out_per_image = forward ? y_per_image : x_per_image;
  auto chunk = [=](int64_t, int64_t first, int64_t size) {
    const auto plan = Cached<Plan>(ChunkKey(size, xd, kd, yd, attrs));
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch(plan->scratchpad.get_size());
    plan->primitive.execute(stream, {{Plan::kIn, Wrap(plan->in, in + first * in_per_image)},
                                     {DNNL_ARG_WEIGHTS, plan->kernel.Get(stream, kernel)},
                                     {Plan::kOut, Wrap(plan->out, out + first * out_per_image)},
                                     {DNNL_ARG_SCRATCHPAD, dnnl::memory(plan->scratchpad, Engine(), scratch.data())}});
    stream.wait();
  };
  return InChunks(pool, xd[0], ChunksFor(xd[0], pool), chunk);
}

ffi::Error Conv(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                 ffi::ResultBuffer<ffi::F32> y, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                 int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  const auto xd = x.dimensions(), kd = kernel.dimensions(), yd = y->dimensions();
  if (!ConvShapes(xd, kd, yd)) {
    return ffi::Error::InvalidArgument("gen_jax oneDNN conv: expected x [b h w ci], kernel [kh kw ci co], result [b oh ow co]");
  }
  return KernelSharedChunks<ConvPlan>(pool, x.typed_data(), kernel.typed_data(), y->typed_data(), xd, kd, yd,
                                      {stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right});
}

ffi::Error KernelGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                       ffi::ResultBuffer<ffi::F32> kernel_grad, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                       int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  const auto xd = x.dimensions(), gd = g.dimensions(), kd = kernel_grad->dimensions();
  if (!ConvShapes(xd, kd, gd)) {
    return ffi::Error::InvalidArgument("gen_jax oneDNN kernel gradient: expected x [b h w ci], g [b oh ow co], result [kh kw ci co]");
  }
  const std::vector<int64_t> attrs{stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right};
  const int64_t x_per_image = xd[1] * xd[2] * xd[3], g_per_image = gd[1] * gd[2] * gd[3];
  const float* x_data = x.typed_data();
  const float* g_data = g.typed_data();
  auto chunk = [=](float* summand, int64_t first, int64_t size) {
    const auto plan = Cached<KernelGradPlan>(ChunkKey(size, xd, kd, gd, attrs));
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch(plan->scratchpad.get_size());
    auto hwio = Wrap(plan->hwio, summand);
    auto result = plan->needs_reorder ? dnnl::memory(plan->blocked, Engine()) : hwio;
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, Wrap(plan->x, x_data + first * x_per_image)},
                                     {DNNL_ARG_DIFF_DST, Wrap(plan->g, g_data + first * g_per_image)},
                                     {DNNL_ARG_DIFF_WEIGHTS, result},
                                     {DNNL_ARG_SCRATCHPAD, dnnl::memory(plan->scratchpad, Engine(), scratch.data())}});
    if (plan->needs_reorder) plan->to_hwio.execute(stream, result, hwio);
    stream.wait();
  };
  return SummedChunks(pool, xd[0], kd[0] * kd[1] * kd[2] * kd[3], kernel_grad->typed_data(), chunk);
}

ffi::Error InputGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> kernel,
                      ffi::ResultBuffer<ffi::F32> dx, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                      int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  const auto gd = g.dimensions(), kd = kernel.dimensions(), xd = dx->dimensions();
  if (!ConvShapes(xd, kd, gd)) {
    return ffi::Error::InvalidArgument("gen_jax oneDNN input gradient: expected g [b oh ow co], kernel [kh kw ci co], result [b h w ci]");
  }
  return KernelSharedChunks<InputGradPlan>(pool, g.typed_data(), kernel.typed_data(), dx->typed_data(), xd, kd, gd,
                                           {stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right});
}

// One chunk of a batched matmul: a [b m k] (trans_a: stored [b k m]) x w [b k n] (trans_b: stored [b n k]) -> c
// [b m n]. The transposed operands are read in place through strides (XLA's dots were slowest on those: 2.7x). A
// shared w (one [k n] for every example: a Dense layer's kernel) is broadcast by oneDNN, not copied.
struct MatmulShape {
  explicit MatmulShape(const Key& key)
      : b(key[0]), m(key[1]), k(key[2]), n(key[3]), trans_a(key[4]), trans_b(key[5]), shared_w(key[6]) {}
  int64_t b, m, k, n;
  bool trans_a, trans_b, shared_w;
};

struct MatmulPlan {
  explicit MatmulPlan(const MatmulShape& s)
      : a({s.b, s.m, s.k}, dt::f32, s.trans_a ? dims{s.m * s.k, 1, s.m} : dims{s.m * s.k, s.k, 1}),
        w({s.shared_w ? 1 : s.b, s.k, s.n}, dt::f32, s.trans_b ? dims{s.k * s.n, 1, s.k} : dims{s.k * s.n, s.n, 1}),
        c({s.b, s.m, s.n}, dt::f32, tag::abc) {
    const auto pd = dnnl::matmul::primitive_desc(Engine(), a, w, c, UserScratchpad());
    primitive = dnnl::matmul(pd);
    scratchpad = pd.scratchpad_desc();
  }
  dnnl::memory::desc a, w, c, scratchpad;
  dnnl::matmul primitive;
};

// a [B M K] x b [B K N] -> c [B M N] (either operand stored transposed); b [1 K N] is shared by every example; with
// c [1 M N], a stored [B K M] and b [B K N] (a Dense layer's kernel gradient, x^T g summed over the examples) each
// chunk contracts its examples' rows in one matmul (they are contiguous) and the chunks' results are added.
ffi::Error Matmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                  ffi::ResultBuffer<ffi::F32> c, int64_t trans_a, int64_t trans_b) {
  const auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 3 || bd.size() != 3 || cd.size() != 3) {
    return ffi::Error::InvalidArgument("gen_jax oneDNN matmul: expected a [B M K], b [B K N], result [B M N]");
  }
  const int64_t batch = ad[0], m = cd[1], n = cd[2], k = trans_a ? ad[1] : ad[2];
  const bool shared_w = bd[0] == 1 && batch > 1, summed = cd[0] == 1 && batch > 1;
  const bool batches_ok =
      summed ? bd[0] == batch && trans_a && !trans_b : cd[0] == batch && (shared_w || bd[0] == batch);
  if (!batches_ok || (trans_a ? ad[2] : ad[1]) != m || (trans_b ? bd[2] : bd[1]) != k ||
      (trans_b ? bd[1] : bd[2]) != n) {
    return ffi::Error::InvalidArgument("gen_jax oneDNN matmul: operand shapes do not match the result");
  }
  const float* a_data = a.typed_data();
  const float* b_data = b.typed_data();
  float* c_data = c->typed_data();
  if (!summed) {
    auto chunk = [=](int64_t, int64_t first, int64_t size) {
      const auto plan = Cached<MatmulPlan, MatmulShape>({size, m, k, n, trans_a, trans_b, shared_w});
      dnnl::stream stream(Engine());
      std::vector<uint8_t> scratch(plan->scratchpad.get_size());
      const dnnl::memory scratchpad(plan->scratchpad, Engine(), scratch.data());
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, Wrap(plan->a, a_data + first * m * k)},
                                       {DNNL_ARG_WEIGHTS, Wrap(plan->w, b_data + (shared_w ? 0 : first * k * n))},
                                       {DNNL_ARG_DST, Wrap(plan->c, c_data + first * m * n)},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      stream.wait();
    };
    return InChunks(pool, batch, ChunksFor(batch, pool), chunk);
  }
  auto chunk = [=](float* summand, int64_t first, int64_t size) {
    const auto plan = Cached<MatmulPlan, MatmulShape>({1, m, size * k, n, 1, 0, 0});
    dnnl::stream stream(Engine());
    std::vector<uint8_t> scratch(plan->scratchpad.get_size());
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, Wrap(plan->a, a_data + first * k * m)},
                                     {DNNL_ARG_WEIGHTS, Wrap(plan->w, b_data + first * k * n)},
                                     {DNNL_ARG_DST, Wrap(plan->c, summand)},
                                     {DNNL_ARG_SCRATCHPAD, dnnl::memory(plan->scratchpad, Engine(), scratch.data())}});
    stream.wait();
  };
  return SummedChunks(pool, batch, m * n, c_data, chunk);
}

}  // namespace

// All three: two f32 operands ((x, kernel), (x, g) or (g, kernel)) -> the result, with the forward conv's strides and
// paddings as attributes.
#define GEN_JAX_CONV_BINDING                                                                                  \
  ffi::Ffi::Bind()                                                                                            \
      .Ctx<ffi::ThreadPool>()                                                                                 \
      .Arg<ffi::Buffer<ffi::F32>>()                                                                           \
      .Arg<ffi::Buffer<ffi::F32>>()                                                                           \
      .Ret<ffi::Buffer<ffi::F32>>()                                                                           \
      .Attr<int64_t>("stride_h")                                                                              \
      .Attr<int64_t>("stride_w")                                                                              \
      .Attr<int64_t>("pad_top")                                                                               \
      .Attr<int64_t>("pad_bottom")                                                                            \
      .Attr<int64_t>("pad_left")                                                                              \
      .Attr<int64_t>("pad_right")

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnConv, Conv, GEN_JAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnKernelGrad, KernelGrad, GEN_JAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnInputGrad, InputGrad, GEN_JAX_CONV_BINDING);

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("trans_a")
                                  .Attr<int64_t>("trans_b"));
