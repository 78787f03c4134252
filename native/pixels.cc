// The image pipeline's pixel work (src/data/images.ts decides what to draw; this does it), on libuv's thread pool:
//   resample  a box of an 8-bit RGB image to another size, antialiased: a separable triangle filter one output pixel
//             wide on either side (PIL's and torchvision's antialiased bilinear); reads nothing outside the box.
//   render    one model input: every output pixel the mean of four bilinear samples through an affine warp (the view,
//             a rotation, a crop, a flip), an affine colour map, clamped to 0..255 and normalised; then a Gaussian
//             blur.
//   circle    the coin's rim: the strongest circle in a greyscale raster (src/predict/locate.ts says what for).
// They were sharp calls and JS loops: a sharp pipeline cost ~1.5 ms of CPU per call however small the image, and
// prediction made five per photo; here a 256 -> 224 px resample takes ~0.8 ms and a 112 px render ~0.6 ms (both
// measured beside a training run), on the pool while the main thread runs the models.
#include "pixels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace penny {
namespace {

// Work on the pool, then a value for JS; the JS arrays it reads and writes are kept alive until it settles.
class PoolWork : public Napi::AsyncWorker {
 public:
  PoolWork(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
           const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "penny:pixels"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {
    for (const auto& v : keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) { SetError(e.what()); }
  }
  void OnOK() override { deferred_.Resolve(done_(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Promise queue(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                    const std::vector<Napi::Value>& keep) {
  auto* w = new PoolWork(env, std::move(work), std::move(done), keep);
  auto p = w->Promise();
  w->Queue();
  return p;
}

template <typename T>
T* typedData(const Napi::Value& v, napi_typedarray_type type, size_t need, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " has the wrong type");
  }
  auto a = v.As<Napi::TypedArray>();
  if (a.ElementLength() < need) throw Napi::RangeError::New(v.Env(), std::string(what) + " is too short");
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

int intArg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 0) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
  }
  return v.As<Napi::Number>().Int32Value();
}

// One axis of a resample: for each output pixel, the first source pixel it reads and the weights of those it reads.
struct Taps {
  std::vector<int> first, count;
  std::vector<float> weights;  // `span` per output pixel
  int span = 0;
};

// Output pixel i covers source [start + i * scale, start + (i + 1) * scale); its triangle is centred there and
// max(scale, 1) source pixels wide either side, clipped to [start, start + length) and renormalised.
Taps tapsOf(double start, double length, int out, int limit) {
  Taps t;
  const double scale = length / out, support = std::max(scale, 1.0);
  const int lo = std::max(0, static_cast<int>(std::floor(start))),
            hi = std::min(limit, static_cast<int>(std::ceil(start + length)));
  t.span = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out) * t.span, 0.f);
  std::vector<double> w;  // one pixel's raw weights; cleared, not reallocated, per pixel
  for (int i = 0; i < out; i++) {
    const double centre = start + (i + 0.5) * scale;
    const int a = std::max(lo, static_cast<int>(std::floor(centre - support))),
              b = std::min(hi, static_cast<int>(std::ceil(centre + support)));
    double sum = 0;
    w.clear();
    for (int j = a; j < b; j++) {
      const double d = std::abs(j + 0.5 - centre) / support;
      w.push_back(d < 1 ? 1 - d : 0);
      sum += w.back();
    }
    if (sum == 0) {  // a box thinner than a pixel: its nearest pixel
      w.assign(1, 1.0);
      sum = 1;
      t.first[i] = std::min(limit - 1, std::clamp(static_cast<int>(std::floor(centre)), lo, std::max(lo, hi - 1)));
    } else {
      t.first[i] = a;
    }
    t.count[i] = std::min(static_cast<int>(w.size()), t.span);
    for (int k = 0; k < t.count[i]; k++)
      t.weights[static_cast<size_t>(i) * t.span + k] = static_cast<float>(w[k] / sum);
  }
  return t;
}

// resample(src, width, height, [x, y, w, h], outWidth, outHeight) -> Promise<Uint8Array> (RGB, HWC)
Napi::Value Resample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int sw = intArg(info[1], "width"), sh = intArg(info[2], "height");
  const uint8_t* src =
      typedData<uint8_t>(info[0], napi_uint8_array, static_cast<size_t>(sw) * sh * 3, "resample: the image");
  const double* box = typedData<double>(info[3], napi_float64_array, 4, "resample: the box");
  const int ow = intArg(info[4], "outWidth"), oh = intArg(info[5], "outHeight");
  if (sw < 1 || sh < 1 || ow < 1 || oh < 1 || !(box[2] > 0 && box[3] > 0) || box[0] < 0 || box[1] < 0 ||
      box[0] + box[2] > sw + 1e-6 || box[1] + box[3] > sh + 1e-6) {
    throw Napi::RangeError::New(env, "resample: the box must lie inside the image and the output be at least 1 x 1");
  }
  // written in place on the pool, as render writes its output: no buffer to copy back
  auto result = Napi::Uint8Array::New(env, static_cast<size_t>(ow) * oh * 3);
  uint8_t* out = result.Data();
  auto keep = std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(result));
  std::array<double, 4> b = {box[0], box[1], box[2], box[3]};
  return queue(
      env,
      [=] {
        const Taps tx = tapsOf(b[0], b[2], ow, sw), ty = tapsOf(b[1], b[3], oh, sh);
        // the rows any output row reads, filtered along x first (each source row converted to float once)
        int r0 = sh, r1 = 0;
        for (int i = 0; i < oh; i++) r0 = std::min(r0, ty.first[i]), r1 = std::max(r1, ty.first[i] + ty.count[i]);
        const size_t stride = static_cast<size_t>(ow) * 3;
        std::vector<float> rows(static_cast<size_t>(std::max(0, r1 - r0)) * stride), line(static_cast<size_t>(sw) * 3);
        for (int y = r0; y < r1; y++) {
          std::copy_n(src + static_cast<size_t>(y) * sw * 3, line.size(), line.begin());
          float* dst = rows.data() + (y - r0) * stride;
          for (int i = 0; i < ow; i++) {
            const float* w = tx.weights.data() + static_cast<size_t>(i) * tx.span;
            const float* p = line.data() + static_cast<size_t>(tx.first[i]) * 3;
            float r = 0, g = 0, bl = 0;
            for (int k = 0; k < tx.count[i]; k++, p += 3) r += w[k] * p[0], g += w[k] * p[1], bl += w[k] * p[2];
            dst[i * 3] = r, dst[i * 3 + 1] = g, dst[i * 3 + 2] = bl;
          }
        }
        // then along y, a whole output row at a time
        std::vector<float> acc(stride);
        for (int j = 0; j < oh; j++) {
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int k = 0; k < ty.count[j]; k++) {
            const float wk = ty.weights[static_cast<size_t>(j) * ty.span + k];
            const float* row = rows.data() + (ty.first[j] - r0 + k) * stride;
            for (size_t i = 0; i < stride; i++) acc[i] += wk * row[i];
          }
          uint8_t* dst = out + j * stride;
          for (size_t i = 0; i < stride; i++)
            dst[i] = static_cast<uint8_t>(std::clamp(acc[i], 0.f, 255.f) + 0.5f);  // rounded: v >= 0
        }
      },
      [keep](Napi::Env) -> Napi::Value { return keep->Value(); }, {info[0]});
}

// render's parameters, in the order src/data/images.ts packs them (renderParams there).
struct RenderParams {
  double p0, q0, dup, duq, dvp, dvq;  // output pixel (0, 0)'s centre and steps in the view's frame
  double hw, hh;                      // letterbox: points held within +-hw, +-hh of the view's centre; < 0: not held
  double cx, cy, cos, sin;            // the view's centre in the image, and its angle
  double m[9], bias;                  // colour map rows, contrast's offset
  double scale[3], shift[3];          // normalisation: v * scale - shift
  double sigma;                       // Gaussian blur, 0 for none
};
constexpr size_t kRenderParams = sizeof(RenderParams) / sizeof(double);

// The image render reads, as doubles: converted once per call (~150k conversions for a 224 px region), where the
// bytes took ~600k in the samples' arithmetic. Exact, so the result is the same.
struct Image {
  std::vector<double> data;
  int width, height;
};

// floor, as an int index
inline int floorInt(double x) {
  const int i = static_cast<int>(x);
  return i - (x < i);
}

struct Rgb {
  double r = 0, g = 0, b = 0;
};

// Adds the bilinear sample at (x, y) (pixel centres at +0.5 already taken off) to acc; outside the image reads black.
inline void bilinear(const Image& im, double x, double y, Rgb& acc) {
  const int xi = floorInt(x), yi = floorInt(y);
  const double fx = x - xi, fy = y - yi;
  const size_t row = static_cast<size_t>(im.width) * 3;
  if (xi >= 0 && yi >= 0 && xi + 1 < im.width && yi + 1 < im.height) {
    const double* p = im.data.data() + yi * row + xi * 3;
    const double* q = p + row;
    const double w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
    acc.r += w00 * p[0] + w01 * p[3] + w10 * q[0] + w11 * q[3];
    acc.g += w00 * p[1] + w01 * p[4] + w10 * q[1] + w11 * q[4];
    acc.b += w00 * p[2] + w01 * p[5] + w10 * q[2] + w11 * q[5];
    return;
  }
  for (int k = 0; k < 4; k++) {
    const int xx = xi + (k & 1), yy = yi + (k >> 1);
    if (xx < 0 || yy < 0 || xx >= im.width || yy >= im.height) continue;
    const double wt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
    const double* p = im.data.data() + yy * row + xx * 3;
    acc.r += wt * p[0], acc.g += wt * p[1], acc.b += wt * p[2];
  }
}

// Separable Gaussian blur of one plane, in place, edges clamped. Linear, so blurring after normalising is the same.
void blurPlane(float* plane, int width, int height, double sigma) {
  const int radius = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  std::vector<double> kernel(2 * radius + 1);
  double sum = 0;
  for (int i = 0; i <= 2 * radius; i++)
    sum += kernel[i] = std::exp(-double((i - radius) * (i - radius)) / (2 * sigma * sigma));
  for (auto& k : kernel) k /= sum;
  std::vector<float> tmp(static_cast<size_t>(width) * height), line(std::max(width, height) + 2 * radius);
  // `lines` lines of `length` values, `stride` apart, values `step` apart within a line
  auto pass = [&](const float* src, float* dst, int lines, int stride, int length, int step) {
    for (int l = 0; l < lines; l++) {
      const size_t base = static_cast<size_t>(l) * stride;
      for (int i = 0; i < length + 2 * radius; i++) line[i] = src[base + std::clamp(i - radius, 0, length - 1) * step];
      for (int i = 0; i < length; i++) {
        double acc = 0;
        for (int k = 0; k <= 2 * radius; k++) acc += kernel[k] * line[i + k];
        dst[base + i * step] = static_cast<float>(acc);
      }
    }
  };
  pass(plane, tmp.data(), height, width, width, 1);
  pass(tmp.data(), plane, width, 1, height, width);
}

void renderInto(const Image& im, const RenderParams& w, int W, int H, float* out) {
  const size_t n = static_cast<size_t>(W) * H;
  const bool held = w.hw >= 0;
  // The view's frame to image pixels: x = cx + cos p + sin q, y = cy - sin p + cos q (turned counter-clockwise by the
  // view's angle, y down). An output pixel's 2 x 2 samples lie a quarter of a pixel either side of its centre.
  const double tx = w.cx - 0.5, ty = w.cy - 0.5;
  const double ep = 0.25 * (w.dup + w.dvp), eq = 0.25 * (w.duq + w.dvq), fp = 0.25 * (w.dup - w.dvp),
               fq = 0.25 * (w.duq - w.dvq);
  const double offsets[4][2] = {{-ep, -eq}, {ep, eq}, {-fp, -fq}, {fp, fq}};
  for (int v = 0; v < H; v++) {
    for (int u = 0; u < W; u++) {
      const double p = w.p0 + v * w.dvp + u * w.dup, q = w.q0 + v * w.dvq + u * w.duq;
      Rgb px;
      for (const auto& o : offsets) {
        double a = p + o[0], b = q + o[1];
        if (held) a = std::clamp(a, -w.hw, w.hw), b = std::clamp(b, -w.hh, w.hh);  // letterbox: the view's edge
        bilinear(im, tx + w.cos * a + w.sin * b, ty - w.sin * a + w.cos * b, px);
      }
      const double r = px.r / 4, g = px.g / 4, bl = px.b / 4;
      const size_t i = static_cast<size_t>(v) * W + u;
      for (int c = 0; c < 3; c++) {
        const double m = std::clamp(w.m[3 * c] * r + w.m[3 * c + 1] * g + w.m[3 * c + 2] * bl + w.bias, 0.0, 255.0);
        out[c * n + i] = static_cast<float>(m * w.scale[c] - w.shift[c]);
      }
    }
  }
  if (w.sigma > 0)
    for (int c = 0; c < 3; c++) blurPlane(out + c * n, W, H, w.sigma);
}

// render(src, width, height, params, outWidth, outHeight, out, offset) -> Promise<void>: writes out[offset ...]
Napi::Value Render(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int sw = intArg(info[1], "width"), sh = intArg(info[2], "height");
  const uint8_t* src =
      typedData<uint8_t>(info[0], napi_uint8_array, static_cast<size_t>(sw) * sh * 3, "render: the image");
  RenderParams params;
  if (info[3].IsTypedArray() && info[3].As<Napi::TypedArray>().ElementLength() != kRenderParams) {
    throw Napi::RangeError::New(env, "render: " + std::to_string(kRenderParams) + " parameters expected");
  }
  std::copy_n(typedData<double>(info[3], napi_float64_array, kRenderParams, "render: the parameters"), kRenderParams,
              reinterpret_cast<double*>(&params));
  const int ow = intArg(info[4], "outWidth"), oh = intArg(info[5], "outHeight"), offset = intArg(info[7], "offset");
  float* out =
      typedData<float>(info[6], napi_float32_array, static_cast<size_t>(offset) + 3ul * ow * oh, "render: the output") +
      offset;
  return queue(
      env,
      [=] {
        const Image im{std::vector<double>(src, src + static_cast<size_t>(sw) * sh * 3), sw, sh};
        renderInto(im, params, ow, oh, out);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {info[0], info[6]});
}

// The coin's rim (src/predict/locate.ts findCoin says what for): the strongest circle in a greyscale raster, by a
// gradient-direction Hough transform. Pixel centres at +0.5; the result in the raster's pixels.
struct Circle {
  double cx, cy, r;
};

constexpr double kRadiusMin = 0.2, kRadiusMax = 0.55;  // radii searched, as fractions of the shorter side
constexpr double kEdgeFraction = 0.12;                 // the strongest pixels by gradient that vote

struct Edges {
  int width, height;
  std::vector<int> at;  // the voting pixels: index, and the unit gradient
  std::vector<float> ux, uy;
};

// The q-quantile of non-negative values, to 1/1024 of their range (a histogram: no sort); infinite for all zeros.
double quantile(const std::vector<float>& v, double q) {
  double max = 0;
  for (float x : v) max = std::max(max, double(x));
  if (max == 0) return INFINITY;  // a flat picture: nothing votes
  std::vector<int> bins(1025, 0);
  const double k = 1024 / max;
  for (float x : v) bins[static_cast<int>(x * k)]++;
  for (int b = 0, seen = 0; b <= 1024; b++) {
    seen += bins[b];
    if (seen >= q * v.size()) return (b + 1) / k;
  }
  return max;
}

// Sobel gradients; the kEdgeFraction strongest pixels, which vote.
Edges edgesOf(const uint8_t* grey, int width, int height) {
  const size_t n = static_cast<size_t>(width) * height;
  std::vector<float> mag(n, 0.f), gx(n, 0.f), gy(n, 0.f);
  for (int y = 1; y < height - 1; y++) {
    for (int x = 1, i = y * width + 1; x < width - 1; x++, i++) {
      const int a = grey[i - width - 1], b = grey[i - width], c = grey[i - width + 1], d = grey[i - 1], f = grey[i + 1];
      const int g = grey[i + width - 1], h = grey[i + width], k = grey[i + width + 1];
      const int dx = c + 2 * f + k - a - 2 * d - g, dy = g + 2 * h + k - a - 2 * b - c;
      gx[i] = dx, gy[i] = dy, mag[i] = std::sqrt(double(dx * dx + dy * dy));
    }
  }
  const double threshold = quantile(mag, 1 - kEdgeFraction);
  Edges e{width, height, {}, {}, {}};
  for (size_t i = 0; i < n; i++) {
    if (mag[i] > threshold)
      e.at.push_back(static_cast<int>(i)), e.ux.push_back(gx[i] / mag[i]), e.uy.push_back(gy[i] / mag[i]);
  }
  return e;
}

// The best circle with a radius in [r0, r1] and a centre pixel in [x0, x1) x [y0, y1): each edge pixel votes for the
// centres one radius away along its gradient, both ways (a coin may be lighter or darker than what it lies on); a
// centre's score is its 3 x 3 neighbourhood's votes (one circle's rasterised votes scatter by a pixel) per unit of rim
// (~2 pi r edge pixels). Sub-pixel: the votes' centroid, and a parabola through the scores at r - 1, r, r + 1.
Circle bestCircle(const Edges& e, int r0, int r1, int x0, int x1, int y0, int y1) {
  x0 = std::max(1, x0), y0 = std::max(1, y0), x1 = std::min(e.width - 1, x1), y1 = std::min(e.height - 1, y1);
  const int w = x1 - x0 + 2, h = y1 - y0 + 2, plane = w * h;  // the window and a one-pixel border
  std::vector<float> acc(static_cast<size_t>(r1 - r0 + 1) * plane, 0.f);
  for (size_t k = 0; k < e.at.size(); k++) {
    const double x = (e.at[k] % e.width) + 0.5 - (x0 - 1), y = (e.at[k] / e.width) + 0.5 - (y0 - 1), ux = e.ux[k],
                 uy = e.uy[k];
    for (int r = r0, base = 0; r <= r1; r++, base += plane) {
      for (int sign : {1, -1}) {
        const int px = floorInt(x + sign * r * ux), py = floorInt(y + sign * r * uy);
        if (px >= 0 && py >= 0 && px < w && py < h) acc[base + py * w + px] += 1;
      }
    }
  }
  auto score = [&](int r, int x, int y) {  // x, y in window pixels
    if (r < r0 || r > r1) return double(NAN);
    const size_t base = static_cast<size_t>(r - r0) * plane;
    double s = 0;
    for (int j = -1; j <= 1; j++)
      for (int i = -1; i <= 1; i++) s += acc[base + (y + j) * w + x + i];
    return s / r;
  };
  std::vector<float> rows(plane, 0.f);
  double bs = -1;
  int bx = 1, by = 1, br = r0;
  for (int r = r0, base = 0; r <= r1; r++, base += plane) {
    for (int y = 0; y < h; y++)
      for (int x = 1, i = y * w + 1; x < w - 1; x++, i++)
        rows[i] = acc[base + i - 1] + acc[base + i] + acc[base + i + 1];
    for (int y = 1; y < h - 1; y++) {
      for (int x = 1, i = y * w + 1; x < w - 1; x++, i++) {
        const double s = (double(rows[i - w]) + rows[i] + rows[i + w]) / r;
        if (s > bs) bs = s, bx = x, by = y, br = r;
      }
    }
  }
  const double lo = score(br - 1, bx, by), hi = score(br + 1, bx, by), curve = lo - 2 * bs + hi;
  const double dr = std::isfinite(curve) && curve < 0 ? std::clamp((lo - hi) / (2 * curve), -0.5, 0.5) : 0;
  double sw = 0, sx = 0, sy = 0;
  for (int j = -1; j <= 1; j++) {
    for (int i = -1; i <= 1; i++) {
      const double v = acc[static_cast<size_t>(br - r0) * plane + (by + j) * w + bx + i];
      sw += v, sx += v * (bx + i + 0.5), sy += v * (by + j + 0.5);
    }
  }
  const double cx = sw ? sx / sw : bx + 0.5, cy = sw ? sy / sw : by + 0.5;
  return {cx + x0 - 1, cy + y0 - 1, br + dr};
}

// Searched over every centre and radius at half the resolution (each pixel the mean of a 2 x 2 block), then refined
// at full resolution near what that found: a tenth of the votes of a full search.
Circle circleIn(const uint8_t* grey, int width, int height) {
  const int sw = width >> 1, sh = height >> 1;
  std::vector<uint8_t> small(static_cast<size_t>(sw) * sh);
  for (int y = 0; y < sh; y++) {
    for (int x = 0; x < sw; x++) {
      const int i = 2 * y * width + 2 * x;
      small[y * sw + x] =
          static_cast<uint8_t>((grey[i] + grey[i + 1] + grey[i + width] + grey[i + width + 1] + 2) >> 2);
    }
  }
  const int side = std::min(sw, sh);
  const Edges edges = edgesOf(small.data(), sw, sh);
  if (edges.at.empty()) throw std::runtime_error("no coin found: the picture has no edges");
  const Circle coarse = bestCircle(edges, std::max(2, static_cast<int>(std::floor(kRadiusMin * side))),
                                   static_cast<int>(std::ceil(kRadiusMax * side)), 0, sw, 0, sh);
  const double cx = 2 * coarse.cx, cy = 2 * coarse.cy;
  const int r = static_cast<int>(std::lround(2 * coarse.r));
  return bestCircle(edgesOf(grey, width, height), std::max(2, r - 3), r + 3, static_cast<int>(std::floor(cx)) - 4,
                    static_cast<int>(std::ceil(cx)) + 4, static_cast<int>(std::floor(cy)) - 4,
                    static_cast<int>(std::ceil(cy)) + 4);
}

// circle(grey, width, height) -> Promise<{ cx, cy, r }>; rejects when the picture has no edges.
Napi::Value FindCircle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int w = intArg(info[1], "width"), h = intArg(info[2], "height");
  if (w < 8 || h < 8) throw Napi::RangeError::New(env, "circle: the picture must be at least 8 x 8");
  const uint8_t* grey =
      typedData<uint8_t>(info[0], napi_uint8_array, static_cast<size_t>(w) * h, "circle: the picture");
  auto c = std::make_shared<Circle>();
  return queue(
      env, [=] { *c = circleIn(grey, w, h); },
      [c](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("cx", c->cx), o.Set("cy", c->cy), o.Set("r", c->r);
        return o;
      },
      {info[0]});
}

}  // namespace

void definePixels(Napi::Env env, Napi::Object exports) {
  exports.Set("resample", Napi::Function::New<Resample>(env, "resample"));
  exports.Set("render", Napi::Function::New<Render>(env, "render"));
  exports.Set("circle", Napi::Function::New<FindCircle>(env, "circle"));
}

}  // namespace penny
