// Argument validation shared by every Node-API entry point. Each helper
// throws a JavaScript TypeError/RangeError naming the argument, so kernels can
// trust what they receive.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace bnkit::glue {

inline std::string describe(const Napi::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsUndefined()) return "undefined";
  if (v.IsTypedArray()) {
    static const char* names[] = {"Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array",
                                  "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array",
                                  "BigUint64Array"};
    const auto type = v.As<Napi::TypedArray>().TypedArrayType();
    return static_cast<size_t>(type) < sizeof(names) / sizeof(*names) ? names[type] : "a typed array";
  }
  if (v.IsArray()) return "an Array";
  if (v.IsNumber()) return "the number " + v.ToString().Utf8Value();
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  return "an object";
}

[[noreturn]] inline void throwType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}
[[noreturn]] inline void throwRange(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

// The typed array each element type travels in, and its name for messages.
template <class T>
struct TypedArrayOf;
template <>
struct TypedArrayOf<float> {
  static constexpr napi_typedarray_type kType = napi_float32_array;
  static constexpr const char* kName = "a Float32Array";
};
template <>
struct TypedArrayOf<int32_t> {
  static constexpr napi_typedarray_type kType = napi_int32_array;
  static constexpr const char* kName = "an Int32Array";
};
template <>
struct TypedArrayOf<uint8_t> {
  static constexpr napi_typedarray_type kType = napi_uint8_array;
  static constexpr const char* kName = "a Uint8Array";
};
template <>
struct TypedArrayOf<double> {
  static constexpr napi_typedarray_type kType = napi_float64_array;
  static constexpr const char* kName = "a Float64Array";
};

// A typed array's type, element count and first element (byte offset
// applied), or false if `v` is not a typed array. One engine call does the
// check and the lookup: the Napi::TypedArray wrappers make three per array,
// and with a dozen arrays per kernel call that was most of a small tensor's
// call cost. A detached array has 0 elements and no data.
struct TypedArrayView {
  napi_typedarray_type type;
  size_t elements = 0;
  void* data = nullptr;
};
inline bool typedArrayView(Napi::Env env, const Napi::Value& v, TypedArrayView* out) {
  return napi_get_typedarray_info(env, v, &out->type, &out->elements, &out->data, nullptr, nullptr) == napi_ok;
}

// A typed array of T with exactly `length` elements (any length when length < 0).
template <class T>
T* typedArray(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  const Napi::Value v = info[i];
  TypedArrayView view;
  if (!typedArrayView(info.Env(), v, &view) || view.type != TypedArrayOf<T>::kType) {
    throwType(info.Env(), std::string(name) + " must be " + TypedArrayOf<T>::kName + ", got " + describe(v));
  }
  if (length >= 0 && static_cast<int64_t>(view.elements) != length) {
    throwRange(info.Env(), std::string(name) + " has " + std::to_string(view.elements) + " elements, expected " +
                               std::to_string(length));
  }
  return static_cast<T*>(view.data);
}

inline float* floats(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  return typedArray<float>(info, i, name, length);
}

// Like floats(), but null/undefined gives nullptr.
inline bool isNullish(const Napi::CallbackInfo& info, size_t i) {
  napi_valuetype type;
  return napi_typeof(info.Env(), info[i], &type) == napi_ok && (type == napi_null || type == napi_undefined);
}

inline float* optionalFloats(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t length) {
  return isNullish(info, i) ? nullptr : floats(info, i, name, length);
}

inline double number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  double d = 0;
  if (napi_get_value_double(info.Env(), v, &d) != napi_ok) {
    throwType(info.Env(), std::string(name) + " must be a number, got " + describe(v));
  }
  if (!std::isfinite(d)) throwRange(info.Env(), std::string(name) + " must be finite, got " + std::to_string(d));
  return d;
}

// A positive integer small enough that products of sizes cannot overflow.
inline int64_t size(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t minimum = 1) {
  const double d = number(info, i, name);
  if (d != std::floor(d) || d < static_cast<double>(minimum) || d > 9007199254740991.0) {
    throwRange(info.Env(), std::string(name) + " must be an integer >= " + std::to_string(minimum) + ", got " +
                               info[i].ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

inline bool flag(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  bool value = false;
  if (napi_get_value_bool(info.Env(), v, &value) != napi_ok) {
    throwType(info.Env(), std::string(name) + " must be a boolean, got " + describe(v));
  }
  return value;
}

// Whether an output may share memory with an input. Element-wise kernels
// (batch norm) write in place safely when the output is the very same array;
// a GEMM or convolution reads its inputs long after it starts writing, so
// any shared byte would give wrong numbers, not an error.
enum class Aliasing { kSameArrayOk, kNone };

inline void checkAliasing(Napi::Env env, Aliasing rule, const float* out, int64_t outLength, const char* outName,
                          const float* in, int64_t inLength, const char* inName) {
  if (out == nullptr || in == nullptr) return;
  if (rule == Aliasing::kSameArrayOk && out == in && outLength == inLength) return;
  if (out < in + inLength && in < out + outLength) {
    throwRange(env, std::string(outName) + " overlaps " + inName +
                        (rule == Aliasing::kSameArrayOk
                             ? " without being the same array: write in place (pass the same array) or into separate memory"
                             : ": this kernel cannot write in place, pass separate memory"));
  }
}

// n1 * n2 * ... with an explicit overflow check (shapes come from users).
inline int64_t product(Napi::Env env, std::initializer_list<int64_t> dims) {
  int64_t total = 1;
  for (int64_t d : dims) {
    if (d != 0 && total > INT64_MAX / d) throwRange(env, "tensor shape is too large");
    total *= d;
  }
  return total;
}

// exports[name] = fn, a function that reports `name` in stack traces.
inline void exportFunction(Napi::Env env, Napi::Object exports, const char* name,
                           Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  exports.Set(name, Napi::Function::New(env, fn, name));
}

void registerBatchNorm(Napi::Env env, Napi::Object exports);
void registerNn(Napi::Env env, Napi::Object exports);
void registerBench(Napi::Env env, Napi::Object exports);

}  // namespace bnkit::glue
