// penny_native: the N-API surface. Model (model.cc) plus a few module functions.
#include <caffe2/serialize/inline_container.h>
#include <napi.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cmath>
#include <cstring>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <fstream>

#include "compute.h"
#include "convert.h"
#include "distributed.h"
#include "model.h"
#include "pixels.h"
#include "task.h"

namespace penny {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  int threads = 0;
  PENNY_TRY(env, { compute::run([&] { threads = at::get_num_threads(); }); })
  o.Set("numThreads", threads);
  return o;
}

void SetNumThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::TypeError::New(info.Env(), "setNumThreads(n): n must be a positive integer");
  }
  int n = info[0].As<Napi::Number>().Int32Value();
  // OpenMP's and MKL's counts are per thread: set them where the work runs.
  PENNY_TRY(info.Env(), { compute::run([n] { at::set_num_threads(n); }); })
}

// shutdown(): see compute::shutdown; the TypeScript side calls it on the main thread's process 'exit'.
void Shutdown(const Napi::CallbackInfo&) { compute::shutdown(); }

// Every tensor of a value, depth first, with its dtype's name, as toHost() copies: made on the compute thread, read by
// toJs on the main thread in the same order.
using HostTensors = std::vector<std::pair<std::string, at::Tensor>>;

void collectTensors(const c10::IValue& v, HostTensors& out) {
  if (v.isTensor()) {
    out.emplace_back(c10::toString(v.toTensor().scalar_type()), toHost(v.toTensor()));
  } else if (v.isGenericDict()) {
    for (const auto& e : v.toGenericDict()) collectTensors(e.value(), out);
  } else if (v.isList()) {
    for (const auto& x : v.toListRef()) collectTensors(x, out);
  } else if (v.isTuple()) {
    for (const auto& x : v.toTupleRef().elements()) collectTensors(x, out);
  }
}

// A pickled value as plain JS: dict -> object, list/tuple -> array, tensor -> { kind: 'tensor', dtype, shape, data }
// (data: Float64Array for float64 and int64, else Float32Array). `next` walks `host` as collectTensors filled it.
Napi::Value toJs(Napi::Env env, const c10::IValue& v, const HostTensors& host, size_t& next) {
  if (v.isTensor()) {
    const auto& [dtype, t] = host.at(next++);
    auto o = Napi::Object::New(env);
    o.Set("kind", "tensor");
    o.Set("dtype", dtype);
    o.Set("shape", shapeToJs(env, t.sizes()));
    o.Set("data", toTypedArray(env, t));
    return o;
  }
  if (v.isGenericDict()) {
    auto o = Napi::Object::New(env);
    for (const auto& e : v.toGenericDict()) {
      const auto& k = e.key();
      std::string key = k.isString() ? k.toStringRef() : k.isInt() ? std::to_string(k.toInt()) : "?";
      o.Set(key, toJs(env, e.value(), host, next));
    }
    return o;
  }
  if (v.isList() || v.isTuple()) {
    auto items = v.isList() ? v.toListRef().vec() : v.toTupleRef().elements().vec();
    auto a = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); i++) a.Set(i, toJs(env, items[i], host, next));
    return a;
  }
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isNone()) return env.Null();
  throw Napi::Error::New(env, "unsupported value of type " + v.tagKind() + " in the file");
}

// The inverse of toJs: { kind: 'tensor', dtype, shape, data } -> tensor (a view of `data`, no copy), a Map with
// number keys -> a dict with int keys (as torch's optimizer state), objects -> str-keyed dicts, integers -> int.
c10::IValue fromJs(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (v.IsNull() || v.IsUndefined()) return c10::IValue();
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9.0e15) return static_cast<int64_t>(d);
    return d;
  }
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  if (v.IsArray()) {
    auto a = v.As<Napi::Array>();
    c10::impl::GenericList list(c10::AnyType::get());
    for (uint32_t i = 0; i < a.Length(); i++)
      list.push_back(fromJs(env, a.Get(i), where + "[" + std::to_string(i) + "]"));
    return list;
  }
  auto o = v.As<Napi::Object>();
  if (o.Get("kind").IsString() && o.Get("kind").As<Napi::String>().Utf8Value() == "tensor") {
    auto data = o.Get("data");
    auto dtype = data.IsTypedArray() && data.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array ? at::kDouble
                                                                                                           : at::kFloat;
    return viewTypedArray(data, (where + ".data").c_str(), dtype, shapeArg(o.Get("shape"), (where + ".shape").c_str()));
  }
  bool isMap = o.InstanceOf(env.Global().Get("Map").As<Napi::Function>());
  if (isMap) {
    c10::impl::GenericDict dict(c10::IntType::get(), c10::AnyType::get());
    auto entries = o.Get("entries").As<Napi::Function>().Call(o, {});
    auto arr =
        env.Global().Get("Array").As<Napi::Object>().Get("from").As<Napi::Function>().Call({entries}).As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      auto kv = arr.Get(i).As<Napi::Array>();
      dict.insert(static_cast<int64_t>(kv.Get(0u).ToNumber().Int64Value()),
                  fromJs(env, kv.Get(1u), where + ".get(" + kv.Get(0u).ToString().Utf8Value() + ")"));
    }
    return dict;
  }
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  auto keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).ToString();
    dict.insert(k, fromJs(env, o.Get(k), where + "." + k));
  }
  return dict;
}

// The errno's name, for the TypeScript side to tell a full disk (the user's to fix) from a fault.
const char* errnoName(int e) {
  switch (e) {
    case ENOSPC:
      return "ENOSPC";
    case EDQUOT:
      return "EDQUOT";
    case EFBIG:
      return "EFBIG";
    case EROFS:
      return "EROFS";
    case EACCES:
      return "EACCES";
    case EPERM:
      return "EPERM";
    case ENOENT:
      return "ENOENT";
    case EEXIST:
      return "EEXIST";
    case EISDIR:
      return "EISDIR";
    case ENOTDIR:
      return "ENOTDIR";
    case EIO:
      return "EIO";
    default:
      return "EUNKNOWN";
  }
}

// The bytes of a torch file go to a file descriptor of ours. PyTorchStreamWriter's own file writer throws a
// c10::Error on a short write, and its destructor then writes the end of the archive again and throws once more,
// out of a destructor: std::terminate, a SIGABRT on a full disk. Here a failed write is remembered, the writer is
// told every byte went (so it never throws), and the error is raised once the writer is done with.
class FdSink {
 public:
  explicit FdSink(const std::string& path)
      : path_(path), fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {
    if (fd_ < 0) fail(errno);
  }
  ~FdSink() {
    if (fd_ >= 0) ::close(fd_);
  }
  size_t write(const void* data, size_t n) {
    auto p = static_cast<const char*>(data);
    for (size_t done = 0; !err_ && done < n;) {
      ssize_t w = ::write(fd_, p + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        fail(w < 0 ? errno : ENOSPC);
      else
        done += static_cast<size_t>(w);
    }
    return n;
  }
  // fsync and close, then throw the first error seen (with its errno's name) if there was one
  void finish() {
    if (!err_ && ::fsync(fd_) != 0) fail(errno);
    if (fd_ >= 0 && ::close(fd_) != 0 && !err_) fail(errno);
    fd_ = -1;
    if (err_) throw std::runtime_error(path_ + ": " + std::strerror(err_) + " (" + errnoName(err_) + ")");
  }

 private:
  void fail(int e) {
    if (!err_) err_ = e;
  }
  std::string path_;
  int fd_;
  int err_ = 0;
};

// writeTorchFile(path, value) -> Promise<void>: a file Python's torch.load(path, weights_only=True) reads.
// The caller writes a temporary and renames it (src/util/atomic.ts): whole or not at all.
Napi::Value WriteTorchFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "writeTorchFile(path, value): path must be a string");
  std::string path = info[0].ToString();
  auto value = std::make_shared<c10::IValue>(fromJs(env, info[1], "value"));
  return Task::Run(
      env,
      [path, value] {
        // torch::pickle_save tags typed containers with torch.jit._pickle.restore_type_tag, which Python's
        // weights_only loader refuses; an untagged Pickler into the same zip layout is what torch.save writes.
        std::vector<char> pickle;
        torch::jit::Pickler pickler([&](const char* b, size_t n) { pickle.insert(pickle.end(), b, b + n); }, nullptr,
                                    nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
        pickler.protocol();
        pickler.pushIValue(*value);
        pickler.stop();
        FdSink sink(path);
        {
          caffe2::serialize::PyTorchStreamWriter writer([&](const void* b, size_t n) { return sink.write(b, n); });
          writer.writeRecord("data.pkl", pickle.data(), pickle.size());
          writer.writeRecord("byteorder", "little", 6);
          const auto& tensors = pickler.tensorData();
          for (size_t i = 0; i < tensors.size(); i++) {
            auto data = torch::jit::getWriteableTensorData(tensors[i]);
            writer.writeRecord("data/" + std::to_string(i), data.data(), data.sizeInBytes());
          }
          writer.writeEndOfFile();
        }
        sink.finish();
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {info[1]});
}

// readTorchFile(path) -> Promise<value>: a file written by Python's torch.save (e.g. pytorch_model.bin).
// Read through PyTorchStreamReader's file adapter, which clamps every read to the file: torch::pickle_load's
// in-memory VectorReader does not, and a file that is not a zip (a YAML passed to --resume) made miniz read past
// the buffer's end, which crashed the process now and then instead of raising an error.
Napi::Value ReadTorchFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "readTorchFile(path): path must be a string");
  std::string path = info[0].ToString();
  auto value = std::make_shared<c10::IValue>();
  auto host = std::make_shared<HostTensors>();
  return Task::Run(
      env,
      [path, value, host] {
        if (!std::ifstream(path, std::ios::binary)) throw std::runtime_error("cannot open " + path);
        try {
          caffe2::serialize::PyTorchStreamReader reader(path);
          *value = torch::jit::readArchiveAndTensors("data", "", "", std::nullopt, std::nullopt, std::nullopt, reader);
        } catch (const std::exception& e) {
          throw std::runtime_error(path + " is not a readable torch.save file: " + errorMessage(e));
        }
        collectTensors(*value, *host);
      },
      [value, host](Napi::Env env) -> Napi::Value {
        size_t next = 0;
        return toJs(env, *value, *host, next);
      },
      {});
}

}  // namespace
}  // namespace penny

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace penny;
#ifdef __GLIBC__
  // LibTorch runs on the compute thread, whose malloc arena hands large freed blocks back to the kernel at once,
  // so every step faulted its activations in afresh (~8k page faults, ~6% of a ViT-B/32 eval step). Keep freed
  // memory up to these sizes in the process, as Python's main-thread arena effectively does.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  Task::Setup(env);
  exports.Set("NativeModel", Model::Define(env));
  defineGroup(env, exports);
  definePixels(env, exports);
  exports.Set("info", Napi::Function::New<Info>(env, "info"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("shutdown", Napi::Function::New<Shutdown>(env, "shutdown"));
  exports.Set("writeTorchFile", Napi::Function::New<WriteTorchFile>(env, "writeTorchFile"));
  exports.Set("readTorchFile", Napi::Function::New<ReadTorchFile>(env, "readTorchFile"));
  return exports;
}

NODE_API_MODULE(penny_native, Init)
