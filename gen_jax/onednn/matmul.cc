// Batched matmuls through oneDNN as an XLA FFI handler for the CPU (GenJaxOnednnMatmul): attention's q k^T, w v and
// the four of their backward, the UNet's Dense layers and 1x1 convs (gen_jax/models/dense.py). Why: XLA:CPU's dots
// (YNNPACK) ran 1.5-2.7x slower than oneDNN's alone, slowest where an operand is read transposed; see
// gen_jax/onednn/__init__.py. The batch split: chunks.h.

#include "chunks.h"

namespace {

using namespace gen_jax_onednn;  // NOLINT

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

XLA_FFI_DEFINE_HANDLER_SYMBOL(GenJaxOnednnMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("trans_a")
                                  .Attr<int64_t>("trans_b"));
