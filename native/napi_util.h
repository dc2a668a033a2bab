// Argument validation and error construction shared by the WAL addon's bindings. Every
// check throws a JS TypeError/RangeError (C++ exceptions, NAPI_CPP_EXCEPTIONS) so bad input
// from JS can never reach a syscall or crash the process.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "wal_io.h"

namespace stemedb {

// Largest integer a JS number holds exactly (Number.MAX_SAFE_INTEGER).
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;
constexpr size_t kMaxPathBytes = 4096;

// Per-environment (main thread or worker thread) state.
struct AddonData {
  Napi::FunctionReference error_ctor;  // WalNativeError, registered by src/wal/native.ts
};

// Builds a WalNativeError (or a plain Error carrying the same fields if native.ts has not
// registered the class). `err` is an errno value or 0; `code` overrides the errno name.
Napi::Value MakeWalError(Napi::Env env, const char* code, int err, const char* syscall,
                         const std::string& path, const char* detail);
Napi::Value MakeWalError(Napi::Env env, const IoStatus& s, const std::string& path);
[[noreturn]] void ThrowWalError(Napi::Env env, const IoStatus& s, const std::string& path);
[[noreturn]] void ThrowWalError(Napi::Env env, const char* code, int err, const char* syscall,
                                const std::string& path, const char* detail);

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg);

// Non-negative integer in [min, max]; TypeError if not a number, RangeError otherwise.
uint64_t ReqUint(Napi::Env env, Napi::Value v, const char* name, uint64_t min, uint64_t max);
bool ReqBool(Napi::Env env, Napi::Object obj, const char* key, const char* owner);
Napi::Object ReqObject(Napi::Env env, Napi::Value v, const char* name);
Napi::Function ReqFunction(Napi::Env env, Napi::Value v, const char* name);
// Non-empty string without NUL bytes, at most kMaxPathBytes UTF-8 bytes.
std::string ReqPath(Napi::Env env, Napi::Value v, const char* name);

struct Bytes {
  Napi::Object obj;
  uint8_t* data;
  size_t length;
};
// A Uint8Array (every Buffer is one).
Bytes ReqBytes(Napi::Env env, Napi::Value v, const char* name);

// Checks offset/length against the byte length; RangeError if out of bounds.
void CheckRange(Napi::Env env, const Bytes& b, uint64_t offset, uint64_t length);

struct Handle {
  Napi::Object obj;
  int fd;
  bool direct;
  bool dsync;
};
// A WalFileHandle: {fd: integer >= -1, path: string, direct: boolean, dsync: boolean}.
// fd -1 marks a closed handle; syscalls then fail with EBADF.
Handle ReqHandle(Napi::Env env, Napi::Value v);
// The handle's path for error messages (empty if it is no longer a string).
std::string HandlePath(Napi::Object handle);

}  // namespace stemedb
