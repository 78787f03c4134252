// Every LibTorch call of the process runs on one thread, the compute thread.
//
// LibTorch's intra-op parallelism is OpenMP, and an OpenMP team belongs to the thread that starts it. Calls made from
// libuv's four workers and the main thread each started a team; libgomp, seeing more of its threads than CPUs, put
// its workers to sleep after every parallel region instead of spinning, and a tiny ViT train step on 2 threads ran
// ~340 futex sleeps and wake-ups: 2x slower than on 1 thread. One thread keeps one team, as in a Python process.
// OpenMP's and MKL's thread counts are per thread too, so setNumThreads must run here as well.
#pragma once
#include <functional>

namespace penny::compute {

// Queues `job` on the compute thread and returns at once; jobs run one at a time, in order. After shutdown() the job
// is not queued and post returns false: the caller must settle whatever waits for it.
bool post(std::function<void()> job);

// Waits until the job running now, if any, has finished (not the queued ones). Not on the compute thread.
void waitForRunning();

// For the process's exit: drops the queued jobs, waits for the running one and refuses new ones, so that LibTorch's
// static destructors do not run under a job (a process that exited while a terminated worker's steps were queued
// crashed in them). Once only, on the main thread.
void shutdown();

// Runs `job` on the compute thread and waits for it; its exception, if any, is rethrown here. On the compute thread
// itself, runs it inline.
void run(const std::function<void()>& job);

}  // namespace penny::compute
