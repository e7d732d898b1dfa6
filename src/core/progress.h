// Progress reporting for long work (loading, converting, quantizing): a redrawn bar on a terminal, plain
// "label: n/total" lines (at most every 10%) otherwise. Writes to stderr. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace herd {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  void Update(int64_t done);
  void Finish();

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  int last_decile_ = -1;
  int last_width_ = -1;
  bool finished_ = false;
};

}  // namespace herd
