#include "task.h"

#include <mutex>

#include "compute.h"
#include "convert.h"

namespace penny {

// One thread-safe function per environment carries finished tasks back to its main thread. It keeps the event loop
// alive only while tasks are pending. When the environment is torn down (a worker terminated, the process exiting)
// Node finalizes it; from then on `alive` is false and the compute thread neither runs that environment's queued work
// nor calls into the freed function (calling it after teardown aborted the process), and the teardown waits for the
// job running then.
struct Task::Link {
  std::mutex mu;
  bool alive = true;  // guarded by mu
  napi_threadsafe_function tsfn = nullptr;
  int pending = 0;  // main thread only
};

namespace {

void onFinalize(napi_env, void* data, void*) {
  auto* link = static_cast<std::shared_ptr<Task::Link>*>(data);
  {
    std::lock_guard<std::mutex> lock((*link)->mu);
    (*link)->alive = false;
  }
  delete link;
  // The environment's queued jobs now skip their work; one may be running: let it end before the environment (and,
  // for the last one, the process with LibTorch's static destructors) goes.
  compute::waitForRunning();
}

std::shared_ptr<Task::Link> linkOf(Napi::Env env) {
  auto* link = env.GetInstanceData<std::shared_ptr<Task::Link>>();
  if (!link) throw Napi::Error::New(env, "penny-native: Task::Setup was not called for this environment");
  return *link;
}

}  // namespace

void Task::Setup(Napi::Env env) {
  auto link = std::make_shared<Link>();
  napi_status s =
      napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "penny-native"), 0, 1,
                                      new std::shared_ptr<Link>(link), onFinalize, nullptr, Settle, &link->tsfn);
  if (s != napi_ok) throw Napi::Error::New(env, "penny-native: cannot create a thread-safe function");
  napi_unref_threadsafe_function(env, link->tsfn);
  env.SetInstanceData(new std::shared_ptr<Link>(link));
}

Task::Task(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive, std::shared_ptr<Link> link)
    : deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      done_(std::move(done)),
      link_(std::move(link)) {
  for (const auto& v : keepAlive) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
}

Napi::Promise Task::Run(Napi::Env env, Work work, Done done, const std::vector<Napi::Value>& keepAlive) {
  auto link = linkOf(env);
  auto* t = new Task(env, std::move(work), std::move(done), keepAlive, link);
  auto promise = t->deferred_.Promise();
  if (link->pending++ == 0) napi_ref_threadsafe_function(env, link->tsfn);
  bool queued = compute::post([t, link] {
    {
      std::lock_guard<std::mutex> lock(link->mu);
      if (!link->alive) return;  // the environment is gone: so are the task's promise and references; leave it
    }
    try {
      t->work_();
    } catch (const std::exception& e) {
      t->error_ = errorMessage(e);
      t->errorKind_ = errorKind(e);
      t->failed_ = true;
    }
    std::lock_guard<std::mutex> lock(link->mu);
    // The queue is unbounded: this never blocks.
    if (link->alive) napi_call_threadsafe_function(link->tsfn, t, napi_tsfn_nonblocking);
  });
  if (!queued) {  // after shutdown: a promise nothing would ever settle
    t->failed_ = true;
    t->error_ = "penny-native: the process is exiting; no more work is taken";
    t->settle(env);
    delete t;
    if (--link->pending == 0) napi_unref_threadsafe_function(env, link->tsfn);
  }
  return promise;
}

// On the main thread, once the work has run.
void Task::Settle(napi_env rawEnv, napi_value, void*, void* data) {
  auto* t = static_cast<Task*>(data);
  if (rawEnv == nullptr) return;  // torn down meanwhile: as above
  try {
    t->settle(Napi::Env(rawEnv));
  } catch (...) {
    // JS cannot run any more (a worker being terminated): the promise goes with its environment
  }
  auto link = t->link_;
  delete t;
  if (--link->pending == 0) napi_unref_threadsafe_function(rawEnv, link->tsfn);
}

void Task::settle(Napi::Env env) {
  if (failed_) return deferred_.Reject(jsError(env, errorKind_, error_).Value());
  Napi::Value result;
  try {
    result = done_(env);
  } catch (const Napi::Error& e) { return deferred_.Reject(e.Value()); } catch (const std::exception& e) {
    return deferred_.Reject(jsError(env, e).Value());
  }
  deferred_.Resolve(result);
}

}  // namespace penny
