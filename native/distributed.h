// Data-parallel training over LibTorch's own c10d: a TCPStore for the rendezvous (rank 0 serves it) and a Gloo
// process group for the collectives; no collective of our own. JS creates a Group per process (rank), broadcasts
// rank 0's weights, and attaches the group to the model: from then on every trainStep averages the gradients of all
// ranks (bucketed allreduces launched from autograd hooks while backward still runs) before the optimizer step.
#pragma once
#include <napi.h>

namespace penny {

// Defines NativeGroup on `exports` where this LibTorch has c10d with Gloo; elsewhere nothing (JS then says that this
// build has no distributed training).
void defineGroup(Napi::Env env, Napi::Object exports);

}  // namespace penny
