#include "crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define STEMEDB_HAVE_X86_CRC 1
#else
#define STEMEDB_HAVE_X86_CRC 0
#endif

namespace stemedb {
namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78u;
constexpr size_t kSliceCount = 8;

using Tables = std::array<std::array<uint32_t, 256>, kSliceCount>;

// Generated at compile time so there is no initialization race between threads.
constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ kPolyReflected : (c >> 1);
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (size_t s = 1; s < kSliceCount; s++) {
      t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
    }
  }
  return t;
}

constexpr Tables kTables = MakeTables();
static_assert(kTables[0][1] == 0xF26B8303u, "CRC32C table generation is wrong");

// `crc` is the running (already inverted) register value.
uint32_t SoftwareUpdate(uint32_t crc, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    crc = (crc >> 8) ^ kTables[0][(crc ^ *p++) & 0xFFu];
    n--;
  }
  while (n >= 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= crc;
    crc = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^ kTables[5][(lo >> 16) & 0xFFu] ^
          kTables[4][lo >> 24] ^ kTables[3][hi & 0xFFu] ^ kTables[2][(hi >> 8) & 0xFFu] ^
          kTables[1][(hi >> 16) & 0xFFu] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    crc = (crc >> 8) ^ kTables[0][(crc ^ *p++) & 0xFFu];
    n--;
  }
  return crc;
}

#if STEMEDB_HAVE_X86_CRC
// Compiled for SSE4.2 only here; callers reach it only after the CPUID check below, so
// the rest of the addon stays runnable on CPUs without the instruction.
__attribute__((target("sse4.2"))) uint32_t HardwareUpdate(uint32_t crc, const uint8_t* p,
                                                          size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    crc = _mm_crc32_u8(crc, *p++);
    n--;
  }
#if defined(__x86_64__)
  uint64_t c64 = crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  crc = static_cast<uint32_t>(c64);
#endif
  while (n > 0) {
    crc = _mm_crc32_u8(crc, *p++);
    n--;
  }
  return crc;
}

bool CpuHasSse42() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
}
#endif

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

UpdateFn SelectUpdate() {
#if STEMEDB_HAVE_X86_CRC
  if (CpuHasSse42()) return &HardwareUpdate;
#endif
  return &SoftwareUpdate;
}

// Function-local static: initialized once, thread-safe (C++11 magic statics), shared by
// every worker thread that loads the addon.
UpdateFn ActiveUpdate() {
  static const UpdateFn fn = SelectUpdate();
  return fn;
}

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed) {
  return ~ActiveUpdate()(~seed, data, length);
}

uint32_t Crc32cSoftware(const uint8_t* data, size_t length, uint32_t seed) {
  return ~SoftwareUpdate(~seed, data, length);
}

const char* Crc32cImplName() {
  return ActiveUpdate() == &SoftwareUpdate ? "software" : "sse4.2";
}

}  // namespace stemedb
