// Mixed precision for a model's passes: autocast (bf16 or fp16) around the forward, and fp16's dynamic loss scale.
// Parameters, gradients and AdamW's state stay float32 (the master weights), so checkpoints do not change. Tensor
// calls only: on the compute thread (compute.h), whose autocast state is its own (thread-local in LibTorch).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace penny {

// 'fp32' (no autocast), 'bf16' or 'fp16': the dtype autocast computes in, kFloat for none. Throws
// std::invalid_argument.
at::ScalarType parsePrecision(const std::string& name);

// Autocast on `device`'s type in `dtype` for this scope (nothing for kFloat); its cast cache cleared on leaving.
// Backward runs outside it, as PyTorch advises: autograd replays the casts the forward recorded.
class AutocastScope {
 public:
  AutocastScope(at::Device device, at::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType type_;
  bool on_;
  bool wasEnabled_ = false;
  at::ScalarType wasDtype_ = at::kFloat;
};

// fp16's dynamic loss scale, torch.amp.GradScaler's rule and kernels: the loss is multiplied by the scale before
// backward; unscale() divides the gradients by it and says whether any is inf/NaN (then the step is skipped); the
// scale halves after such a step and doubles after `growthInterval` good ones in a row. Starts at 2^16.
class LossScaler {
 public:
  at::Tensor scaled(const at::Tensor& loss);
  // Unscales the gradients of `params` in place and updates the scale; true when the step must be skipped.
  bool unscale(const std::vector<at::Tensor>& params);

 private:
  static constexpr double kInitialScale = 65536.0;
  static constexpr int64_t kGrowthInterval = 2000;
  void init(at::Device device);
  at::Tensor scale_, goodSteps_;
};

}  // namespace penny
