// Progress bar / plain progress lines.
#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace herd {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total > 0 ? total : 1), tty_(::isatty(2) != 0) {}

Progress::~Progress() { Finish(); }

void Progress::Update(int64_t done) {
  if (finished_) return;
  if (done > total_) done = total_;
  if (tty_) {
    constexpr int kWidth = 40;
    const int filled = static_cast<int>(done * kWidth / total_);
    if (filled == last_width_ && done != total_) return;
    last_width_ = filled;
    std::fprintf(stderr, "\r%s [", label_.c_str());
    for (int i = 0; i < kWidth; ++i) std::fputc(i < filled ? '#' : '.', stderr);
    std::fprintf(stderr, "] %3d%% (%lld/%lld)", static_cast<int>(done * 100 / total_),
                 static_cast<long long>(done), static_cast<long long>(total_));
    std::fflush(stderr);
  } else {
    const int decile = static_cast<int>(done * 10 / total_);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %lld/%lld (%d%%)\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), decile * 10);
  }
}

void Progress::Finish() {
  if (finished_) return;
  Update(total_);
  if (tty_) std::fputc('\n', stderr);
  finished_ = true;
}

}  // namespace herd
