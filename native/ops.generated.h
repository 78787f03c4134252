// Generated from the op table (src/model/ops.ts) by scripts/gen-native-ops.ts; `npm run gen:ops` rewrites it.
#pragma once
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace penny {

enum class Op {
  Conv2d,
  Linear,
  LayerNorm,
  Add,
  Mul,
  QuickGelu,
  Gelu,
  Relu,
  Relu6,
  Softmax,
  LogSoftmax,
  Attention,
  Reshape,
  Transpose,
  Concat,
  Slice,
  ExpandBatch,
  Mean,
  BatchNorm,
};

// Each op by its IR name.
inline const std::unordered_map<std::string, Op> kOpsByName = {
    {"conv2d", Op::Conv2d},
    {"linear", Op::Linear},
    {"layer_norm", Op::LayerNorm},
    {"add", Op::Add},
    {"mul", Op::Mul},
    {"quick_gelu", Op::QuickGelu},
    {"gelu", Op::Gelu},
    {"relu", Op::Relu},
    {"relu6", Op::Relu6},
    {"softmax", Op::Softmax},
    {"log_softmax", Op::LogSoftmax},
    {"attention", Op::Attention},
    {"reshape", Op::Reshape},
    {"transpose", Op::Transpose},
    {"concat", Op::Concat},
    {"slice", Op::Slice},
    {"expand_batch", Op::ExpandBatch},
    {"mean", Op::Mean},
    {"batch_norm", Op::BatchNorm},
};

// An op's attributes, read from a node's ints and floats (scalars in table order, then its one list).
template <Op>
struct Attrs;

template <>
struct Attrs<Op::Conv2d> {
  int64_t stride;
  int64_t padding;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {ints[0], ints[1]}; }
};

template <>
struct Attrs<Op::LayerNorm> {
  double eps;
  static Attrs read(const std::vector<int64_t>&, const std::vector<double>& floats) { return {floats[0]}; }
};

template <>
struct Attrs<Op::Softmax> {
  int64_t axis;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {ints[0]}; }
};

template <>
struct Attrs<Op::LogSoftmax> {
  int64_t axis;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {ints[0]}; }
};

template <>
struct Attrs<Op::Attention> {
  int64_t heads;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {ints[0]}; }
};

template <>
struct Attrs<Op::Reshape> {
  c10::IntArrayRef shape;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {c10::IntArrayRef(ints)}; }
};

template <>
struct Attrs<Op::Transpose> {
  c10::IntArrayRef perm;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {c10::IntArrayRef(ints)}; }
};

template <>
struct Attrs<Op::Concat> {
  int64_t axis;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {ints[0]}; }
};

template <>
struct Attrs<Op::Slice> {
  int64_t axis;
  int64_t start;
  int64_t end;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) {
    return {ints[0], ints[1], ints[2]};
  }
};

template <>
struct Attrs<Op::Mean> {
  c10::IntArrayRef axes;
  static Attrs read(const std::vector<int64_t>& ints, const std::vector<double>&) { return {c10::IntArrayRef(ints)}; }
};

template <>
struct Attrs<Op::BatchNorm> {
  double eps;
  double momentum;
  static Attrs read(const std::vector<int64_t>&, const std::vector<double>& floats) { return {floats[0], floats[1]}; }
};

}  // namespace penny
