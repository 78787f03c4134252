// Moving data across the JS <-> LibTorch boundary, and turning C++ errors into JS ones.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace penny {

// Argument checks throw a JS TypeError naming the argument. Dimensions are positive; the first may be 0 where
// `emptyBatch` (a distributed rank's part of a last batch smaller than the group).
std::vector<int64_t> shapeArg(const Napi::Value& v, const char* name, bool emptyBatch = false);
int64_t numel(const std::vector<int64_t>& shape);
// Wraps a typed array's memory (no copy) as a tensor of `dtype`; the caller keeps the array alive.
at::Tensor viewTypedArray(const Napi::Value& v, const char* name, at::ScalarType dtype,
                          const std::vector<int64_t>& shape);
// On the compute thread: `t` as toTypedArray takes it, on the CPU and contiguous; float64 and int64 as float64,
// every other dtype as float32. No copy when it already is.
at::Tensor toHost(const at::Tensor& t);
// On the main thread: copies a toHost() tensor into a new Float32Array or Float64Array (a memcpy, no LibTorch op).
Napi::Value toTypedArray(Napi::Env env, const at::Tensor& host);
Napi::Array shapeToJs(Napi::Env env, at::IntArrayRef shape);
const char* dtypeName(at::ScalarType t);

// LibTorch's message without its C++ backtrace.
std::string errorMessage(const std::exception& e);

// What a C++ exception becomes in JS, so that a rejection keeps its kind: a bad argument (std::invalid_argument,
// c10::TypeError) a TypeError, a value out of range (std::out_of_range, c10::IndexError) a RangeError, anything else
// (LibTorch's c10::Error, a failed write) an Error named 'NativeError' carrying LibTorch's message.
enum class ErrorKind { Type, Range, Native };
ErrorKind errorKind(const std::exception& e);
Napi::Error jsError(Napi::Env env, ErrorKind kind, const std::string& message);
inline Napi::Error jsError(Napi::Env env, const std::exception& e) {
  return jsError(env, errorKind(e), errorMessage(e));
}

}  // namespace penny

// Runs `body`; any c10::Error / std::exception becomes the JS error of its kind (jsError), carrying its message.
#define PENNY_TRY(env, body)                                                \
  try {                                                                     \
    body                                                                    \
  } catch (const Napi::Error&) { throw; } catch (const std::exception& e) { \
    throw ::penny::jsError(env, e);                                         \
  }
