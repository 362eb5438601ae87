// NHWC x HWIO -> NHWC convolutions through oneDNN (the library PyTorch's CPU convolutions use), as XLA FFI handlers
// for the CPU: the forward conv, dL/dx and dL/dkernel. Why: for the DDPM UNet's shapes XLA:CPU's (Eigen's) kernel
// gradient ran 1.6-4x slower than oneDNN's (it first copies x to [c h w b]), its 3x3 forward conv 1.2-1.4x slower and
// a strided conv's input gradient 1.4-1.9x slower; see gen_jax/onednn/__init__.py. The batch split: chunks.h.
//
// GenJaxOnednnConv: x [b h w ci], kernel [kh kw ci co] -> y [b oh ow co]. GenJaxOnednnKernelGrad: x [b h w ci],
// g = dL/dy [b oh ow co] -> dL/dkernel [kh kw ci co] (kh, kw from the result's shape). GenJaxOnednnInputGrad:
// g = dL/dy [b oh ow co], kernel [kh kw ci co] -> dL/dx [b h w ci] (h, w from the result's shape; a strided conv's
// input gradient is a transposed conv). All f32. Attributes: strides and explicit paddings of the forward conv, as in
// lax.conv_general_dilated (no dilation).

#include "chunks.h"

namespace {

using namespace gen_jax_onednn;  // NOLINT

// One chunk's geometry: b h w ci kh kw co oh ow stride_h stride_w pad_top pad_bottom pad_left pad_right.
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
    const auto plan = Cached<Plan, Geometry>(ChunkKey(size, xd, kd, yd, attrs));
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
    const auto plan = Cached<KernelGradPlan, Geometry>(ChunkKey(size, xd, kd, gd, attrs));
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

