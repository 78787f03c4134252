// The graph IR as the native backend sees it: TypeScript (src/model/lower.ts) resolves every value name to a slot
// index and every attribute to its slot in `ints`/`floats` (read through Attrs<Op>, generated from the op table), so
// interpreting is a switch over an array.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ops.generated.h"

namespace penny {

struct Node {
  Op op;
  std::vector<int> inputs;    // slot indices; -1 for an absent optional input (a bias)
  int output;                 // slot index
  std::vector<int64_t> ints;  // attributes, in the slots Attrs<op> reads
  std::vector<double> floats;
  std::vector<int> release;  // slots whose last reader is this node: freed right after it
};

struct Graph {
  int numParams = 0;  // slots [0, numParams) are parameters
  int inputSlot = 0;  // the image batch
  int numSlots = 0;
  std::vector<Node> nodes;
  std::unordered_map<std::string, int> outputs;  // name -> slot
  bool logitsAreLogProbs = false;                // loss 'nll': the logits output is log-probabilities already
};

Graph parseGraph(const Napi::Object& lowered);

// A tensor summed over the ranks of a distributed run, differentiably (its gradient is summed over them too).
using CrossRankSum = std::function<at::Tensor(const at::Tensor&)>;

// Runs the nodes up to the one that produces `outputSlot` and returns that value.
// training: batch norm normalises with the batch's statistics and updates its running ones; with `syncBn` (sync_bn
// in a distributed run) those statistics are the whole batch's, over every rank.
at::Tensor runGraph(const Graph& g, const std::vector<at::Tensor>& params, const at::Tensor& input, int outputSlot,
                    bool training, const CrossRankSum* syncBn = nullptr);

}  // namespace penny
