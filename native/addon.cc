// penny_native: the N-API surface. Model (model.cc) plus a few module functions.
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <fstream>
#include <iterator>

#include "convert.h"
#include "model.h"
#include "task.h"

namespace penny {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  o.Set("numThreads", at::get_num_threads());
  return o;
}

void SetNumThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::TypeError::New(info.Env(), "setNumThreads(n): n must be a positive integer");
  }
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
}

// A pickled value as plain JS: dict -> object, list/tuple -> array, tensor -> { kind: 'tensor', dtype, shape, data }.
Napi::Value toJs(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    auto o = Napi::Object::New(env);
    o.Set("kind", "tensor");
    o.Set("dtype", std::string(c10::toString(t.scalar_type())));
    o.Set("shape", shapeToJs(env, t.sizes()));
    o.Set("data", toTypedArray(env, t.is_floating_point() && t.scalar_type() != at::kDouble ? t.to(at::kFloat) : t));
    return o;
  }
  if (v.isGenericDict()) {
    auto o = Napi::Object::New(env);
    for (const auto& e : v.toGenericDict()) {
      const auto& k = e.key();
      std::string key = k.isString() ? k.toStringRef() : k.isInt() ? std::to_string(k.toInt()) : "?";
      o.Set(key, toJs(env, e.value()));
    }
    return o;
  }
  if (v.isList() || v.isTuple()) {
    auto items = v.isList() ? v.toListRef().vec() : v.toTupleRef().elements().vec();
    auto a = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); i++) a.Set(i, toJs(env, items[i]));
    return a;
  }
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isNone()) return env.Null();
  throw Napi::Error::New(env, "unsupported value of type " + v.tagKind() + " in the file");
}

// readTorchFile(path) -> Promise<value>: a file written by Python's torch.save (e.g. pytorch_model.bin).
Napi::Value ReadTorchFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "readTorchFile(path): path must be a string");
  std::string path = info[0].ToString();
  auto value = std::make_shared<c10::IValue>();
  return Task::Run(env, [path, value] {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    try {
      *value = torch::pickle_load(bytes);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + " is not a readable torch.save file: " + errorMessage(e));
    }
  }, [value, path](Napi::Env env) -> Napi::Value { return toJs(env, *value); }, {});
}

}  // namespace
}  // namespace penny

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace penny;
  exports.Set("NativeModel", Model::Define(env));
  exports.Set("info", Napi::Function::New<Info>(env, "info"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("readTorchFile", Napi::Function::New<ReadTorchFile>(env, "readTorchFile"));
  return exports;
}

NODE_API_MODULE(penny_native, Init)
