#include "compute.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace penny::compute {
namespace {

class Thread {
 public:
  Thread() : thread_([this] { loop(); }) {
    id_ = thread_.get_id();
    thread_.detach();
  }

  // False once the process is exiting: the job is dropped.
  bool post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (exiting_) return false;
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
    return true;
  }

  bool isCurrent() const { return std::this_thread::get_id() == id_; }

  void waitForRunning() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t running = started_;
    finished_cv_.wait(lock, [&] { return finished_ >= running; });
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      exiting_ = true;
      jobs_.clear();
    }
    waitForRunning();
  }

  static Thread& instance();

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
        started_++;
      }
      job();  // jobs catch their own exceptions (post's callers, run)
      job = nullptr;
      std::lock_guard<std::mutex> lock(mu_);
      finished_++;
      finished_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable ready_, finished_cv_;
  std::deque<std::function<void()>> jobs_;
  uint64_t started_ = 0, finished_ = 0;  // jobs taken from the queue, jobs done; guarded by mu_ (as below)
  bool exiting_ = false;
  std::thread::id id_;
  std::thread thread_;
};

// Never destroyed: the thread outlives static destruction at exit, blocked on its queue.
Thread& Thread::instance() {
  static Thread* t = new Thread();
  return *t;
}

}  // namespace

bool post(std::function<void()> job) { return Thread::instance().post(std::move(job)); }

void waitForRunning() { Thread::instance().waitForRunning(); }

void shutdown() { Thread::instance().shutdown(); }

void run(const std::function<void()>& job) {
  auto& t = Thread::instance();
  if (t.isCurrent()) return job();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  bool queued = t.post([&] {
    try {
      job();
    } catch (...) { error = std::current_exception(); }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_one();
  });
  if (!queued) throw std::runtime_error("the process is exiting");
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (error) std::rethrow_exception(error);
}

}  // namespace penny::compute
