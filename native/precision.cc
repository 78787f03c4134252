#include "precision.h"

#include <ATen/autocast_mode.h>

#include <stdexcept>

namespace penny {

at::ScalarType parsePrecision(const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  throw std::invalid_argument("precision must be 'fp32', 'bf16' or 'fp16', got '" + name + "'");
}

AutocastScope::AutocastScope(at::Device device, at::ScalarType dtype) : type_(device.type()), on_(dtype != at::kFloat) {
  if (!on_) return;
  wasEnabled_ = at::autocast::is_autocast_enabled(type_);
  wasDtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_dtype(type_, dtype);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!on_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, wasEnabled_);
  at::autocast::set_autocast_dtype(type_, wasDtype_);
}

void LossScaler::init(at::Device device) {
  if (scale_.defined()) return;
  scale_ = at::full({1}, kInitialScale, at::TensorOptions().dtype(at::kFloat).device(device));
  goodSteps_ = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device));
}

at::Tensor LossScaler::scaled(const at::Tensor& loss) {
  init(loss.device());
  return loss * scale_.to(loss.scalar_type());
}

bool LossScaler::unscale(const std::vector<at::Tensor>& params) {
  at::NoGradGuard noGrad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return false;
  init(grads[0].device());  // a distributed rank whose first part of a batch was empty: the same start as the others
  auto foundInf = at::zeros({1}, scale_.options());
  at::_amp_foreach_non_finite_check_and_unscale_(grads, foundInf, scale_.to(at::kDouble).reciprocal().to(at::kFloat));
  at::_amp_update_scale_(scale_, goodSteps_, foundInf, 2.0, 0.5, kGrowthInterval);
  return foundInf.item<float>() > 0;
}

}  // namespace penny
