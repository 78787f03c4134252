#include "convert.h"

#include <cstring>
#include <stdexcept>

namespace penny {

std::vector<int64_t> shapeArg(const Napi::Value& v, const char* name, bool emptyBatch) {
  Napi::Env env = v.Env();
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(name) + " must be an array of dimensions");
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value d = a.Get(i);
    double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (x < (emptyBatch && i == 0 ? 0 : 1) || x != static_cast<double>(static_cast<int64_t>(x))) {
      throw Napi::TypeError::New(env, std::string(name) + "[" + std::to_string(i) + "] must be a positive integer");
    }
    shape.push_back(static_cast<int64_t>(x));
  }
  return shape;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const char* dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "Float32Array";
    case at::kDouble:
      return "Float64Array";
    case at::kInt:
      return "Int32Array";
    default:
      return "?";
  }
}

static bool matches(napi_typedarray_type t, at::ScalarType dtype) {
  return (t == napi_float32_array && dtype == at::kFloat) || (t == napi_float64_array && dtype == at::kDouble) ||
         (t == napi_int32_array && dtype == at::kInt);
}

at::Tensor viewTypedArray(const Napi::Value& v, const char* name, at::ScalarType dtype,
                          const std::vector<int64_t>& shape) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || !matches(v.As<Napi::TypedArray>().TypedArrayType(), dtype)) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a " + dtypeName(dtype));
  }
  auto ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != numel(shape)) {
    throw Napi::TypeError::New(env, std::string(name) + " has " + std::to_string(ta.ElementLength()) +
                                        " elements but its shape needs " + std::to_string(numel(shape)));
  }
  auto* data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return at::from_blob(data, shape, at::TensorOptions().dtype(dtype));
}

at::Tensor toHost(const at::Tensor& t) {
  auto dtype = t.scalar_type() == at::kDouble || t.scalar_type() == at::kLong ? at::kDouble : at::kFloat;
  return t.detach().to(at::kCPU, dtype).contiguous();
}

Napi::Value toTypedArray(Napi::Env env, const at::Tensor& host) {
  if (!host.device().is_cpu() || !host.is_contiguous()) throw std::logic_error("toTypedArray: not a toHost() tensor");
  if (host.scalar_type() == at::kDouble) {
    auto out = Napi::Float64Array::New(env, host.numel());
    std::memcpy(out.Data(), host.data_ptr<double>(), host.numel() * sizeof(double));
    return out;
  }
  if (host.scalar_type() != at::kFloat) throw std::logic_error("toTypedArray: not a toHost() tensor");
  auto out = Napi::Float32Array::New(env, host.numel());
  std::memcpy(out.Data(), host.data_ptr<float>(), host.numel() * sizeof(float));
  return out;
}

Napi::Array shapeToJs(Napi::Env env, at::IntArrayRef shape) {
  auto a = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); i++) a.Set(i, Napi::Number::New(env, static_cast<double>(shape[i])));
  return a;
}

std::string errorMessage(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

ErrorKind errorKind(const std::exception& e) {
  if (dynamic_cast<const c10::TypeError*>(&e) || dynamic_cast<const std::invalid_argument*>(&e)) return ErrorKind::Type;
  if (dynamic_cast<const c10::IndexError*>(&e) || dynamic_cast<const std::out_of_range*>(&e)) return ErrorKind::Range;
  return ErrorKind::Native;
}

Napi::Error jsError(Napi::Env env, ErrorKind kind, const std::string& message) {
  if (kind == ErrorKind::Type) return Napi::TypeError::New(env, message);
  if (kind == ErrorKind::Range) return Napi::RangeError::New(env, message);
  auto e = Napi::Error::New(env, message);
  e.Set("name", Napi::String::New(env, "NativeError"));
  return e;
}

}  // namespace penny
