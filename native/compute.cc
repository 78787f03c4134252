#include "compute.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace penny::compute {
namespace {

class Thread {
 public:
  Thread() : thread_([this] { loop(); }) {
    id_ = thread_.get_id();
    thread_.detach();
  }

  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

  bool isCurrent() const { return std::this_thread::get_id() == id_; }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();   // jobs catch their own exceptions (post's callers, run)
    }
  }

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::thread::id id_;
  std::thread thread_;
};

// Never destroyed: the thread outlives static destruction at exit, blocked on its queue.
Thread& instance() {
  static Thread* t = new Thread();
  return *t;
}

}  // namespace

void post(std::function<void()> job) { instance().post(std::move(job)); }

void run(const std::function<void()>& job) {
  auto& t = instance();
  if (t.isCurrent()) return job();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  t.post([&] {
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (error) std::rethrow_exception(error);
}

}  // namespace penny::compute
