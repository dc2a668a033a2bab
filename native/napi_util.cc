#include "napi_util.h"

#include <uv.h>

#include <cmath>
#include <cstring>

namespace stemedb {

Napi::Value MakeWalError(Napi::Env env, const char* code, int err, const char* syscall,
                         const std::string& path, const char* detail) {
  char name_buf[64];
  char desc_buf[256];
  if (code == nullptr) {
    // libuv error numbers are negated errno values on Unix; this matches Node's fs codes.
    code = uv_err_name_r(-err, name_buf, sizeof(name_buf));
  }
  if (detail == nullptr) detail = err != 0 ? uv_strerror_r(-err, desc_buf, sizeof(desc_buf)) : "";
  if (syscall == nullptr) syscall = "";
  std::string message = std::string(code) + ": " + detail;
  if (syscall[0] != '\0') message += std::string(", ") + syscall;
  if (!path.empty()) message += " '" + path + "'";

  Napi::String js_message = Napi::String::New(env, message);
  Napi::String js_code = Napi::String::New(env, code);
  Napi::Number js_errno = Napi::Number::New(env, err);
  Napi::String js_syscall = Napi::String::New(env, syscall);
  Napi::String js_path = Napi::String::New(env, path);
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data != nullptr && !data->error_ctor.IsEmpty()) {
    return data->error_ctor.New({js_message, js_code, js_errno, js_syscall, js_path});
  }
  Napi::Object e = Napi::Error::New(env, message).Value();
  e.Set("code", js_code);
  e.Set("errno", js_errno);
  e.Set("syscall", js_syscall);
  e.Set("path", js_path);
  return e;
}

Napi::Value MakeWalError(Napi::Env env, const IoStatus& s, const std::string& path) {
  const char* detail = nullptr;
  if (s.code != nullptr && std::strcmp(s.code, "SHORT_WRITE") == 0) {
    detail = "write made no progress";
  }
  return MakeWalError(env, s.code, s.err, s.syscall, path, detail);
}

void ThrowWalError(Napi::Env env, const IoStatus& s, const std::string& path) {
  throw Napi::Error(env, MakeWalError(env, s, path));
}

void ThrowWalError(Napi::Env env, const char* code, int err, const char* syscall,
                   const std::string& path, const char* detail) {
  throw Napi::Error(env, MakeWalError(env, code, err, syscall, path, detail));
}

void ThrowType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

void ThrowRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

uint64_t ReqUint(Napi::Env env, Napi::Value v, const char* name, uint64_t min, uint64_t max) {
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < 0 ||
      d > static_cast<double>(kMaxSafeInteger)) {
    ThrowRange(env, std::string(name) + " must be a non-negative safe integer");
  }
  const uint64_t u = static_cast<uint64_t>(d);
  if (u < min || u > max) {
    ThrowRange(env, std::string(name) + " must be in [" + std::to_string(min) + ", " +
                        std::to_string(max) + "], got " + std::to_string(u));
  }
  return u;
}

bool ReqBool(Napi::Env env, Napi::Object obj, const char* key, const char* owner) {
  Napi::Value v = obj.Get(key);
  if (!v.IsBoolean()) ThrowType(env, std::string(owner) + "." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object ReqObject(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsObject() || v.IsFunction()) ThrowType(env, std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Function ReqFunction(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsFunction()) ThrowType(env, std::string(name) + " must be a function");
  return v.As<Napi::Function>();
}

std::string ReqPath(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsString()) ThrowType(env, std::string(name) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty()) ThrowType(env, std::string(name) + " must not be empty");
  if (s.size() > kMaxPathBytes) ThrowRange(env, std::string(name) + " is too long");
  if (s.find('\0') != std::string::npos) ThrowType(env, std::string(name) + " contains a NUL byte");
  return s;
}

Bytes ReqBytes(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowType(env, std::string(name) + " must be a Buffer or Uint8Array");
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  return Bytes{a, a.Data(), a.ElementLength()};
}

void CheckRange(Napi::Env env, const Bytes& b, uint64_t offset, uint64_t length) {
  if (offset > b.length || length > b.length - offset) {
    ThrowRange(env, "range [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                        ") is outside the buffer of " + std::to_string(b.length) + " bytes");
  }
}

Handle ReqHandle(Napi::Env env, Napi::Value v) {
  Napi::Object h = ReqObject(env, v, "handle");
  Napi::Value fd_v = h.Get("fd");
  if (!fd_v.IsNumber()) ThrowType(env, "handle.fd must be a number");
  const double fd = fd_v.As<Napi::Number>().DoubleValue();
  if (!(fd >= -1 && fd <= 2147483647.0) || std::trunc(fd) != fd) {
    ThrowRange(env, "handle.fd must be an integer >= -1");
  }
  if (!h.Get("path").IsString()) ThrowType(env, "handle.path must be a string");
  const bool direct = ReqBool(env, h, "direct", "handle");
  const bool dsync = ReqBool(env, h, "dsync", "handle");
  return Handle{h, static_cast<int>(fd), direct, dsync};
}

std::string HandlePath(Napi::Object handle) {
  Napi::Value p = handle.Get("path");
  return p.IsString() ? p.As<Napi::String>().Utf8Value() : std::string();
}

}  // namespace stemedb
