// The image pipeline's pixel work on libuv's thread pool: resample and render (pixels.cc).
#pragma once
#include <napi.h>

namespace penny {

void definePixels(Napi::Env env, Napi::Object exports);

}  // namespace penny
