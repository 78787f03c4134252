#include "model.h"

#include <cmath>

#include "compute.h"
#include "convert.h"
#include "optim.h"
#include "task.h"

namespace penny {

// Marks NativeModel objects, so that CoreOf can tell one from any other object (N-API type tags).
static constexpr napi_type_tag kModelTag = {0x70656e6e795f6d6fULL, 0x64656c5f74616731ULL};

Napi::Function Model::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&Model::Forward>("forward"),
                         InstanceMethod<&Model::TrainStep>("trainStep"),
                         InstanceMethod<&Model::LossAndGrads>("lossAndGrads"),
                         InstanceMethod<&Model::GetParams>("getParams"),
                         InstanceMethod<&Model::SetParams>("setParams"),
                         InstanceMethod<&Model::SetOptimizer>("setOptimizer"),
                         InstanceMethod<&Model::SetPrecision>("setPrecision"),
                         InstanceMethod<&Model::GetOptimizerState>("getOptimizerState"),
                         InstanceMethod<&Model::SetOptimizerState>("setOptimizerState"),
                         InstanceMethod<&Model::Dispose>("dispose"),
                         InstanceAccessor<&Model::Device>("device"),
                     });
}

// A precision name as autocast's dtype; bf16 / fp16 keep float32 master weights, so they need dtype float32.
static at::ScalarType precisionArg(Napi::Env env, const Napi::Value& v, at::ScalarType dtype) {
  at::ScalarType p;
  try {
    p = parsePrecision(v.ToString().Utf8Value());
  } catch (const std::invalid_argument& e) { throw Napi::TypeError::New(env, e.what()); }
  if (p != at::kFloat && dtype != at::kFloat) {
    throw Napi::TypeError::New(env,
                               "precision bf16/fp16 keeps float32 master weights: the model's dtype must be float32");
  }
  return p;
}

// new NativeModel(lowered, params: [{name, shape, decay}], { device, dtype, precision? })
Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info), core_(std::make_shared<Core>()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsArray() || !info[2].IsObject()) {
    throw Napi::TypeError::New(env, "NativeModel(graph, params, options): expected (object, array, object)");
  }
  auto opts = info[2].As<Napi::Object>();
  std::string device = opts.Has("device") ? opts.Get("device").ToString().Utf8Value() : "cpu";
  std::string dtype = opts.Has("dtype") ? opts.Get("dtype").ToString().Utf8Value() : "float32";
  if (dtype != "float32" && dtype != "float64") {
    throw Napi::TypeError::New(env, "options.dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  info.This().As<Napi::Object>().TypeTag(&kModelTag);
  auto& c = *core_;
  c.dtype = dtype == "float64" ? at::kDouble : at::kFloat;
  c.autocast =
      precisionArg(env, opts.Has("precision") ? opts.Get("precision") : Napi::String::New(env, "fp32"), c.dtype);
  PENNY_TRY(env, {
    c.device = at::Device(device);
    if (c.device.is_cuda() && !torch::cuda::is_available()) {
      throw Napi::Error::New(env, "device '" + device + "' asked for, but CUDA is not available to this LibTorch (" +
                                      std::string(TORCH_VERSION) + "): no CUDA device, or a CPU-only build");
    }
    if (c.device.is_cuda() && c.device.has_index() && c.device.index() >= torch::cuda::device_count()) {
      throw Napi::Error::New(env, "device '" + device + "' asked for, but only " +
                                      std::to_string(torch::cuda::device_count()) + " CUDA device(s) are visible");
    }
  })
  c.graph = parseGraph(info[0].As<Napi::Object>());
  auto params = info[1].As<Napi::Array>();
  if (static_cast<int>(params.Length()) != c.graph.numParams) {
    throw Napi::TypeError::New(env, "params: the graph has " + std::to_string(c.graph.numParams) + " parameters, got " +
                                        std::to_string(params.Length()));
  }
  auto options = at::TensorOptions().dtype(c.dtype).device(c.device);
  std::vector<std::vector<int64_t>> shapes;
  for (uint32_t i = 0; i < params.Length(); i++) {
    auto p = params.Get(i).As<Napi::Object>();
    c.names.push_back(p.Get("name").ToString().Utf8Value());
    auto shape = shapeArg(p.Get("shape"), ("params[" + std::to_string(i) + "].shape").c_str());
    bool buffer = p.Has("buffer") && p.Get("buffer").ToBoolean().Value();
    shapes.push_back(shape);
    c.decay.push_back(p.Get("decay").ToBoolean().Value());
    c.buffer.push_back(buffer);
  }
  PENNY_TRY(env, {
    compute::run([&] {
      for (size_t i = 0; i < shapes.size(); i++)
        c.params.push_back(at::zeros(shapes[i], options).set_requires_grad(!c.buffer[i]));
    });
  })
}

std::shared_ptr<Model::Core> Model::CoreOf(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kModelTag)) {
    throw Napi::TypeError::New(env, std::string(what) + " must be a NativeModel");
  }
  auto* m = Napi::ObjectWrap<Model>::Unwrap(v.As<Napi::Object>());
  m->checkAlive(env);
  return m->core_;
}

void Model::checkAlive(Napi::Env env) const {
  if (core_->disposed) throw Napi::Error::New(env, "this model was disposed");
}

int Model::paramIndex(Napi::Env env, const std::string& name) const {
  for (size_t i = 0; i < core_->names.size(); i++)
    if (core_->names[i] == name) return static_cast<int>(i);
  throw Napi::Error::New(env, "no parameter named '" + name + "' in this model");
}

int Model::outputSlot(Napi::Env env, const std::string& name) const {
  auto it = core_->graph.outputs.find(name);
  if (it == core_->graph.outputs.end()) throw Napi::Error::New(env, "the graph has no output named '" + name + "'");
  return it->second;
}

// The image batch, (optionally) labels and soft targets of a step call, checked on the main thread.
struct Batch {
  at::Tensor x, y, targets;
  std::vector<Napi::Value> keep;
};

// `targets` (a Float32Array, [batch, classes]) or undefined: soft labels that replace the labels' one-hot rows.
// Its class count is the logits' (a mismatch fails in the loss, with LibTorch's message).
static void targetsArg(const Napi::Value& v, Batch& b) {
  if (v.IsUndefined() || v.IsNull()) return;
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), "targets must be a Float32Array");
  const int64_t n = static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()), batch = b.x.size(0);
  // a distributed rank's empty part of a batch has empty targets (and n % 0 would be SIGFPE)
  if (batch == 0 ? n != 0 : n % batch != 0) {
    throw Napi::TypeError::New(
        v.Env(), "targets has " + std::to_string(n) + " values, not a multiple of the batch " + std::to_string(batch));
  }
  b.targets = viewTypedArray(v, "targets", at::kFloat, {batch, batch ? n / batch : 0});
  b.keep.push_back(v);
}

static Batch batchArgs(const Napi::CallbackInfo& info, at::ScalarType dtype, bool withLabels, bool emptyBatch = false) {
  Batch b;
  auto shape = shapeArg(info[1], "shape", emptyBatch);
  b.x = viewTypedArray(info[0], "pixels", dtype, shape);
  b.keep = {info.This(), info[0]};
  if (withLabels) {
    if (!info[2].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "labels must be an Int32Array");
    b.y = viewTypedArray(info[2], "labels", at::kInt,
                         {static_cast<int64_t>(info[2].As<Napi::TypedArray>().ElementLength())});
    if (b.y.size(0) != shape[0]) {
      throw Napi::TypeError::New(info.Env(), "labels has " + std::to_string(b.y.size(0)) + " entries for a batch of " +
                                                 std::to_string(shape[0]));
    }
    b.keep.push_back(info[2]);
  }
  return b;
}

// forward(pixels, shape, outputName = "logits") -> Promise<Float32Array>
Napi::Value Model::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  auto batch = batchArgs(info, core_->dtype, false);
  int slot = outputSlot(env, info[2].IsString() ? info[2].ToString().Utf8Value() : "logits");
  auto core = core_;
  auto out = std::make_shared<at::Tensor>();
  return Task::Run(
      env,
      [core, batch, slot, out] {
        c10::InferenceMode guard;
        AutocastScope autocast(core->device, core->autocast);
        *out = toHost(runGraph(core->graph, core->params, batch.x.to(core->device), slot, /*training=*/false));
      },
      [out](Napi::Env env) { return toTypedArray(env, *out); }, batch.keep);
}

// The loss of one batch in training mode (batch norm uses and updates batch statistics), on the compute thread:
// cross-entropy of the logits, or NLL when they are log-probabilities already; against soft targets when given.
// The forward runs under the model's autocast; the loss is computed from float32 logits.
static at::Tensor lossOf(const Model::Core& c, const Batch& b, at::Tensor* logitsOut,
                         const CrossRankSum* syncBn = nullptr) {
  const auto& g = c.graph;
  at::Tensor logits;
  {
    AutocastScope autocast(c.device, c.autocast);
    logits = runGraph(g, c.params, b.x.to(c.device), g.outputs.at("logits"), /*training=*/true, syncBn);
  }
  if (c.autocast != at::kFloat) logits = logits.to(at::kFloat);
  auto logp = g.logitsAreLogProbs ? logits : at::log_softmax(logits, 1);
  auto loss = b.targets.defined() ? -(b.targets.to(c.device, logits.scalar_type()) * logp).sum(1).mean()
                                  : at::nll_loss(logp, b.y.to(c.device, at::kLong));
  if (logitsOut) *logitsOut = toHost(logits);
  return loss;
}

// trainStep(pixels, shape, labels, { lr, targets?, lossScale? }) -> Promise<{ loss, logits, skipped }>: one AdamW step
// (fp16: skipped when a gradient is inf/NaN at the current loss scale, which then halves). With a
// distributed group attached, the gradients are every rank's average, and a rank may bring an empty batch (the last
// batch of an epoch split over more ranks than it has samples); `lossScale` weighs this rank's mean loss by its share
// of the global batch (its samples x ranks / the global batch), so that the average is the global batch's mean.
Napi::Value Model::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  auto batch = batchArgs(info, core_->dtype, true, /*emptyBatch=*/core_->sync != nullptr);
  if (!info[3].IsObject() || !info[3].As<Napi::Object>().Get("lr").IsNumber()) {
    throw Napi::TypeError::New(env, "options.lr must be a number");
  }
  if (!core_->optimizer) throw Napi::Error::New(env, "trainStep: call setOptimizer first");
  auto opts = info[3].As<Napi::Object>();
  double lr = opts.Get("lr").As<Napi::Number>().DoubleValue();
  double scale = opts.Get("lossScale").IsNumber() ? opts.Get("lossScale").As<Napi::Number>().DoubleValue() : 1.0;
  targetsArg(opts.Get("targets"), batch);
  auto core = core_;
  struct Out {
    double loss;
    at::Tensor logits;
    bool skipped = false;
  };
  auto result = std::make_shared<Out>();
  return Task::Run(
      env,
      [core, batch, lr, scale, result] {
        auto& opt = *core->optimizer;
        auto sync = core->sync;
        const CrossRankSum* syncBn = sync && sync->syncBn ? &sync->syncBn : nullptr;
        const bool fp16 = core->autocast == at::kHalf;
        if (sync) sync->begin();
        opt.zero_grad(true);
        if (batch.x.size(0) > 0) {
          auto loss = lossOf(*core, batch, &result->logits, syncBn);
          auto scaled = scale == 1.0 ? loss : loss * scale;
          (fp16 ? core->scaler.scaled(scaled) : scaled).backward();
          result->loss = loss.item<double>();
        } else {
          // an empty part of the batch: with sync_bn it still joins batch norm's sums, forward and backward, adding 0
          if (syncBn) {
            (runGraph(core->graph, core->params, batch.x.to(core->device), core->graph.outputs.at("logits"), true,
                      syncBn)
                 .sum() *
             0)
                .backward();
          }
          result->loss = std::nan("");
          result->logits = at::empty({0});
        }
        if (sync) sync->end();
        // after the ranks' average: an inf on any rank is inf on all, so every rank skips the same steps
        result->skipped = fp16 && core->scaler.unscale(core->params);
        if (!result->skipped) optim::step(opt, lr);
      },
      [result](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("loss", result->loss);
        o.Set("logits", toTypedArray(env, result->logits));
        o.Set("skipped", result->skipped);
        return o;
      },
      batch.keep);
}

// lossAndGrads(pixels, shape, labels, targets?) -> Promise<{ loss, logits, grads: { name: Float32Array } }>: every
// trained parameter's gradient (not the buffers'); no optimizer step.
Napi::Value Model::LossAndGrads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  auto batch = batchArgs(info, core_->dtype, true);
  targetsArg(info[3], batch);
  auto core = core_;
  struct Out {
    double loss;
    at::Tensor logits;
    std::vector<at::Tensor> grads;
  };
  auto out = std::make_shared<Out>();
  return Task::Run(
      env,
      [core, batch, out] {
        auto loss = lossOf(*core, batch, &out->logits);
        std::vector<at::Tensor> trained;
        for (size_t i = 0; i < core->params.size(); i++)
          if (!core->buffer[i]) trained.push_back(core->params[i]);
        auto grads = torch::autograd::grad({loss}, trained, {}, false, false, true);
        out->loss = loss.item<double>();
        for (size_t i = 0, j = 0; i < core->params.size(); i++) {
          if (core->buffer[i]) {
            out->grads.emplace_back();
            continue;
          }
          const auto& gi = grads[j++];
          out->grads.push_back(toHost(gi.defined() ? gi : at::zeros_like(core->params[i])));
        }
      },
      [core, out](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("loss", out->loss);
        o.Set("logits", toTypedArray(env, out->logits));
        auto g = Napi::Object::New(env);
        for (size_t i = 0; i < out->grads.size(); i++) {
          if (out->grads[i].defined()) g.Set(core->names[i], toTypedArray(env, out->grads[i]));
        }
        o.Set("grads", g);
        return o;
      },
      batch.keep);
}

// getParams(names?) -> { name: Float32Array } (all parameters when names is omitted)
Napi::Value Model::GetParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  std::vector<int> which;
  if (info.Length() > 0 && info[0].IsArray()) {
    auto a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) which.push_back(paramIndex(env, a.Get(i).ToString().Utf8Value()));
  } else {
    for (size_t i = 0; i < core_->params.size(); i++) which.push_back(static_cast<int>(i));
  }
  std::vector<at::Tensor> host(which.size());
  PENNY_TRY(env, {
    compute::run([&] {
      for (size_t k = 0; k < which.size(); k++) host[k] = toHost(core_->params[which[k]]);
    });
  })
  // On the CPU the host tensors are the parameters themselves: nothing changes them before this returns, since only
  // this thread queues work on this model.
  auto o = Napi::Object::New(env);
  for (size_t k = 0; k < which.size(); k++) o.Set(core_->names[which[k]], toTypedArray(env, host[k]));
  return o;
}

// `value` (a typed array of the model's dtype) as a tensor shaped like `dst` (a view, no copy), naming `what` when it
// does not fit. On the main thread; the copy into `dst` is the caller's, on the compute thread.
static at::Tensor source(Napi::Env env, const at::Tensor& dst, const Napi::Value& value, const std::string& what,
                         at::ScalarType dtype) {
  std::vector<int64_t> shape(dst.sizes().begin(), dst.sizes().end());
  if (value.IsTypedArray() && static_cast<int64_t>(value.As<Napi::TypedArray>().ElementLength()) != dst.numel()) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    throw Napi::TypeError::New(env, what + ": expected " + std::to_string(dst.numel()) + " values (shape " + s +
                                        "]), got " + std::to_string(value.As<Napi::TypedArray>().ElementLength()));
  }
  return viewTypedArray(value, what.c_str(), dtype, shape);
}

// setParams({ name: Float32Array, ... }): any subset; each must match the parameter's size. Every value is checked
// before any is copied, so a bad one changes nothing.
void Model::SetParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setParams(values): values must be an object");
  auto values = info[0].As<Napi::Object>();
  auto keys = values.GetPropertyNames();
  std::vector<std::pair<int, at::Tensor>> copies;
  for (uint32_t k = 0; k < keys.Length(); k++) {
    std::string name = keys.Get(k).ToString();
    int i = paramIndex(env, name);
    copies.emplace_back(i, source(env, core_->params[i], values.Get(name), "params['" + name + "']", core_->dtype));
  }
  auto& params = core_->params;
  PENNY_TRY(env, {
    compute::run([&] {
      at::NoGradGuard ng;
      for (auto& [i, src] : copies) params[i].copy_(src);
    });
  })
}

// setOptimizer({ lr, beta1, beta2, eps, weightDecay }): a fresh AdamW; parameters marked decay: false get none.
void Model::SetOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setOptimizer(options): options must be an object");
  auto o = info[0].As<Napi::Object>();
  auto num = [&](const char* k) {
    if (!o.Get(k).IsNumber())
      throw Napi::TypeError::New(env, std::string("optimizer option '") + k + "' must be a number");
    return o.Get(k).As<Napi::Number>().DoubleValue();
  };
  optim::Hyper h{num("lr"), num("beta1"), num("beta2"), num("eps"), num("weightDecay")};
  auto& c = *core_;
  std::vector<bool> optimized(c.buffer.size());
  for (size_t i = 0; i < optimized.size(); i++) optimized[i] = !c.buffer[i];
  PENNY_TRY(env, { compute::run([&] { c.optimizer = optim::make(c.params, c.decay, optimized, h); }); })
}

// setPrecision('fp32' | 'bf16' | 'fp16'): the autocast of the passes queued from now on
void Model::SetPrecision(const Napi::CallbackInfo& info) {
  checkAlive(info.Env());
  auto p = precisionArg(info.Env(), info[0], core_->dtype);
  auto& c = *core_;
  PENNY_TRY(info.Env(), { compute::run([&] { c.autocast = p; }); })
}

// getOptimizerState() -> { name: { step, expAvg, expAvgSq } } for every parameter that has taken a step.
Napi::Value Model::GetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  std::vector<std::pair<size_t, optim::Moments>> state;
  auto& c = *core_;
  PENNY_TRY(env, {
    compute::run([&] {
      if (c.optimizer) state = optim::exportState(*c.optimizer, c.params);
    });
  })
  // As in getParams, the host tensors may be the live state itself.
  auto o = Napi::Object::New(env);
  for (const auto& [i, m] : state) {
    auto e = Napi::Object::New(env);
    e.Set("step", static_cast<double>(m.step));
    e.Set("expAvg", toTypedArray(env, m.expAvg));
    e.Set("expAvgSq", toTypedArray(env, m.expAvgSq));
    o.Set(c.names[i], e);
  }
  return o;
}

// setOptimizerState(state): the inverse of getOptimizerState; parameters absent from `state` start fresh.
void Model::SetOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  checkAlive(env);
  if (!core_->optimizer) throw Napi::Error::New(env, "setOptimizerState: call setOptimizer first");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setOptimizerState(state): state must be an object");
  auto in = info[0].As<Napi::Object>();
  std::vector<std::pair<size_t, optim::Moments>> state;
  auto& c = *core_;
  auto keys = in.GetPropertyNames();
  for (uint32_t k = 0; k < keys.Length(); k++) {
    std::string name = keys.Get(k).ToString();
    int i = paramIndex(env, name);
    if (!in.Get(name).IsObject())
      throw Napi::TypeError::New(env, "setOptimizerState: state['" + name + "'] must be an object");
    auto e = in.Get(name).As<Napi::Object>();
    const auto& p = c.params[i];
    double step = e.Get("step").IsNumber() ? e.Get("step").As<Napi::Number>().DoubleValue() : -1;
    if (!(step >= 0 && step <= 9.0e15 && step == std::floor(step))) {
      throw Napi::RangeError::New(env, "setOptimizerState: state['" + name + "'].step must be an integer >= 0");
    }
    state.push_back({static_cast<size_t>(i),
                     {static_cast<int64_t>(step),
                      source(env, p, e.Get("expAvg"), "optimizer state['" + name + "'].expAvg", c.dtype),
                      source(env, p, e.Get("expAvgSq"), "optimizer state['" + name + "'].expAvgSq", c.dtype)}});
  }
  PENNY_TRY(env, { compute::run([&] { optim::importState(*c.optimizer, c.params, state); }); })
}

// dispose(): frees the parameters and optimizer state now rather than at garbage collection (after the calls
// already queued on this model have run).
void Model::Dispose(const Napi::CallbackInfo& info) {
  auto& c = *core_;
  // after shutdown run() throws ("the process is exiting"): a JS error, not std::terminate
  PENNY_TRY(info.Env(), {
    compute::run([&] {
      c.optimizer.reset();
      c.sync.reset();  // its autograd hooks go with the parameters
      c.params.clear();
    });
  })
  c.disposed = true;
}

Napi::Value Model::Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), core_->device.str()); }

}  // namespace penny
