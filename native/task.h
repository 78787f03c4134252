// One async N-API call: `work` runs on the compute thread (compute.h; no JS access there), `done` builds the JS
// result on the main thread. Errors thrown by either reject the promise with LibTorch's message. A thread-safe
// function per call carries the result back and keeps the event loop alive until it has.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "compute.h"
#include "convert.h"

namespace penny {

class Task {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  // `keepAlive`: JS values (the model, input arrays) that must outlive the work.
  static Napi::Promise Run(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive) {
    auto* t = new Task(env, std::move(work), std::move(done), keepAlive);
    auto promise = t->deferred_.Promise();
    napi_status s = napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "penny-native"), 0, 1,
                                                    nullptr, nullptr, t, Settle, &t->tsfn_);
    if (s != napi_ok) {
      delete t;
      NAPI_THROW(Napi::Error::New(env, "penny-native: cannot create a thread-safe function"), Napi::Promise());
    }
    compute::post([t] {
      try {
        t->work_();
      } catch (const std::exception& e) {
        t->error_ = errorMessage(e);
        t->failed_ = true;
      }
      // The queue is unbounded, so this never blocks; it fails only while the environment is being torn down.
      napi_threadsafe_function tsfn = t->tsfn_;
      napi_call_threadsafe_function(tsfn, t, napi_tsfn_nonblocking);
      napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    });
    return promise;
  }

 private:
  Task(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive)
      : deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {
    for (const auto& v : keepAlive) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  // On the main thread, once the work has run.
  static void Settle(napi_env rawEnv, napi_value, void*, void* data) {
    auto* t = static_cast<Task*>(data);
    // Environment torn down (a worker thread exiting): its promise and references are gone with it; the task is
    // left, not deleted, since releasing those references now would touch a dead environment.
    if (rawEnv == nullptr) return;
    Napi::Env env(rawEnv);
    if (t->failed_) {
      t->deferred_.Reject(Napi::Error::New(env, t->error_).Value());
    } else {
      try {
        t->deferred_.Resolve(t->done_(env));
      } catch (const Napi::Error& e) {
        t->deferred_.Reject(e.Value());
      } catch (const std::exception& e) {
        t->deferred_.Reject(Napi::Error::New(env, errorMessage(e)).Value());
      }
    }
    delete t;
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::ObjectReference> refs_;
  napi_threadsafe_function tsfn_ = nullptr;
  bool failed_ = false;
  std::string error_;
};

}  // namespace penny
