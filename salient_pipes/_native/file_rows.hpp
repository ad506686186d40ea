// Rows of a feature file read straight from disk: the sorted rows a
// look-ahead window needs (RowSet collects them), read in file order with
// many reads in flight, past the page cache where the file system allows
// (O_DIRECT), so that the CSR keeps its place in memory.
//
// Nearby rows are read together: rows closer than `max_gap` bytes share one
// read of at most `max_read` bytes, so a dense window becomes a sweep of the
// file in large reads and a sparse one becomes small targeted reads. Rows
// that the previous window holds already are copied from it instead.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "threads.hpp"

namespace sp {

// A feature file that cannot be opened or read (Python: FeatureFileError, an OSError).
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Which rows of a table a window needs: a bit per row, and the rows set so far.
class RowSet {
 public:
  explicit RowSet(int64_t num_rows)
      : num_rows_(num_rows), bits_(static_cast<size_t>((num_rows + 63) / 64), 0) {}

  // Marks ids[0, n); returns how many were not marked before.
  int64_t add(const int64_t* ids, int64_t n) {
    int64_t added = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = ids[i];
      if (v < 0 || v >= num_rows_) {
        throw std::out_of_range("row " + std::to_string(v) + " is outside [0, " +
                                std::to_string(num_rows_) + ")");
      }
      uint64_t& word = bits_[static_cast<size_t>(v >> 6)];
      const uint64_t bit = uint64_t{1} << (v & 63);
      added += (word & bit) == 0;
      word |= bit;
    }
    count_ += added;
    return added;
  }

  int64_t count() const { return count_; }

  // The marked rows in ascending order; the set is empty afterwards.
  std::vector<int64_t> take() {
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(count_));
    for (size_t w = 0; w < bits_.size(); ++w) {
      uint64_t word = bits_[w];
      while (word != 0) {
        out.push_back(static_cast<int64_t>(w * 64) + __builtin_ctzll(word));
        word &= word - 1;
      }
      bits_[w] = 0;
    }
    count_ = 0;
    return out;
  }

 private:
  int64_t num_rows_;
  int64_t count_ = 0;
  std::vector<uint64_t> bits_;
};

struct ReadStats {
  int64_t bytes = 0;        // read from the file
  int64_t reads = 0;        // read calls
  int64_t rows_read = 0;    // rows taken from those reads
  int64_t rows_copied = 0;  // rows taken from the previous window
  double seconds = 0;
};

// Where the rows to read lie: todo[first, last) spanning bytes [begin, end).
struct Extent {
  size_t first = 0, last = 0;
  int64_t begin = 0, end = 0;
};

class FeatureFile {
 public:
  static constexpr int64_t kAlign = 4096;

  // A table of `num_rows` rows of `row_bytes` bytes starting `offset` bytes
  // into `path`. `direct`: read past the page cache (O_DIRECT) when the file
  // system allows it; otherwise reads go through the page cache, which is
  // told to drop what they brought in.
  FeatureFile(std::string path, int64_t offset, int64_t num_rows, int64_t row_bytes,
              bool direct)
      : path_(std::move(path)), offset_(offset), num_rows_(num_rows), row_bytes_(row_bytes) {
    if (offset < 0 || num_rows < 0 || row_bytes <= 0 ||
        num_rows > (INT64_MAX - offset) / row_bytes) {
      throw std::invalid_argument(path_ + ": offset, rows and row bytes must be non-negative "
                                  "(row bytes positive) and describe at most 2**63 bytes");
    }
    if (direct) {
      fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
      direct_ = fd_ >= 0;
    }
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot be opened", errno);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot be examined", errno);
    size_ = st.st_size;
    const int64_t needed = offset_ + num_rows_ * row_bytes_;
    if (size_ < needed) {
      ::close(fd_);
      throw FileError(path_ + " is truncated: " + std::to_string(size_) +
                                  " bytes, but " + std::to_string(num_rows_) + " rows of " +
                                  std::to_string(row_bytes_) + " bytes from byte " +
                                  std::to_string(offset_) + " need " + std::to_string(needed));
    }
  }

  FeatureFile(const FeatureFile&) = delete;
  FeatureFile& operator=(const FeatureFile&) = delete;
  ~FeatureFile() { ::close(fd_); }

  bool direct() const { return direct_; }
  const std::string& path() const { return path_; }
  int64_t num_rows() const { return num_rows_; }
  int64_t row_bytes() const { return row_bytes_; }

  // Rows ids[0, n) (strictly ascending) into out[i * row_bytes]: from
  // `prev_rows` where prev_slot[v] >= 0 (the previous window; prev_slot may
  // be null), else from the file, on `threads` threads each with one read in
  // flight.
  ReadStats read(const int64_t* ids, int64_t n, unsigned char* out, const int32_t* prev_slot,
                 const unsigned char* prev_rows, int threads, int64_t max_gap,
                 int64_t max_read) const {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= num_rows_ || (i > 0 && ids[i] <= ids[i - 1])) {
        throw std::invalid_argument("rows must ascend strictly within [0, " +
                                    std::to_string(num_rows_) + "); row " + std::to_string(i) +
                                    " is " + std::to_string(ids[i]));
      }
    }
    ReadStats stats;
    const auto rb = static_cast<size_t>(row_bytes_);
    std::vector<int64_t> todo;  // positions in ids of the rows to read
    for (int64_t i = 0; i < n; ++i) {
      const int32_t slot = prev_slot != nullptr ? prev_slot[ids[i]] : -1;
      if (slot >= 0) {
        std::memcpy(out + static_cast<size_t>(i) * rb, prev_rows + static_cast<size_t>(slot) * rb,
                    rb);
        ++stats.rows_copied;
      } else {
        todo.push_back(i);
      }
    }
    const std::vector<Extent> extents = plan(ids, todo, max_gap, max_read);
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::atomic<int64_t> bytes{0}, reads{0};
    std::exception_ptr error;
    std::mutex error_mu;
    const int64_t largest = max_span(extents);
    auto work = [&] {
      try {
        Aligned buffer(static_cast<size_t>(largest));
        for (size_t e = next++; e < extents.size() && !failed; e = next++) {
          const Extent& x = extents[e];
          const int64_t need = offset_ + ids[todo[x.last - 1]] * row_bytes_ + row_bytes_;
          reads += fill(buffer.get(), x.begin, x.end, need);
          bytes += x.end - x.begin;
          for (size_t k = x.first; k < x.last; ++k) {
            const int64_t i = todo[k];
            std::memcpy(out + static_cast<size_t>(i) * rb,
                        buffer.get() + (offset_ + ids[i] * row_bytes_ - x.begin), rb);
          }
          if (!direct_) {
            ::posix_fadvise(fd_, x.begin, x.end - x.begin, POSIX_FADV_DONTNEED);
          }
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        failed = true;
      }
    };
    {
      ThreadGroup group;
      const size_t helpers = std::min<size_t>(static_cast<size_t>(std::max(1, threads)),
                                              extents.size());
      for (size_t t = 1; t < helpers; ++t) group.spawn(work);
      work();
      group.join();
    }
    if (error) std::rethrow_exception(error);
    stats.bytes = bytes;
    stats.reads = reads;
    stats.rows_read = static_cast<int64_t>(todo.size());
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return stats;
  }

  // The disk's rate for this file: reads of `read_bytes` (sequential from the
  // start, or at random aligned places) on `threads` threads for about
  // `seconds`. Returns bytes, reads and seconds.
  ReadStats probe(bool sequential, int64_t read_bytes, int threads, double seconds) const {
    read_bytes = std::max<int64_t>(kAlign, read_bytes / kAlign * kAlign);
    const int64_t pieces = std::max<int64_t>(1, size_ / read_bytes);
    std::atomic<int64_t> next{0}, bytes{0}, reads{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mu;
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&t0] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    auto work = [&](uint64_t seed) {
      try {
        Aligned buffer(static_cast<size_t>(read_bytes));
        std::mt19937_64 rng(seed);
        while (!failed && elapsed() < seconds) {
          const int64_t k = sequential ? next++ : static_cast<int64_t>(rng() % pieces);
          if (k >= pieces) break;
          const int64_t begin = k * read_bytes;
          const int64_t end = std::min(size_, begin + read_bytes) / kAlign * kAlign;
          if (end <= begin) continue;
          reads += fill(buffer.get(), begin, end, end);
          bytes += end - begin;
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        failed = true;
      }
    };
    {
      ThreadGroup group;
      for (int t = 1; t < std::max(1, threads); ++t) group.spawn([&work, t] { work(t); });
      work(0);
      group.join();
    }
    if (error) std::rethrow_exception(error);
    ReadStats stats;
    stats.bytes = bytes;
    stats.reads = reads;
    stats.seconds = elapsed();
    return stats;
  }

 private:
  // Page-aligned memory, as O_DIRECT needs, freed with its owner.
  class Aligned {
   public:
    explicit Aligned(size_t bytes)
        : p_(static_cast<unsigned char*>(
                 std::aligned_alloc(kAlign, std::max<size_t>(kAlign, round_up(bytes)))),
             &std::free) {
      if (!p_) throw std::bad_alloc();
    }
    unsigned char* get() const { return p_.get(); }

   private:
    static size_t round_up(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }
    std::unique_ptr<unsigned char, void (*)(void*)> p_;
  };

  [[noreturn]] void fail(const std::string& what, int err) const {
    if (fd_ >= 0) ::close(fd_);
    throw FileError(path_ + " " + what + ": " + std::strerror(err));
  }

  static int64_t max_span(const std::vector<Extent>& extents) {
    int64_t m = 0;
    for (const Extent& e : extents) m = std::max(m, e.end - e.begin);
    return m;
  }

  // The reads: runs of rows to read closer than max_gap bytes, each at most
  // max_read bytes (a row never split), aligned to kAlign.
  std::vector<Extent> plan(const int64_t* ids, const std::vector<int64_t>& todo, int64_t max_gap,
                           int64_t max_read) const {
    max_read = std::max(max_read, row_bytes_ + 2 * kAlign);
    std::vector<Extent> extents;
    auto down = [](int64_t b) { return b / kAlign * kAlign; };
    auto up = [](int64_t b) { return (b + kAlign - 1) / kAlign * kAlign; };
    for (size_t k = 0; k < todo.size(); ++k) {
      const int64_t start = offset_ + ids[todo[k]] * row_bytes_;
      const int64_t stop = start + row_bytes_;
      if (!extents.empty()) {
        Extent& last = extents.back();
        if (start - last.end <= max_gap && up(stop) - last.begin <= max_read) {
          last.end = std::max(last.end, up(stop));
          last.last = k + 1;
          continue;
        }
      }
      extents.push_back(Extent{k, k + 1, down(start), up(stop)});
    }
    return extents;
  }

  // Reads bytes [begin, end) into buf until at least `need` (the end of the
  // last row wanted) is in; returns the read calls made. End of file before
  // `need` means the file was cut short.
  int64_t fill(unsigned char* buf, int64_t begin, int64_t end, int64_t need) const {
    int64_t got = 0, calls = 0;
    while (begin + got < need) {
      const ssize_t r = ::pread(fd_, buf + got, static_cast<size_t>(end - begin - got),
                                begin + got);
      ++calls;
      if (r < 0) {
        if (errno == EINTR) continue;
        throw FileError(path_ + ": read of bytes " + std::to_string(begin + got) + ".." +
                                 std::to_string(end) + " failed: " + std::strerror(errno));
      }
      if (r == 0) {
        throw FileError(path_ + " ended at byte " + std::to_string(begin + got) +
                                 " while rows up to byte " + std::to_string(need) +
                                 " were read: the file was truncated");
      }
      got += r;
    }
    return calls;
  }

  std::string path_;
  int64_t offset_, num_rows_, row_bytes_;
  int fd_ = -1;
  bool direct_ = false;
  int64_t size_ = 0;
};

}  // namespace sp
