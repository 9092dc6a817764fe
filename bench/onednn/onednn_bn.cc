// oneDNN's batch normalization behind a minimal Node-API surface, so the
// batch-norm benchmark can time it in the same process as bnkit, sample for
// sample (`npm run bench -- bn --onednn`). Benchmark-only: never part of the
// package. Built against the system oneDNN (Debian: libdnnl-dev) by
// bench/lib/onednn.mjs.
//
// JavaScript surface:
//   create(x, dy, n, c, spatial[], channelsLast, gamma, beta) -> handle
//     copies x, dy, gamma and beta into oneDNN memory and builds the three
//     primitives (forward training with batch statistics, forward inference
//     with the training call's statistics as running ones, backward with
//     scale/shift gradients)
//   run(handle, op, calls) -> seconds per call; op 'fwd-train' | 'fwd-eval' | 'bwd'
//   outputs(handle) -> { y, mean, variance, dx, dgamma, dbeta } as copies
//   implementation(handle) -> { 'fwd-train', 'fwd-eval', 'bwd' }: oneDNN's kernel names
//   release(handle): frees its memory now (S3's handles hold 400 MB each)
//   setThreads(n): for primitives created after it (oneDNN fixes a
//     primitive's thread count at creation)
#include <node_api.h>
#include <omp.h>

#include <chrono>
#include <cstring>
#include <dnnl.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct BatchNorm {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::memory src, dst, diffDst, diffSrc, scale, shift, mean, variance, diffScale, diffShift, workspace;
  dnnl::batch_normalization_forward train, infer;
  dnnl::batch_normalization_backward backward;
  std::unordered_map<int, dnnl::memory> trainArgs, inferArgs, backwardArgs;
  std::string trainImpl, inferImpl, backwardImpl;
};

// What a JavaScript handle points at: release() empties it before the
// garbage collector would.
struct Handle {
  std::unique_ptr<BatchNorm> bn;
};

// Errors become JavaScript exceptions; the helpers return false once one is pending.
bool fail(napi_env env, const std::string& message) {
  napi_throw_error(env, nullptr, message.c_str());
  return false;
}

bool floatsArg(napi_env env, napi_value v, const char* name, float** data, size_t* length) {
  bool isTyped = false;
  napi_is_typedarray(env, v, &isTyped);
  napi_typedarray_type type;
  void* raw = nullptr;
  if (!isTyped || napi_get_typedarray_info(env, v, &type, length, &raw, nullptr, nullptr) != napi_ok ||
      type != napi_float32_array) {
    return fail(env, std::string(name) + " must be a Float32Array");
  }
  *data = static_cast<float*>(raw);
  return true;
}

bool intArg(napi_env env, napi_value v, const char* name, int64_t* out) {
  if (napi_get_value_int64(env, v, out) != napi_ok || *out < 0) return fail(env, std::string(name) + " must be a non-negative integer");
  return true;
}

void copyInto(const dnnl::memory& m, const float* from, size_t count) {
  std::memcpy(m.get_data_handle(), from, count * sizeof(float));
}

napi_value floatsCopy(napi_env env, const dnnl::memory& m, size_t count) {
  void* data = nullptr;
  napi_value buffer, array;
  napi_create_arraybuffer(env, count * sizeof(float), &data, &buffer);
  std::memcpy(data, m.get_data_handle(), count * sizeof(float));
  napi_create_typedarray(env, napi_float32_array, count, buffer, 0, &array);
  return array;
}

Handle* handleOf(napi_env env, napi_value v) {
  void* p = nullptr;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == nullptr) {
    fail(env, "handle must come from create()");
    return nullptr;
  }
  return static_cast<Handle*>(p);
}

BatchNorm* handleArg(napi_env env, napi_value v) {
  Handle* h = handleOf(env, v);
  if (h == nullptr) return nullptr;
  if (!h->bn) return fail(env, "handle was released"), nullptr;
  return h->bn.get();
}

// The only argument of a call such as release(handle); false with an exception pending.
bool soleArg(napi_env env, napi_callback_info info, const char* usage, napi_value* arg) {
  size_t argc = 1;
  napi_get_cb_info(env, info, &argc, arg, nullptr, nullptr);
  return argc == 1 || fail(env, usage);
}

// The handle of a one-argument call such as outputs(handle), or nullptr with an exception pending.
BatchNorm* soleHandleArg(napi_env env, napi_callback_info info, const char* usage) {
  napi_value arg;
  return soleArg(env, info, usage, &arg) ? handleArg(env, arg) : nullptr;
}

napi_value Create(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value args[8];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != 8) return fail(env, "create(x, dy, n, c, spatial, channelsLast, gamma, beta)"), nullptr;
  float *x, *dy, *gamma, *beta;
  size_t xLength, dyLength, gammaLength, betaLength;
  int64_t n, c;
  if (!floatsArg(env, args[0], "x", &x, &xLength) || !floatsArg(env, args[1], "dy", &dy, &dyLength) ||
      !intArg(env, args[2], "n", &n) || !intArg(env, args[3], "c", &c) ||
      !floatsArg(env, args[6], "gamma", &gamma, &gammaLength) || !floatsArg(env, args[7], "beta", &beta, &betaLength)) {
    return nullptr;
  }
  uint32_t rank = 0;
  if (napi_get_array_length(env, args[4], &rank) != napi_ok) return fail(env, "spatial must be an array"), nullptr;
  dnnl::memory::dims dims = {n, c};
  size_t elements = static_cast<size_t>(n * c);
  for (uint32_t i = 0; i < rank; ++i) {
    napi_value e;
    int64_t d;
    napi_get_element(env, args[4], i, &e);
    if (!intArg(env, e, "spatial[i]", &d)) return nullptr;
    dims.push_back(d);
    elements *= static_cast<size_t>(d);
  }
  bool channelsLast = false;
  if (napi_get_value_bool(env, args[5], &channelsLast) != napi_ok) return fail(env, "channelsLast must be a boolean"), nullptr;
  if (xLength != elements || dyLength != elements || gammaLength != static_cast<size_t>(c) ||
      betaLength != static_cast<size_t>(c)) {
    return fail(env, "x and dy must hold n*c*prod(spatial) floats, gamma and beta c"), nullptr;
  }
  using tag = dnnl::memory::format_tag;
  tag layout = rank == 0 ? tag::nc
               : rank == 1 ? (channelsLast ? tag::nwc : tag::ncw)
               : rank == 2 ? (channelsLast ? tag::nhwc : tag::nchw)
                           : tag::undef;
  if (layout == tag::undef) return fail(env, "spatial must have 0, 1 or 2 dimensions"), nullptr;
  try {
    auto bn = std::make_unique<BatchNorm>();
    const auto md = dnnl::memory::desc(dims, dnnl::memory::data_type::f32, layout);
    const auto channelMd = dnnl::memory::desc({c}, dnnl::memory::data_type::f32, tag::x);
    for (dnnl::memory* m : {&bn->src, &bn->dst, &bn->diffDst, &bn->diffSrc}) *m = dnnl::memory(md, bn->engine);
    for (dnnl::memory* m : {&bn->scale, &bn->shift, &bn->mean, &bn->variance, &bn->diffScale, &bn->diffShift}) {
      *m = dnnl::memory(channelMd, bn->engine);
    }
    copyInto(bn->src, x, elements);
    copyInto(bn->diffDst, dy, elements);
    copyInto(bn->scale, gamma, c);
    copyInto(bn->shift, beta, c);
    using flags = dnnl::normalization_flags;
    const auto affine = flags::use_scale | flags::use_shift;
    const float eps = 1e-5f;
    const auto trainPd = dnnl::batch_normalization_forward::primitive_desc(
        {dnnl::prop_kind::forward_training, md, eps, affine}, bn->engine);
    const auto inferPd = dnnl::batch_normalization_forward::primitive_desc(
        {dnnl::prop_kind::forward_inference, md, eps, affine | flags::use_global_stats}, bn->engine);
    const auto backwardPd = dnnl::batch_normalization_backward::primitive_desc(
        {dnnl::prop_kind::backward, md, md, eps, affine}, bn->engine, trainPd);
    bn->train = dnnl::batch_normalization_forward(trainPd);
    bn->infer = dnnl::batch_normalization_forward(inferPd);
    bn->backward = dnnl::batch_normalization_backward(backwardPd);
    bn->trainImpl = trainPd.impl_info_str();
    bn->inferImpl = inferPd.impl_info_str();
    bn->backwardImpl = backwardPd.impl_info_str();
    bn->trainArgs = {{DNNL_ARG_SRC, bn->src},     {DNNL_ARG_DST, bn->dst},   {DNNL_ARG_SCALE, bn->scale},
                     {DNNL_ARG_SHIFT, bn->shift}, {DNNL_ARG_MEAN, bn->mean}, {DNNL_ARG_VARIANCE, bn->variance}};
    bn->inferArgs = bn->trainArgs;
    bn->backwardArgs = {{DNNL_ARG_SRC, bn->src},           {DNNL_ARG_DIFF_DST, bn->diffDst},
                        {DNNL_ARG_DIFF_SRC, bn->diffSrc},  {DNNL_ARG_SCALE, bn->scale},
                        {DNNL_ARG_SHIFT, bn->shift},       {DNNL_ARG_MEAN, bn->mean},
                        {DNNL_ARG_VARIANCE, bn->variance}, {DNNL_ARG_DIFF_SCALE, bn->diffScale},
                        {DNNL_ARG_DIFF_SHIFT, bn->diffShift}};
    if (trainPd.workspace_desc().get_size() != 0) {
      bn->workspace = dnnl::memory(trainPd.workspace_desc(), bn->engine);
      bn->trainArgs[DNNL_ARG_WORKSPACE] = bn->workspace;
      bn->backwardArgs[DNNL_ARG_WORKSPACE] = bn->workspace;
    }
    // Backward and inference read the statistics of a training call.
    bn->train.execute(bn->stream, bn->trainArgs);
    bn->stream.wait();
    auto holder = std::make_unique<Handle>(Handle{std::move(bn)});
    napi_value handle;
    if (napi_create_external(env, holder.get(), [](napi_env, void* p, void*) { delete static_cast<Handle*>(p); },
                             nullptr, &handle) != napi_ok) {
      return nullptr;
    }
    holder.release();
    return handle;
  } catch (const dnnl::error& e) {
    return fail(env, std::string("oneDNN: ") + e.what()), nullptr;
  }
}

napi_value Run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  if (argc != 3) return fail(env, "run(handle, op, calls)"), nullptr;
  BatchNorm* bn = handleArg(env, args[0]);
  if (bn == nullptr) return nullptr;
  char op[16] = {0};
  size_t opLength = 0;
  napi_get_value_string_utf8(env, args[1], op, sizeof op, &opLength);
  int64_t calls = 0;
  if (!intArg(env, args[2], "calls", &calls)) return nullptr;
  if (calls < 1) return fail(env, "calls must be >= 1"), nullptr;
  dnnl::primitive* p = nullptr;
  std::unordered_map<int, dnnl::memory>* primitiveArgs = nullptr;
  if (std::strcmp(op, "fwd-train") == 0) p = &bn->train, primitiveArgs = &bn->trainArgs;
  if (std::strcmp(op, "fwd-eval") == 0) p = &bn->infer, primitiveArgs = &bn->inferArgs;
  if (std::strcmp(op, "bwd") == 0) p = &bn->backward, primitiveArgs = &bn->backwardArgs;
  if (p == nullptr) return fail(env, std::string("op must be fwd-train, fwd-eval or bwd, got ") + op), nullptr;
  const auto start = std::chrono::steady_clock::now();
  try {
    for (int64_t i = 0; i < calls; ++i) {
      p->execute(bn->stream, *primitiveArgs);
      bn->stream.wait();
    }
  } catch (const dnnl::error& e) {
    return fail(env, std::string("oneDNN: ") + e.what()), nullptr;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  napi_value result;
  napi_create_double(env, seconds / static_cast<double>(calls), &result);
  return result;
}

napi_value Outputs(napi_env env, napi_callback_info info) {
  BatchNorm* bn = soleHandleArg(env, info, "outputs(handle)");
  if (bn == nullptr) return nullptr;
  const size_t elements = bn->src.get_desc().get_size() / sizeof(float);
  const size_t channels = bn->mean.get_desc().get_size() / sizeof(float);
  napi_value out;
  napi_create_object(env, &out);
  const std::pair<const char*, std::pair<const dnnl::memory*, size_t>> fields[] = {
      {"y", {&bn->dst, elements}},          {"mean", {&bn->mean, channels}},
      {"variance", {&bn->variance, channels}}, {"dx", {&bn->diffSrc, elements}},
      {"dgamma", {&bn->diffScale, channels}}, {"dbeta", {&bn->diffShift, channels}}};
  for (const auto& f : fields) napi_set_named_property(env, out, f.first, floatsCopy(env, *f.second.first, f.second.second));
  return out;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value arg;
  int64_t threads = 0;
  if (!soleArg(env, info, "setThreads(n)", &arg) || !intArg(env, arg, "threads", &threads)) return nullptr;
  if (threads < 1) return fail(env, "threads must be >= 1"), nullptr;
  omp_set_num_threads(static_cast<int>(threads));
  return nullptr;
}

napi_value Implementation(napi_env env, napi_callback_info info) {
  BatchNorm* bn = soleHandleArg(env, info, "implementation(handle)");
  if (bn == nullptr) return nullptr;
  napi_value out;
  napi_create_object(env, &out);
  const std::pair<const char*, const std::string*> names[] = {
      {"fwd-train", &bn->trainImpl}, {"fwd-eval", &bn->inferImpl}, {"bwd", &bn->backwardImpl}};
  for (const auto& [op, name] : names) {
    napi_value s;
    napi_create_string_utf8(env, name->c_str(), name->size(), &s);
    napi_set_named_property(env, out, op, s);
  }
  return out;
}

napi_value Release(napi_env env, napi_callback_info info) {
  napi_value arg;
  if (!soleArg(env, info, "release(handle)", &arg)) return nullptr;
  Handle* h = handleOf(env, arg);
  if (h != nullptr) h->bn.reset();
  return nullptr;
}

napi_value Version(napi_env env, napi_callback_info) {
  const dnnl_version_t* v = dnnl_version();
  const std::string text = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  napi_value s;
  napi_create_string_utf8(env, text.c_str(), text.size(), &s);
  return s;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor functions[] = {
      {"create", nullptr, Create, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"run", nullptr, Run, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"outputs", nullptr, Outputs, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"implementation", nullptr, Implementation, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"release", nullptr, Release, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"version", nullptr, Version, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
