#include "distributed.h"

#include "model.h"

#ifdef PENNY_DISTRIBUTED
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <vector>

#include "compute.h"
#include "convert.h"
#include "task.h"
#endif

namespace penny {

#ifdef PENNY_DISTRIBUTED
namespace {

using std::chrono::milliseconds;

// One rank's link to the others.
struct Comm {
  int rank = 0, size = 1;
  milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

// Gradient averaging, as DDP's Reducer does it: the trained parameters in reverse (the order backward produces their
// gradients in), packed into buckets of at most `capBytes` (the first smaller, so that communication starts early).
// A post-accumulate-grad hook on each parameter copies its gradient into its bucket; a full bucket's allreduce is
// launched at once, on Gloo's threads, while backward goes on. Buckets are launched strictly in order — Gloo pairs
// the ranks' collectives by their order, so every rank must launch them alike whatever order its hooks fire in.
class BucketSync : public GradSync, public std::enable_shared_from_this<BucketSync> {
 public:
  BucketSync(std::shared_ptr<Comm> comm, std::shared_ptr<Model::Core> core, int64_t capBytes, int64_t firstCapBytes)
      : comm_(std::move(comm)), core_(std::move(core)) {
    const auto& params = core_->params;
    where_.resize(params.size(), {SIZE_MAX, 0});
    int64_t filled = 0;
    for (size_t n = params.size(); n-- > 0;) {
      if (core_->buffer[n]) continue;
      int64_t bytes = params[n].numel() * params[n].element_size();
      int64_t cap = buckets_.size() <= 1 ? firstCapBytes : capBytes;
      if (buckets_.empty() || (filled > 0 && filled + bytes > cap)) {
        buckets_.emplace_back();
        filled = 0;
      }
      auto& b = buckets_.back();
      where_[n] = {buckets_.size() - 1, b.members.size()};
      b.members.push_back(n);
      b.offsets.push_back(b.numel);
      b.numel += params[n].numel();
      filled += bytes;
    }
    for (auto& b : buckets_) b.flat = at::zeros({b.numel}, params[0].options());
  }

  // Hooks hold the sync weakly: a parameter outlives a group that was closed.
  void install() {
    struct Ready : torch::autograd::PostAccumulateGradHook {
      std::weak_ptr<BucketSync> sync;
      size_t param;
      Ready(std::weak_ptr<BucketSync> s, size_t p) : sync(std::move(s)), param(p) {}
      void operator()(const torch::autograd::Variable& v) override {
        if (auto s = sync.lock()) s->ready(param, v);
      }
    };
    for (size_t n = 0; n < where_.size(); n++) {
      if (where_[n].first == SIZE_MAX) continue;
      torch::autograd::impl::set_post_acc_grad_hooks(core_->params[n], std::make_unique<Ready>(weak_from_this(), n));
    }
  }

  void uninstall() {
    if (core_->params.size() != where_.size()) return;  // disposed: the hooks went with the parameters
    for (size_t n = 0; n < where_.size(); n++)
      if (where_[n].first != SIZE_MAX) torch::autograd::impl::set_post_acc_grad_hooks(core_->params[n], nullptr);
  }

  void begin() override {
    for (auto& b : buckets_) {
      b.pending = b.members.size();
      b.ready.assign(b.members.size(), false);
      b.work.reset();
    }
    next_ = 0;
    active_ = true;
  }

  void end() override {
    if (!active_) return;
    active_ = false;
    // parameters that took no gradient this step (a rank with an empty batch: all of them) add zeros
    for (auto& b : buckets_) {
      for (size_t k = 0; k < b.members.size(); k++) {
        if (!b.ready[k]) b.flat.narrow(0, b.offsets[k], core_->params[b.members[k]].numel()).zero_();
      }
      b.pending = 0;
    }
    launchReady();
    for (auto& b : buckets_) {
      b.work->wait();
      b.flat.div_(comm_->size);
      for (size_t k = 0; k < b.members.size(); k++) {
        auto& p = core_->params[b.members[k]];
        auto avg = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
        if (p.grad().defined()) {
          p.mutable_grad().copy_(avg);
        } else {
          p.mutable_grad() = avg.clone();
        }
      }
    }
  }

  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    at::Tensor flat;
    std::vector<size_t> members;
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    size_t pending = 0;
    std::vector<bool> ready;
    c10::intrusive_ptr<c10d::Work> work;
  };

  void ready(size_t param, const torch::autograd::Variable& v) {
    if (!active_) return;  // a backward outside trainStep (lossAndGrads) is not averaged
    auto [bi, k] = where_[param];
    auto& b = buckets_[bi];
    if (b.ready[k] || !v.grad().defined()) return;
    b.ready[k] = true;
    b.flat.narrow(0, b.offsets[k], v.numel()).copy_(v.grad().reshape(-1));
    if (--b.pending == 0) launchReady();
  }

  void launchReady() {
    for (; next_ < buckets_.size() && buckets_[next_].pending == 0; next_++) {
      std::vector<at::Tensor> t{buckets_[next_].flat};
      buckets_[next_].work = comm_->gloo->allreduce(t);
    }
  }

  std::shared_ptr<Comm> comm_;
  std::shared_ptr<Model::Core> core_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> where_;  // parameter -> (bucket, slot); SIZE_MAX: a buffer
  size_t next_ = 0;
  bool active_ = false;
};

// A copy of `x` reduced over the ranks (a blocking allreduce).
at::Tensor reduced(const at::Tensor& x, c10d::ProcessGroupGloo& gloo,
                   c10d::ReduceOp::RedOpType op = c10d::ReduceOp::SUM) {
  std::vector<at::Tensor> t{x.detach().clone().contiguous()};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  gloo.allreduce(t, o)->wait();
  return t[0];
}

// A sum over the ranks that autograd can go through: its backward sums the gradient over the ranks too (sync_bn's
// statistics: every rank's loss depends on every rank's sums).
struct SumOverRanks : torch::autograd::Function<SumOverRanks> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo) {
    ctx->saved_data["gloo"] = c10::IValue::make_capsule(gloo);
    return reduced(x, *gloo);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto gloo = c10::static_intrusive_pointer_cast<c10d::ProcessGroupGloo>(ctx->saved_data["gloo"].toCapsule());
    return {reduced(grads[0], *gloo), at::Tensor()};
  }
};

bool isLoopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

class Group : public Napi::ObjectWrap<Group> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeGroup",
                       {
                           InstanceMethod<&Group::Connect>("connect"),
                           InstanceMethod<&Group::Allreduce>("allreduce"),
                           InstanceMethod<&Group::Barrier>("barrier"),
                           InstanceMethod<&Group::Broadcast>("broadcast"),
                           InstanceMethod<&Group::Attach>("attach"),
                           InstanceMethod<&Group::Publish>("publish"),
                           InstanceMethod<&Group::Fetch>("fetch"),
                           InstanceMethod<&Group::Close>("close"),
                       });
  }

  // new NativeGroup({ rank, size, masterAddr, masterPort, timeoutMs, ifname? }): not connected yet (connect()).
  explicit Group(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Group>(info), comm_(std::make_shared<Comm>()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "NativeGroup(options): options must be an object");
    auto o = info[0].As<Napi::Object>();
    auto num = [&](const char* k) {
      if (!o.Get(k).IsNumber())
        throw Napi::TypeError::New(env, std::string("NativeGroup: '") + k + "' must be a number");
      return o.Get(k).As<Napi::Number>().Int64Value();
    };
    comm_->rank = static_cast<int>(num("rank"));
    comm_->size = static_cast<int>(num("size"));
    comm_->timeout = milliseconds(num("timeoutMs"));
    port_ = static_cast<int>(num("masterPort"));
    if (!o.Get("masterAddr").IsString()) throw Napi::TypeError::New(env, "NativeGroup: 'masterAddr' must be a string");
    addr_ = o.Get("masterAddr").ToString().Utf8Value();
    if (o.Get("ifname").IsString()) ifname_ = o.Get("ifname").ToString().Utf8Value();
    if (comm_->size < 1 || comm_->rank < 0 || comm_->rank >= comm_->size || port_ < 1 || port_ > 65535) {
      throw Napi::RangeError::New(env, "NativeGroup: rank must lie in [0, size) and masterPort in [1, 65535]");
    }
  }

 private:
  // connect() -> Promise: the rendezvous (rank 0 serves the TCPStore and waits for the others) and Gloo's full mesh.
  // Gloo's device: the interface named by ifname (GLOO_SOCKET_IFNAME), else loopback when the master is on this
  // machine's loopback, else this host's name.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    auto comm = comm_;
    std::string addr = addr_, ifname = ifname_;
    int port = port_;
    return Task::Run(
        info.Env(),
        [comm, addr, ifname, port] {
          c10d::TCPStoreOptions so;
          so.port = static_cast<uint16_t>(port);
          so.isServer = comm->rank == 0;
          so.numWorkers = comm->size;
          so.waitWorkers = true;
          so.timeout = comm->timeout;
          so.useLibUV = false;
          auto tcp = c10::make_intrusive<c10d::TCPStore>(addr, so);
          comm->store = c10::make_intrusive<c10d::PrefixStore>("penny", tcp);
          auto opts = c10d::ProcessGroupGloo::Options::create(comm->timeout);
          opts->devices.push_back(!ifname.empty()    ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                  : isLoopback(addr) ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                     : c10d::ProcessGroupGloo::createDefaultDevice());
          comm->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(comm->store, comm->rank, comm->size, opts);
        },
        [](Napi::Env env) { return env.Undefined(); }, {info.This()});
  }

  void checkConnected(Napi::Env env) const {
    if (!comm_->gloo) throw Napi::Error::New(env, "NativeGroup: not connected (call connect() first), or closed");
  }

  // allreduce(Float64Array, 'sum' | 'max') -> Promise<Float64Array>: small host values (a stop flag, metrics).
  Napi::Value Allreduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    if (!info[0].IsTypedArray())
      throw Napi::TypeError::New(env, "allreduce(values, op): values must be a Float64Array");
    auto n = static_cast<int64_t>(info[0].As<Napi::TypedArray>().ElementLength());
    auto view = viewTypedArray(info[0], "values", at::kDouble, {n});
    std::string op = info[1].IsString() ? info[1].ToString().Utf8Value() : "sum";
    if (op != "sum" && op != "max") throw Napi::TypeError::New(env, "allreduce: op must be 'sum' or 'max'");
    auto comm = comm_;
    auto out = std::make_shared<at::Tensor>();
    return Task::Run(
        env,
        [comm, view, op, out] {
          *out = reduced(view, *comm->gloo, op == "max" ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM);
        },
        [out](Napi::Env env) { return toTypedArray(env, *out); }, {info.This(), info[0]});
  }

  // barrier() -> Promise: every rank has reached it, within the group's timeout (the other ranks wait here while
  // rank 0 alone validates and writes).
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    auto comm = comm_;
    return Task::Run(
        env, [comm] { comm->gloo->barrier()->wait(); }, [](Napi::Env env) { return env.Undefined(); }, {info.This()});
  }

  // broadcast(model) -> Promise: rank 0's parameters and buffers, to every rank (at the start, and after a resume).
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    auto core = Model::CoreOf(env, info[0], "broadcast(model): model");
    auto comm = comm_;
    return Task::Run(
        env,
        [comm, core] {
          at::NoGradGuard guard;
          std::vector<at::Tensor> flat;
          for (auto& p : core->params) flat.push_back(p.detach().reshape(-1));
          std::vector<at::Tensor> all{at::cat(flat)};
          c10d::BroadcastOptions o;
          o.rootRank = 0;
          comm->gloo->broadcast(all, o)->wait();
          int64_t at = 0;
          for (auto& p : core->params) {
            p.detach().copy_(all[0].narrow(0, at, p.numel()).view(p.sizes()));
            at += p.numel();
          }
        },
        [](Napi::Env env) { return env.Undefined(); }, {info.This(), info[0]});
  }

  // publish(key, text) -> Promise: a value in the rendezvous store, for every rank to fetch (rank 0's run result).
  Napi::Value Publish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    auto key = info[0].ToString().Utf8Value();
    auto text = info[1].ToString().Utf8Value();
    auto comm = comm_;
    return Task::Run(
        env, [comm, key, text] { comm->store->set(key, std::vector<uint8_t>(text.begin(), text.end())); },
        [](Napi::Env env) { return env.Undefined(); }, {info.This()});
  }

  // fetch(key, timeoutMs) -> Promise<string>: waits until some rank has published `key` (the other ranks wait here,
  // on their idle compute threads, while rank 0 tests and exports).
  Napi::Value Fetch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    auto key = info[0].ToString().Utf8Value();
    auto timeout = milliseconds(info[1].As<Napi::Number>().Int64Value());
    auto comm = comm_;
    auto out = std::make_shared<std::string>();
    return Task::Run(
        env,
        [comm, key, timeout, out] {
          comm->store->wait({key}, timeout);
          auto v = comm->store->get(key);
          out->assign(v.begin(), v.end());
        },
        [out](Napi::Env env) { return Napi::String::New(env, *out); }, {info.This()});
  }

  // attach(model, { bucketBytes, firstBucketBytes, syncBn }) -> the number of buckets: from now on the model's
  // trainStep averages its gradients over the ranks (and with syncBn, batch norm uses the whole batch's statistics).
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    checkConnected(env);
    auto core = Model::CoreOf(env, info[0], "attach(model, options): model");
    auto o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    auto bytes = [&](const char* k, int64_t dflt) {
      return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Int64Value() : dflt;
    };
    auto sync =
        std::make_shared<BucketSync>(comm_, core, bytes("bucketBytes", 25 << 20), bytes("firstBucketBytes", 1 << 20));
    if (o.Get("syncBn").ToBoolean()) {
      auto gloo = comm_->gloo;
      sync->syncBn = [gloo](const at::Tensor& x) { return SumOverRanks::apply(x, gloo); };
    }
    PENNY_TRY(env, {
      compute::run([&] {
        if (auto old = std::dynamic_pointer_cast<BucketSync>(core->sync)) old->uninstall();
        sync->install();
        core->sync = sync;
      });
    })
    attached_.push_back(core);
    return Napi::Number::New(env, static_cast<double>(sync->buckets()));
  }

  // close(): detaches the models and leaves the group (its store and Gloo's threads are released).
  void Close(const Napi::CallbackInfo& info) {
    auto comm = comm_;
    auto attached = std::move(attached_);
    PENNY_TRY(info.Env(), {
      compute::run([&] {
        for (auto& core : attached) {
          if (auto s = std::dynamic_pointer_cast<BucketSync>(core->sync)) s->uninstall();
          core->sync.reset();
        }
        comm->gloo.reset();
        comm->store.reset();
      });
    })
  }

  std::shared_ptr<Comm> comm_;
  std::string addr_, ifname_;
  int port_ = 0;
  std::vector<std::shared_ptr<Model::Core>> attached_;
};

}  // namespace

void defineGroup(Napi::Env env, Napi::Object exports) { exports.Set("NativeGroup", Group::Define(env)); }

#else

void defineGroup(Napi::Env, Napi::Object) {}

#endif

}  // namespace penny
