// A model in LibTorch: the parameters of a lowered graph, its interpreter and loss, its AdamW (optim.h); this file
// marshals between them and JS.
// Every tensor call runs on the compute thread (compute.h), which also serialises the calls on one model.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "graph.h"
#include "precision.h"

namespace penny {

// Set on a model by a distributed group (distributed.h): trainStep calls begin() before its forward and end() after
// its backward (or in place of both, for a rank with no samples in this batch); end() leaves every trained
// parameter's gradient averaged over the ranks. Runs on the compute thread.
struct GradSync {
  virtual ~GradSync() = default;
  virtual void begin() = 0;
  virtual void end() = 0;
  // sync_bn: batch norm's statistics summed over the ranks in trainStep's forward; empty: each rank's own
  CrossRankSum syncBn;
};

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Model(const Napi::CallbackInfo& info);

  struct Core {
    Graph graph;
    std::vector<std::string> names;
    std::vector<at::Tensor> params;
    std::vector<bool> decay;
    std::vector<bool> buffer;  // batch norm's running statistics: no gradient, not in the optimizer
    std::unique_ptr<torch::optim::AdamW> optimizer;
    at::Device device = at::kCPU;
    at::ScalarType dtype = at::kFloat;
    at::ScalarType autocast = at::kFloat;  // precision: the forward's autocast dtype (kFloat: none)
    LossScaler scaler;                     // precision fp16's loss scale
    bool disposed = false;
    std::shared_ptr<GradSync> sync;
  };
  // The model behind a NativeModel object (for distributed.cc); throws a TypeError naming `what` for anything else.
  static std::shared_ptr<Core> CoreOf(Napi::Env env, const Napi::Value& v, const char* what);

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value LossAndGrads(const Napi::CallbackInfo& info);
  Napi::Value GetParams(const Napi::CallbackInfo& info);
  void SetParams(const Napi::CallbackInfo& info);
  void SetOptimizer(const Napi::CallbackInfo& info);
  void SetPrecision(const Napi::CallbackInfo& info);
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info);
  void SetOptimizerState(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);

  int paramIndex(Napi::Env env, const std::string& name) const;
  int outputSlot(Napi::Env env, const std::string& name) const;
  void checkAlive(Napi::Env env) const;

  std::shared_ptr<Core> core_;
};

}  // namespace penny
