#include "graph.h"

#include <cmath>
#include <stdexcept>

namespace penny {
namespace {

// The op named `s`; false if there is none.
bool parseOp(const std::string& s, Op* op) {
  auto it = kOpsByName.find(s);
  if (it == kOpsByName.end()) return false;
  *op = it->second;
  return true;
}

// Node n's attributes, as op K names them.
template <Op K>
Attrs<K> attrs(const Node& n) {
  return Attrs<K>::read(n.ints, n.floats);
}

template <typename T>
std::vector<T> numbers(const Napi::Value& v) {
  std::vector<T> out;
  if (!v.IsArray()) return out;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(static_cast<T>(a.Get(i).As<Napi::Number>().DoubleValue()));
  return out;
}

at::Tensor optional(const std::vector<at::Tensor>& slots, int i) { return i < 0 ? at::Tensor() : slots[i]; }

}  // namespace

Graph parseGraph(const Napi::Object& o) {
  Napi::Env env = o.Env();
  Graph g;
  g.numParams = o.Get("numParams").As<Napi::Number>().Int32Value();
  g.inputSlot = o.Get("inputSlot").As<Napi::Number>().Int32Value();
  g.numSlots = o.Get("numSlots").As<Napi::Number>().Int32Value();
  auto nodes = o.Get("nodes").As<Napi::Array>();
  for (uint32_t i = 0; i < nodes.Length(); i++) {
    auto n = nodes.Get(i).As<Napi::Object>();
    std::string op = n.Get("op").As<Napi::String>();
    Node node;
    if (!parseOp(op, &node.op)) {
      throw Napi::TypeError::New(env, "graph node " + std::to_string(i) + ": unknown op '" + op + "'");
    }
    node.inputs = numbers<int>(n.Get("inputs"));
    node.output = n.Get("output").As<Napi::Number>().Int32Value();
    node.ints = numbers<int64_t>(n.Get("ints"));
    node.floats = numbers<double>(n.Get("floats"));
    node.release = numbers<int>(n.Get("release"));
    for (int s : node.inputs) {
      if (s >= g.numSlots || node.output >= g.numSlots || node.output < 0) {
        throw Napi::RangeError::New(env, "graph node " + std::to_string(i) + " (" + op + "): slot out of range");
      }
    }
    g.nodes.push_back(std::move(node));
  }
  auto outs = o.Get("outputs").As<Napi::Object>();
  auto keys = outs.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).As<Napi::String>();
    g.outputs[k] = outs.Get(k).As<Napi::Number>().Int32Value();
  }
  std::string loss = o.Get("loss").IsString() ? o.Get("loss").As<Napi::String>().Utf8Value() : "cross_entropy";
  if (loss != "cross_entropy" && loss != "nll") throw Napi::TypeError::New(env, "graph: unknown loss '" + loss + "'");
  g.logitsAreLogProbs = loss == "nll";
  return g;
}

// Up to this many tokens, attention is softmax(q k^T / sqrt(d)) v as two batched GEMMs; beyond, LibTorch's flash
// attention. Its blocking pays only once the [T, T] scores outgrow the cache: on 2 cores, fwd + bwd of the tiny ViT's
// [32, 4, 17, 16] took 221 us explicit vs 693 us flash, ViT-B/32's [32, 12, 50, 64] 9.8 ms vs 14.5 ms, and at 197
// tokens (ViT-B/16) the two were even (26.6 ms vs 25.3 ms, [8, 12, 197, 64]). On CUDA always LibTorch's fused
// kernels, as PyTorch eager's SDPA runs them (flash in bf16/fp16): not yet timed against the GPU's explicit GEMMs.
constexpr int64_t kExplicitAttentionMaxTokens = 128;

// A convolution whose windows tile the image (stride == kernel, no padding): ViT's patch embedding.
static bool isPatchify(const at::Tensor& x, const at::Tensor& w, int64_t stride, int64_t padding) {
  return padding == 0 && w.size(2) == stride && w.size(3) == stride && x.size(2) % stride == 0 &&
         x.size(3) % stride == 0;
}

// Such a convolution as one GEMM over the patches: [B*h*w, Cin*P*P] x [Cin*P*P, Cout]. LibTorch's convolution
// (oneDNN) reorders and im2cols for it, which costs more than the product itself on small images. The result is
// [B, Cout, h, w] with channels last in memory, so the ViT's [B, C, h*w] -> [B, h*w, C] after it are free views.
static at::Tensor patchify(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  const int64_t B = x.size(0), Cin = x.size(1), P = w.size(2), h = x.size(2) / P, wd = x.size(3) / P, Cout = w.size(0);
  auto patches = x.view({B, Cin, h, P, wd, P}).permute({0, 2, 4, 1, 3, 5}).reshape({B * h * wd, Cin * P * P});
  return at::linear(patches, w.view({Cout, Cin * P * P}), bias).view({B, h, wd, Cout}).permute({0, 3, 1, 2});
}

// Batch norm from per-channel sums, for the whole batch of a distributed run (sync_bn), as one process holding it
// computes it: every rank's per-channel sums, sums of squares and counts added up (CrossRankSum), the biased variance
// normalising, the unbiased one in the running statistics (as at::batch_norm; the biased one for a single value).
// Autograd takes the gradient through the sums, whose backward sums over the ranks as well. Under autocast the input
// may be bf16/fp16: the sums are taken in the weights' float32, on every rank alike (a rank with an empty batch
// computes no convolution to cast).
static at::Tensor batchNormBySums(const at::Tensor& input, const at::Tensor& w, const at::Tensor& b,
                                  const at::Tensor& runMean, const at::Tensor& runVar, double momentum, double eps,
                                  const CrossRankSum& sum) {
  const auto x = input.to(w.scalar_type());
  const int64_t C = x.size(1);
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
  auto count = at::full({1}, static_cast<double>(x.numel() / C), x.options());
  auto stats = sum(at::cat({x.sum(dims), (x * x).sum(dims), count}));
  auto n = stats[2 * C];
  auto mean = stats.narrow(0, 0, C) / n;
  auto var = stats.narrow(0, C, C) / n - mean * mean;
  {
    at::NoGradGuard guard;
    double m = n.item<double>();
    runMean.mul_(1 - momentum).add_(mean.detach(), momentum);
    runVar.mul_(1 - momentum).add_(var.detach() * (m / std::max(1.0, m - 1)), momentum);
  }
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = C;
  return (x - mean.view(shape)) * (at::rsqrt(var + eps) * w).view(shape) + b.view(shape);
}

static at::Tensor applyNode(const Node& n, const std::vector<at::Tensor>& s, bool training,
                            const CrossRankSum* syncBn) {
  const auto& x = s[n.inputs[0]];
  switch (n.op) {
    case Op::Conv2d: {
      const auto a = attrs<Op::Conv2d>(n);
      if (isPatchify(x, s[n.inputs[1]], a.stride, a.padding))
        return patchify(x, s[n.inputs[1]], optional(s, n.inputs[2]));
      return at::conv2d(x, s[n.inputs[1]], optional(s, n.inputs[2]), a.stride, a.padding);
    }
    case Op::Linear:
      return at::linear(x, s[n.inputs[1]], optional(s, n.inputs[2]));
    case Op::LayerNorm:
      return at::layer_norm(x, {x.size(-1)}, s[n.inputs[1]], s[n.inputs[2]], attrs<Op::LayerNorm>(n).eps);
    case Op::BatchNorm: {
      const auto a = attrs<Op::BatchNorm>(n);
      // One value per channel (a batch of one image whose map is 1 x 1): at::batch_norm's unbiased variance would be
      // 0/0 and poison the running statistics with NaN (PyTorch's module refuses such a batch); the summed form
      // keeps the biased variance there, as the JS backend does.
      static const CrossRankSum local = [](const at::Tensor& t) { return t; };
      if (training && (syncBn || x.numel() <= x.size(1))) {
        return batchNormBySums(x, s[n.inputs[1]], s[n.inputs[2]], s[n.inputs[3]], s[n.inputs[4]], a.momentum, a.eps,
                               syncBn ? *syncBn : local);
      }
      return at::batch_norm(x, s[n.inputs[1]], s[n.inputs[2]], s[n.inputs[3]], s[n.inputs[4]], training, a.momentum,
                            a.eps, /*cudnn_enabled=*/true);
    }
    case Op::Add:
      return x + s[n.inputs[1]];
    case Op::Mul:
      return x * s[n.inputs[1]];
    case Op::QuickGelu:
      return x * at::sigmoid(x * 1.702);
    case Op::Gelu:
      return at::gelu(x);
    case Op::Relu:
      return at::relu(x);
    case Op::Relu6:
      return at::hardtanh(x, 0.0, 6.0);
    case Op::Softmax:
      return at::softmax(x, attrs<Op::Softmax>(n).axis);
    case Op::LogSoftmax:
      return at::log_softmax(x, attrs<Op::LogSoftmax>(n).axis);
    case Op::Attention: {
      // [B, T, C] x3 -> heads -> softmax(q k^T / sqrt(d)) v -> [B, T, C], as HF CLIPAttention computes it.
      const int64_t heads = attrs<Op::Attention>(n).heads, B = x.size(0), T = x.size(1), C = x.size(2);
      auto split = [&](const at::Tensor& t) { return t.view({B, T, heads, C / heads}).transpose(1, 2); };
      auto q = split(x), k = split(s[n.inputs[1]]), v = split(s[n.inputs[2]]);
      auto o =
          T <= kExplicitAttentionMaxTokens && !x.is_cuda()
              ? at::matmul(at::softmax(
                               at::matmul(q * std::pow(static_cast<double>(C / heads), -0.5), k.transpose(-2, -1)), -1),
                           v)
              : at::scaled_dot_product_attention(q, k, v);
      return o.transpose(1, 2).reshape({B, T, C});
    }
    case Op::Reshape: {
      std::vector<int64_t> shape(attrs<Op::Reshape>(n).shape.vec());
      for (size_t i = 0; i < shape.size(); i++)
        if (shape[i] == 0) shape[i] = x.size(i);
      return x.reshape(shape);
    }
    case Op::Transpose:
      return x.permute(attrs<Op::Transpose>(n).perm);
    case Op::Concat: {
      std::vector<at::Tensor> parts;
      for (int i : n.inputs) parts.push_back(s[i]);
      return at::cat(parts, attrs<Op::Concat>(n).axis);
    }
    case Op::Slice: {
      const auto a = attrs<Op::Slice>(n);
      return x.slice(a.axis, a.start, a.end);
    }
    case Op::Mean:
      return x.mean(attrs<Op::Mean>(n).axes);
    case Op::ExpandBatch: {
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape[0] = s[n.inputs[1]].size(0);
      return x.expand(shape);
    }
  }
  throw std::logic_error("unhandled op");
}

at::Tensor runGraph(const Graph& g, const std::vector<at::Tensor>& params, const at::Tensor& input, int outputSlot,
                    bool training, const CrossRankSum* syncBn) {
  std::vector<at::Tensor> slots(g.numSlots);
  for (int i = 0; i < g.numParams; i++) slots[i] = params[i];
  slots[g.inputSlot] = input;
  if (outputSlot < g.numParams || outputSlot == g.inputSlot) return slots[outputSlot];
  for (const auto& n : g.nodes) {
    slots[n.output] = applyNode(n, slots, training, syncBn);
    if (n.output == outputSlot) return slots[n.output];
    for (int r : n.release) slots[r].reset();
  }
  throw std::logic_error("graph output slot " + std::to_string(outputSlot) + " is never produced");
}

}  // namespace penny
