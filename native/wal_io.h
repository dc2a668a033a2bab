// Plain POSIX I/O for the WAL addon: no N-API here, so everything in this file may run on
// libuv worker threads. Every function reports failure through IoStatus, never errno.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stemedb {

constexpr size_t kBlockSizeBytes = 4096;
// Zero-fill writes at most this much per pwrite so preallocation never needs a big buffer.
constexpr size_t kZeroChunkBytes = size_t{1} << 20;

struct IoStatus {
  int err = 0;                    // errno value, 0 if the failure is not an OS error
  const char* syscall = nullptr;  // e.g. "pwrite", "fdatasync"
  const char* code = nullptr;     // non-errno code (e.g. "SHORT_WRITE"); nullptr otherwise
  bool ok() const { return err == 0 && code == nullptr; }
};

inline IoStatus OsError(int err, const char* syscall) {
  IoStatus s;
  s.err = err;
  s.syscall = syscall;
  return s;
}

int64_t MonotonicNs();

// Opens O_RDWR|O_CLOEXEC (+O_CREAT mode 0644, +O_DSYNC, +O_DIRECT as requested). With
// `fallback_direct`, an EINVAL for O_DIRECT (e.g. tmpfs on old kernels) is answered by
// reopening without it; *direct_out then says what the descriptor really has.
IoStatus OpenWalFile(const char* path, bool create, bool direct, bool dsync, bool fallback_direct,
                     int* fd_out, bool* direct_out);

// A durable write: PwriteFully, then FdatasyncOnce unless `dsync` (O_DSYNC: the pwrite itself
// waited for stable storage, and sync_ns_out = write_ns_out). Times in nanoseconds.
IoStatus WriteDurably(int fd, bool dsync, const uint8_t* data, size_t length,
                      uint64_t file_offset, int64_t* write_ns_out, int64_t* sync_ns_out);

// Writes exactly `length` bytes (loops over partial writes; a 0-byte write is SHORT_WRITE).
IoStatus PwriteFully(int fd, const uint8_t* data, size_t length, uint64_t file_offset);

// Reads up to `length` bytes; stops early only at end of file.
IoStatus PreadFully(int fd, uint8_t* data, size_t length, uint64_t file_offset, size_t* read_out);

// One fdatasync call. Never retried: after a failed write-back Linux may mark pages clean,
// so a second call could "succeed" without the data (fsyncgate).
IoStatus FdatasyncOnce(int fd);

// pwrite()s zeros over [file_offset, file_offset + length) in chunks of <= kZeroChunkBytes.
// No sync; callers decide. Chunks are 4096-aligned whenever the range is.
IoStatus ZeroFillRange(int fd, uint64_t file_offset, uint64_t length);

IoStatus FsyncDirectory(const char* dir_path);

// Closes `fd`. EINTR counts as closed (Linux always releases the descriptor).
IoStatus CloseFd(int fd);

// Benchmark floor: see NativeWal.rawSyncLoop in src/wal/native.ts. Fills latencies_ns.
IoStatus RawSyncLoop(const char* path, uint32_t iterations, size_t block_bytes, bool direct,
                     bool dsync, double* latencies_ns);

// 4096-aligned zeroed memory (nullptr on failure); release with FreeAligned.
void* AllocAlignedZeroed(size_t size_bytes);
void FreeAligned(void* p);

// In-flight async operations per descriptor, so close() can refuse while a worker thread
// still uses the fd (otherwise the number could be reused and a WAL write land in another
// file). Called only on JS threads; descriptors >= kMaxTrackedFd are not tracked.
constexpr int kMaxTrackedFd = 1 << 20;
void InflightAcquire(int fd);
void InflightRelease(int fd);
bool InflightBusy(int fd);

}  // namespace stemedb
