// One async N-API call: `work` runs on the compute thread (compute.h; no JS access there), `done` builds the JS
// result on the main thread. Errors thrown by either reject the promise with the JS error of their kind (jsError);
// a call once the process is exiting rejects at once.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "convert.h"

namespace penny {

class Task {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // Once per environment (the main thread, each worker thread), from the module's init.
  static void Setup(Napi::Env env);

  // `keepAlive`: JS values (the model, input arrays) that must outlive the work.
  static Napi::Promise Run(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive);

  // The way back to one environment's main thread; defined in task.cc.
  struct Link;

 private:
  Task(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive, std::shared_ptr<Link> link);
  static void Settle(napi_env env, napi_value, void*, void* data);
  void settle(Napi::Env env);

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::ObjectReference> refs_;
  std::shared_ptr<Link> link_;
  bool failed_ = false;
  ErrorKind errorKind_ = ErrorKind::Native;
  std::string error_;
};

}  // namespace penny
