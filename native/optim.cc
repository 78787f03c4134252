#include "optim.h"

#include "convert.h"

namespace penny::optim {
namespace {

// AdamW state for `p` before its first step: zero moments shaped like it.
std::unique_ptr<torch::optim::AdamWParamState> fresh(const at::Tensor& p) {
  at::NoGradGuard noGrad;
  auto s = std::make_unique<torch::optim::AdamWParamState>();
  s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
  s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
  return s;
}

}  // namespace

std::unique_ptr<torch::optim::AdamW> make(const std::vector<at::Tensor>& params, const std::vector<bool>& decay,
                                          const std::vector<bool>& optimized, const Hyper& h) {
  auto opts = torch::optim::AdamWOptions(h.lr).betas({h.beta1, h.beta2}).eps(h.eps);
  std::vector<at::Tensor> withDecay, without;
  for (size_t i = 0; i < params.size(); i++) {
    if (optimized[i]) (decay[i] ? withDecay : without).push_back(params[i]);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(withDecay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(h.weightDecay)));
  groups.emplace_back(without, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(groups, opts);
}

void step(torch::optim::AdamW& opt, double lr) {
  at::NoGradGuard noGrad;
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
    o.lr(lr);
    std::vector<at::Tensor> params, grads, expAvgs, expAvgSqs, steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& slot = opt.state()[p.unsafeGetTensorImpl()];
      if (!slot) slot = fresh(p);
      auto& s = static_cast<torch::optim::AdamWParamState&>(*slot);
      s.step(s.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      expAvgs.push_back(s.exp_avg());
      expAvgSqs.push_back(s.exp_avg_sq());
      steps.push_back(
          at::scalar_tensor(static_cast<double>(s.step()), at::TensorOptions().dtype(at::kFloat).device(p.device())));
    }
    if (params.empty()) continue;
    at::_fused_adamw_(params, grads, expAvgs, expAvgSqs, {}, steps, o.lr(), std::get<0>(o.betas()),
                      std::get<1>(o.betas()), o.weight_decay(), o.eps(), /*amsgrad=*/false, /*maximize=*/false);
  }
}

std::vector<std::pair<size_t, Moments>> exportState(torch::optim::AdamW& opt, const std::vector<at::Tensor>& params) {
  std::vector<std::pair<size_t, Moments>> out;
  auto& state = opt.state();
  for (size_t i = 0; i < params.size(); i++) {
    auto it = state.find(params[i].unsafeGetTensorImpl());
    if (it == state.end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    out.push_back({i, {s.step(), toHost(s.exp_avg()), toHost(s.exp_avg_sq())}});
  }
  return out;
}

void importState(torch::optim::AdamW& opt, const std::vector<at::Tensor>& params,
                 const std::vector<std::pair<size_t, Moments>>& state) {
  at::NoGradGuard noGrad;
  auto& live = opt.state();
  live.clear();
  for (const auto& [i, m] : state) {
    auto s = fresh(params[i]);
    s->step(m.step);
    s->exp_avg().copy_(m.expAvg);
    s->exp_avg_sq().copy_(m.expAvgSq);
    live[params[i].unsafeGetTensorImpl()] = std::move(s);
  }
}

}  // namespace penny::optim
