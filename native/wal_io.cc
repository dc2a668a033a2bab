#include "wal_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace stemedb {
namespace {

// Read-only source for zero-fill writes: lives in .bss (no file size, no allocation, no
// page is touched until the kernel reads it), aligned for O_DIRECT.
alignas(kBlockSizeBytes) uint8_t g_zero_chunk[kZeroChunkBytes];

// Zero-initialized statics: untouched pages of this table are never resident.
std::atomic<uint32_t> g_inflight_by_fd[kMaxTrackedFd];

// Linux caps a single read/write at 0x7ffff000 bytes; stay below it explicitly.
constexpr size_t kMaxIoPerCallBytes = size_t{1} << 30;

}  // namespace

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

IoStatus OpenWalFile(const char* path, bool create, bool direct, bool dsync, bool fallback_direct,
                     int* fd_out, bool* direct_out) {
  int flags = O_RDWR | O_CLOEXEC;
  if (create) flags |= O_CREAT;
  if (dsync) flags |= O_DSYNC;
  bool use_direct = direct;
  for (;;) {
    const int fd = open(path, use_direct ? (flags | O_DIRECT) : flags, 0644);
    if (fd >= 0) {
      *fd_out = fd;
      *direct_out = use_direct;
      return IoStatus{};
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EINVAL && use_direct && fallback_direct) {
      use_direct = false;  // filesystem refuses O_DIRECT: retry buffered (+O_DSYNC if asked)
      continue;
    }
    return OsError(err, "open");
  }
}

IoStatus WriteDurably(int fd, bool dsync, const uint8_t* data, size_t length,
                      uint64_t file_offset, int64_t* write_ns_out, int64_t* sync_ns_out) {
  const int64_t t0 = MonotonicNs();
  IoStatus status = PwriteFully(fd, data, length, file_offset);
  const int64_t t1 = MonotonicNs();
  *write_ns_out = t1 - t0;
  *sync_ns_out = *write_ns_out;
  if (!status.ok() || dsync) return status;
  status = FdatasyncOnce(fd);
  *sync_ns_out = MonotonicNs() - t1;
  return status;
}

IoStatus PwriteFully(int fd, const uint8_t* data, size_t length, uint64_t file_offset) {
  size_t done = 0;
  while (done < length) {
    size_t want = length - done;
    if (want > kMaxIoPerCallBytes) want = kMaxIoPerCallBytes;
    const ssize_t n = pwrite(fd, data + done, want, static_cast<off_t>(file_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return OsError(errno, "pwrite");
    }
    if (n == 0) {
      IoStatus s;
      s.code = "SHORT_WRITE";
      s.syscall = "pwrite";
      return s;
    }
    done += static_cast<size_t>(n);
  }
  return IoStatus{};
}

IoStatus PreadFully(int fd, uint8_t* data, size_t length, uint64_t file_offset, size_t* read_out) {
  size_t done = 0;
  while (done < length) {
    size_t want = length - done;
    if (want > kMaxIoPerCallBytes) want = kMaxIoPerCallBytes;
    const ssize_t n = pread(fd, data + done, want, static_cast<off_t>(file_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      *read_out = done;
      return OsError(errno, "pread");
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  *read_out = done;
  return IoStatus{};
}

IoStatus FdatasyncOnce(int fd) {
  if (fdatasync(fd) != 0) return OsError(errno, "fdatasync");
  return IoStatus{};
}

IoStatus ZeroFillRange(int fd, uint64_t file_offset, uint64_t length) {
  uint64_t done = 0;
  while (done < length) {
    const uint64_t left = length - done;
    const size_t chunk = left < kZeroChunkBytes ? static_cast<size_t>(left) : kZeroChunkBytes;
    const IoStatus s = PwriteFully(fd, g_zero_chunk, chunk, file_offset + done);
    if (!s.ok()) return s;
    done += chunk;
  }
  return IoStatus{};
}

IoStatus FsyncDirectory(const char* dir_path) {
  int fd;
  for (;;) {
    fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) break;
    if (errno != EINTR) return OsError(errno, "open");
  }
  IoStatus s;
  if (fsync(fd) != 0) s = OsError(errno, "fsync");
  close(fd);  // read-only descriptor: nothing to lose if close reports an error
  return s;
}

IoStatus CloseFd(int fd) {
  if (close(fd) != 0 && errno != EINTR) return OsError(errno, "close");
  return IoStatus{};
}

IoStatus RawSyncLoop(const char* path, uint32_t iterations, size_t block_bytes, bool direct,
                     bool dsync, double* latencies_ns) {
  int fd = -1;
  bool got_direct = false;
  // No O_DIRECT fallback here: a benchmark floor must measure what was asked for.
  IoStatus s = OpenWalFile(path, true, direct, dsync, false, &fd, &got_direct);
  if (!s.ok()) return s;
  uint8_t* block = static_cast<uint8_t*>(AllocAlignedZeroed(block_bytes));
  if (block == nullptr) {
    close(fd);
    return OsError(ENOMEM, "posix_memalign");
  }
  // Pre-write the whole range so the timed loop never allocates extents (see DESIGN §2).
  s = ZeroFillRange(fd, 0, static_cast<uint64_t>(iterations) * block_bytes);
  if (s.ok()) s = FdatasyncOnce(fd);
  for (uint32_t i = 0; s.ok() && i < iterations; i++) {
    std::memset(block, 0xA5, 64);
    std::memcpy(block, &i, sizeof(i));  // distinct content per iteration
    const int64_t t0 = MonotonicNs();
    s = PwriteFully(fd, block, block_bytes, static_cast<uint64_t>(i) * block_bytes);
    if (s.ok() && !dsync) s = FdatasyncOnce(fd);
    latencies_ns[i] = static_cast<double>(MonotonicNs() - t0);
  }
  FreeAligned(block);
  const IoStatus c = CloseFd(fd);
  return s.ok() ? c : s;
}

void* AllocAlignedZeroed(size_t size_bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kBlockSizeBytes, size_bytes) != 0) return nullptr;
  std::memset(p, 0, size_bytes);
  return p;
}

void FreeAligned(void* p) { std::free(p); }

void InflightAcquire(int fd) {
  if (fd >= 0 && fd < kMaxTrackedFd) g_inflight_by_fd[fd].fetch_add(1, std::memory_order_acq_rel);
}

void InflightRelease(int fd) {
  if (fd >= 0 && fd < kMaxTrackedFd) g_inflight_by_fd[fd].fetch_sub(1, std::memory_order_acq_rel);
}

bool InflightBusy(int fd) {
  return fd >= 0 && fd < kMaxTrackedFd && g_inflight_by_fd[fd].load(std::memory_order_acquire) > 0;
}

}  // namespace stemedb
