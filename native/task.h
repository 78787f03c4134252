// One async N-API call: `work` runs on a libuv worker thread (no JS access), `done` builds the JS result on the
// main thread. Errors thrown by either reject the promise with LibTorch's message.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

#include "convert.h"

namespace penny {

class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // `keepAlive`: JS values (the model, input arrays) that must outlive the work.
  static Napi::Promise Run(Napi::Env env, Work work, Done done, std::vector<Napi::Value> keepAlive) {
    auto* t = new Task(env, std::move(work), std::move(done), keepAlive);
    auto p = t->deferred_.Promise();
    t->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(errorMessage(e));
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, errorMessage(e)).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Task(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive)
      : Napi::AsyncWorker(env, "penny-native"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {
    for (const auto& v : keepAlive) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::ObjectReference> refs_;
};

}  // namespace penny
