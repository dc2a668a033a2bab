// StemeDB write-ahead-log addon: aligned buffers, O_DIRECT/O_DSYNC files, pwrite+fdatasync
// on libuv worker threads, CRC32C. The typed JS surface and its contract live in
// src/wal/native.ts; keep the two in sync.
#include <napi.h>

#include <cstdint>
#include <string>

#include "crc32c.h"
#include "napi_util.h"
#include "wal_io.h"

namespace stemedb {
namespace {

constexpr uint64_t kMaxAlignedAllocBytes = uint64_t{256} << 20;
// One write/read call moves at most this much; WAL batches are far smaller.
constexpr uint64_t kMaxIoBytes = uint64_t{1} << 30;
// Preallocating more than this in one call is almost certainly a caller bug.
constexpr uint64_t kMaxZeroFillBytes = uint64_t{16} << 30;
constexpr uint64_t kMaxRawIterations = 1000000;
constexpr uint64_t kMaxRawBlockBytes = uint64_t{16} << 20;
constexpr uint64_t kMaxRawTotalBytes = uint64_t{4} << 30;

bool Aligned(uint64_t v) { return v % kBlockSizeBytes == 0; }

// O_DIRECT needs the memory address, length and file offset all block-aligned; checking
// here gives a clear EALIGN instead of a kernel EINVAL from a worker thread.
void CheckDirectAlignment(Napi::Env env, const Handle& h, const uint8_t* addr, uint64_t length,
                          uint64_t file_offset, const char* syscall) {
  if (!h.direct) return;
  if (!Aligned(reinterpret_cast<uintptr_t>(addr)) || !Aligned(length) || !Aligned(file_offset)) {
    ThrowWalError(env, "EALIGN", 0, syscall, HandlePath(h.obj),
                  "O_DIRECT needs buffer address, length and file offset aligned to 4096 bytes");
  }
}

// Base for the async operations: counts the fd as in flight from Queue until completion
// so close() cannot release the descriptor under a running worker.
class FdWorker : public Napi::AsyncWorker {
 public:
  FdWorker(const Handle& h, Napi::Function cb, const char* name)
      // The handle is both receiver and async resource: keeps it alive for its path on error
      // and avoids two throwaway objects per operation.
      : Napi::AsyncWorker(h.obj, cb, name, h.obj), fd_(h.fd), dsync_(h.dsync) {}

  ~FdWorker() override { ReleaseFd(); }

  void Start() {
    InflightAcquire(fd_);
    acquired_ = true;
    Queue();
  }

 protected:
  void ReleaseFd() {
    if (acquired_) {
      acquired_ = false;
      InflightRelease(fd_);
    }
  }

  Napi::Value ErrorValue() { return MakeWalError(Env(), status_, HandlePath(Receiver().Value())); }

  int fd_;
  bool dsync_;
  bool acquired_ = false;
  IoStatus status_;
};

// {bytesWritten, writeNs, syncNs}: what both write calls answer.
Napi::Object WriteResultObject(Napi::Env env, size_t length, int64_t write_ns, int64_t sync_ns) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("bytesWritten", Napi::Number::New(env, static_cast<double>(length)));
  r.Set("writeNs", Napi::Number::New(env, static_cast<double>(write_ns)));
  r.Set("syncNs", Napi::Number::New(env, static_cast<double>(sync_ns)));
  return r;
}

class WriteWorker final : public FdWorker {
 public:
  WriteWorker(const Handle& h, Napi::Function cb, const Bytes& buf, const uint8_t* data,
              size_t length, uint64_t file_offset)
      : FdWorker(h, cb, "stemedb.wal.writeAndSync"),
        buf_ref_(Napi::Persistent(buf.obj)),
        data_(data),
        length_(length),
        file_offset_(file_offset) {}

  void Execute() override {
    status_ = WriteDurably(fd_, dsync_, data_, length_, file_offset_, &write_ns_, &sync_ns_);
  }

  void OnOK() override {
    ReleaseFd();  // before the callback, so it may close the handle
    Napi::Env env = Env();
    if (!status_.ok()) {
      Callback().Call({ErrorValue(), env.Null()});
      return;
    }
    Callback().Call({env.Null(), WriteResultObject(env, length_, write_ns_, sync_ns_)});
  }

 private:
  Napi::ObjectReference buf_ref_;  // keeps the Buffer's memory alive while a thread reads it
  const uint8_t* data_;
  size_t length_;
  uint64_t file_offset_;
  int64_t write_ns_ = 0;
  int64_t sync_ns_ = 0;
};

class ZeroFillWorker final : public FdWorker {
 public:
  ZeroFillWorker(const Handle& h, Napi::Function cb, uint64_t file_offset, uint64_t length)
      : FdWorker(h, cb, "stemedb.wal.zeroFill"), file_offset_(file_offset), length_(length) {}

  void Execute() override {
    status_ = ZeroFillRange(fd_, file_offset_, length_);
    if (status_.ok()) status_ = FdatasyncOnce(fd_);
  }

  void OnOK() override {
    ReleaseFd();
    Napi::Env env = Env();
    Callback().Call({status_.ok() ? env.Null() : ErrorValue()});
  }

 private:
  uint64_t file_offset_;
  uint64_t length_;
};

void FinalizeAligned(Napi::Env env, uint8_t* data, void* size_hint) {
  const auto size = static_cast<int64_t>(reinterpret_cast<uintptr_t>(size_hint));
  FreeAligned(data);
  Napi::MemoryManagement::AdjustExternalMemory(env, -size);
}

Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t size = ReqUint(env, info[0], "sizeBytes", 1, kMaxAlignedAllocBytes);
  if (!Aligned(size)) ThrowRange(env, "sizeBytes must be a multiple of 4096");
  void* p = AllocAlignedZeroed(static_cast<size_t>(size));
  if (p == nullptr) ThrowWalError(env, "ENOMEM", 0, "posix_memalign", "", "out of memory");
  Napi::Buffer<uint8_t> buf;
  try {
    buf = Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), static_cast<size_t>(size),
                                     FinalizeAligned,
                                     reinterpret_cast<void*>(static_cast<uintptr_t>(size)));
  } catch (...) {
    FreeAligned(p);
    throw;
  }
  // Tell V8 about the memory it does not own so GC pressure reflects it.
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(size));
  return buf;
}

Napi::Value OpenFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = ReqPath(env, info[0], "path");
  Napi::Object opts = ReqObject(env, info[1], "opts");
  const bool create = ReqBool(env, opts, "create", "opts");
  const bool direct = ReqBool(env, opts, "direct", "opts");
  const bool dsync = ReqBool(env, opts, "dsync", "opts");
  int fd = -1;
  bool got_direct = false;
  const IoStatus s = OpenWalFile(path.c_str(), create, direct, dsync, true, &fd, &got_direct);
  if (!s.ok()) ThrowWalError(env, s, path);
  Napi::Object h = Napi::Object::New(env);
  h.Set("fd", Napi::Number::New(env, fd));
  h.Set("path", info[0]);
  h.Set("direct", Napi::Boolean::New(env, got_direct));
  h.Set("dsync", Napi::Boolean::New(env, dsync));
  return h;
}

// The checked (handle, buf, bufOffset, length, fileOffset) of a write call.
struct WriteArgs {
  Handle h;
  Bytes buf;
  const uint8_t* data;
  uint64_t length;
  uint64_t file_offset;
};

WriteArgs ReqWriteArgs(Napi::Env env, const Napi::CallbackInfo& info) {
  const Handle h = ReqHandle(env, info[0]);
  const Bytes buf = ReqBytes(env, info[1], "buf");
  const uint64_t buf_offset = ReqUint(env, info[2], "bufOffset", 0, kMaxSafeInteger);
  const uint64_t length = ReqUint(env, info[3], "length", 1, kMaxIoBytes);
  const uint64_t file_offset = ReqUint(env, info[4], "fileOffset", 0, kMaxSafeInteger - length);
  CheckRange(env, buf, buf_offset, length);
  const uint8_t* data = buf.data + buf_offset;
  CheckDirectAlignment(env, h, data, length, file_offset, "pwrite");
  return WriteArgs{h, buf, data, length, file_offset};
}

Napi::Value WriteAndSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const WriteArgs a = ReqWriteArgs(env, info);
  Napi::Function cb = ReqFunction(env, info[5], "cb");
  auto* w = new WriteWorker(a.h, cb, a.buf, a.data, static_cast<size_t>(a.length), a.file_offset);
  w->Start();
  return env.Undefined();
}

// The same write + sync on the calling thread: for a thread that owns the WAL and has
// nothing else to do meanwhile (a shard worker), it saves two thread wake-ups per flush.
Napi::Value WriteAndSyncBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const WriteArgs a = ReqWriteArgs(env, info);
  int64_t write_ns = 0;
  int64_t sync_ns = 0;
  const IoStatus status = WriteDurably(a.h.fd, a.h.dsync, a.data, static_cast<size_t>(a.length),
                                       a.file_offset, &write_ns, &sync_ns);
  if (!status.ok()) ThrowWalError(env, status, HandlePath(a.h.obj));
  return WriteResultObject(env, static_cast<size_t>(a.length), write_ns, sync_ns);
}

Napi::Value ZeroFill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Handle h = ReqHandle(env, info[0]);
  const uint64_t file_offset = ReqUint(env, info[1], "fileOffset", 0, kMaxSafeInteger);
  const uint64_t length = ReqUint(env, info[2], "length", 1, kMaxZeroFillBytes);
  if (file_offset > kMaxSafeInteger - length) ThrowRange(env, "fileOffset + length is too large");
  Napi::Function cb = ReqFunction(env, info[3], "cb");
  if (h.direct && (!Aligned(file_offset) || !Aligned(length))) {
    ThrowWalError(env, "EALIGN", 0, "pwrite", HandlePath(h.obj),
                  "O_DIRECT needs file offset and length aligned to 4096 bytes");
  }
  auto* w = new ZeroFillWorker(h, cb, file_offset, length);
  w->Start();
  return env.Undefined();
}

Napi::Value ReadSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Handle h = ReqHandle(env, info[0]);
  const Bytes buf = ReqBytes(env, info[1], "buf");
  const uint64_t buf_offset = ReqUint(env, info[2], "bufOffset", 0, kMaxSafeInteger);
  const uint64_t length = ReqUint(env, info[3], "length", 0, kMaxIoBytes);
  const uint64_t file_offset = ReqUint(env, info[4], "fileOffset", 0, kMaxSafeInteger - length);
  CheckRange(env, buf, buf_offset, length);
  uint8_t* data = buf.data + buf_offset;
  CheckDirectAlignment(env, h, data, length, file_offset, "pread");
  size_t got = 0;
  const IoStatus s = PreadFully(h.fd, data, static_cast<size_t>(length), file_offset, &got);
  if (!s.ok()) ThrowWalError(env, s, HandlePath(h.obj));
  return Napi::Number::New(env, static_cast<double>(got));
}

Napi::Value FsyncDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = ReqPath(env, info[0], "dirPath");
  const IoStatus s = FsyncDirectory(path.c_str());
  if (!s.ok()) ThrowWalError(env, s, path);
  return env.Undefined();
}

Napi::Value FdatasyncSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Handle h = ReqHandle(env, info[0]);
  const IoStatus s = FdatasyncOnce(h.fd);
  if (!s.ok()) ThrowWalError(env, s, HandlePath(h.obj));
  return env.Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Handle h = ReqHandle(env, info[0]);
  if (InflightBusy(h.fd)) {
    ThrowWalError(env, "EBUSY", EBUSY, "close", HandlePath(h.obj),
                  "a writeAndSync/zeroFill on this handle has not completed");
  }
  const IoStatus s = CloseFd(h.fd);
  // The descriptor is gone even when close reports an error; mark the handle so later use
  // fails with EBADF instead of hitting a reused descriptor number.
  if (h.fd >= 0) h.obj.Set("fd", Napi::Number::New(env, -1));
  if (!s.ok()) ThrowWalError(env, s, HandlePath(h.obj));
  return env.Undefined();
}

template <uint32_t (*Fn)(const uint8_t*, size_t, uint32_t)>
Napi::Value Crc32cBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = ReqBytes(env, info[0], "buf");
  const uint64_t offset = ReqUint(env, info[1], "offset", 0, kMaxSafeInteger);
  const uint64_t length = ReqUint(env, info[2], "length", 0, kMaxSafeInteger);
  uint64_t seed = 0;
  if (!info[3].IsUndefined()) seed = ReqUint(env, info[3], "seed", 0, 0xFFFFFFFFu);
  CheckRange(env, buf, offset, length);
  const uint32_t crc =
      Fn(buf.data + offset, static_cast<size_t>(length), static_cast<uint32_t>(seed));
  return Napi::Number::New(env, static_cast<double>(crc));
}

Napi::Value Crc32cImpl(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Crc32cImplName());
}

Napi::Value RawSyncLoopBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = ReqPath(env, info[0], "path");
  Napi::Object opts = ReqObject(env, info[1], "opts");
  const uint64_t iterations =
      ReqUint(env, opts.Get("iterations"), "opts.iterations", 1, kMaxRawIterations);
  const uint64_t block =
      ReqUint(env, opts.Get("blockBytes"), "opts.blockBytes", kBlockSizeBytes, kMaxRawBlockBytes);
  if (!Aligned(block)) ThrowRange(env, "opts.blockBytes must be a multiple of 4096");
  if (iterations * block > kMaxRawTotalBytes) {
    ThrowRange(env, "iterations * blockBytes exceeds 4 GiB");
  }
  const bool direct = ReqBool(env, opts, "direct", "opts");
  const bool dsync = ReqBool(env, opts, "dsync", "opts");
  Napi::Float64Array out = Napi::Float64Array::New(env, static_cast<size_t>(iterations));
  const IoStatus s = RawSyncLoop(path.c_str(), static_cast<uint32_t>(iterations),
                                 static_cast<size_t>(block), direct, dsync, out.Data());
  if (!s.ok()) ThrowWalError(env, s, path);
  return out;
}

// Test helper: the buffer's address modulo `modulus`, to check allocAligned's alignment.
Napi::Value BufferAddressModulo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = ReqBytes(env, info[0], "buf");
  const uint64_t modulus = ReqUint(env, info[1], "modulus", 1, uint64_t{1} << 30);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(buf.data);
  return Napi::Number::New(env, static_cast<double>(addr % modulus));
}

// Called once per environment by src/wal/native.ts so errors are WalNativeError instances.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function ctor = ReqFunction(env, info[0], "ctor");
  env.GetInstanceData<AddonData>()->error_ctor = Napi::Persistent(ctor);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonData>(new AddonData());
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned, "allocAligned"));
  exports.Set("openFile", Napi::Function::New(env, OpenFile, "openFile"));
  exports.Set("writeAndSync", Napi::Function::New(env, WriteAndSync, "writeAndSync"));
  exports.Set("writeAndSyncBlocking",
              Napi::Function::New(env, WriteAndSyncBlocking, "writeAndSyncBlocking"));
  exports.Set("zeroFill", Napi::Function::New(env, ZeroFill, "zeroFill"));
  exports.Set("readSync", Napi::Function::New(env, ReadSync, "readSync"));
  exports.Set("fsyncDir", Napi::Function::New(env, FsyncDir, "fsyncDir"));
  exports.Set("fdatasyncSync", Napi::Function::New(env, FdatasyncSync, "fdatasyncSync"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("crc32c", Napi::Function::New(env, Crc32cBinding<Crc32c>, "crc32c"));
  exports.Set("crc32cSoftware",
              Napi::Function::New(env, Crc32cBinding<Crc32cSoftware>, "crc32cSoftware"));
  exports.Set("crc32cImpl", Napi::Function::New(env, Crc32cImpl, "crc32cImpl"));
  exports.Set("rawSyncLoop", Napi::Function::New(env, RawSyncLoopBinding, "rawSyncLoop"));
  exports.Set("bufferAddressModulo",
              Napi::Function::New(env, BufferAddressModulo, "bufferAddressModulo"));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  exports.Set("blockSizeBytes", Napi::Number::New(env, static_cast<double>(kBlockSizeBytes)));
  return exports;
}

}  // namespace
}  // namespace stemedb

// The macro pastes its argument into identifiers, so it needs an unqualified name.
static Napi::Object InitStemedbWal(Napi::Env env, Napi::Object exports) {
  return stemedb::Init(env, exports);
}

NODE_API_MODULE(stemedb_wal, InitStemedbWal)
