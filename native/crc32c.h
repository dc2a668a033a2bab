// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum framing every WAL record.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stemedb {

// Standard incremental form: Crc32c(b, Crc32c(a, 0)) == Crc32c(a || b, 0), and
// Crc32c("123456789", 0) == 0xE3069283. Dispatches to SSE4.2 when the CPU has it.
uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed);

// Table-driven (slicing-by-8) implementation; always available. Exposed so tests can
// check that both implementations agree.
uint32_t Crc32cSoftware(const uint8_t* data, size_t length, uint32_t seed);

// "sse4.2" or "software": which implementation Crc32c() uses on this CPU.
const char* Crc32cImplName();

}  // namespace stemedb
