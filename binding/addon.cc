// Module entry: runtime information (ISA, threads) and registration of each
// operation family's entry points.
#include <cstring>

#include "dispatch.h"
#include "glue.h"
#include "threadpool.h"

namespace bnkit::glue {

void registerPool(Napi::Env env, Napi::Object exports);  // pool_glue.cc

namespace {

Napi::Value Isa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), isaName(activeKernels().isa));
}

Napi::Value AvailableIsas(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t n = 0;
  for (int i = 0; i < kIsaCount; ++i) {
    if (kernelTableFor(static_cast<bnkit::Isa>(i))) out.Set(n++, isaName(static_cast<bnkit::Isa>(i)));
  }
  return out;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throwType(info.Env(), "isa must be a string, got " + describe(info[0]));
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string error = selectIsa(name.c_str());
  if (!error.empty()) throwRange(info.Env(), error);
  return info.Env().Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  const int64_t n = size(info, 0, "threads");
  if (n > 1024) throwRange(info.Env(), "threads must be <= 1024, got " + std::to_string(n));
  setNumThreads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), numThreads()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const std::string& selectionError = isaSelectionError();
  if (!selectionError.empty()) throw Napi::Error::New(env, "bnkit: " + selectionError);
  glue::exportFunction(env, exports, "isa", Isa);
  glue::exportFunction(env, exports, "availableIsas", AvailableIsas);
  glue::exportFunction(env, exports, "setIsa", SetIsa);
  glue::exportFunction(env, exports, "setNumThreads", SetNumThreads);
  glue::exportFunction(env, exports, "getNumThreads", GetNumThreads);
  exports.Set("hardwareThreads", Napi::Number::New(env, hardwareThreads()));
  registerBatchNorm(env, exports);
  registerNn(env, exports);
  registerBench(env, exports);
  registerPool(env, exports);
  return exports;
}

}  // namespace
}  // namespace bnkit::glue

static Napi::Object InitBnkit(Napi::Env env, Napi::Object exports) { return bnkit::glue::Init(env, exports); }

NODE_API_MODULE(bnkit, InitBnkit)
