// Compressors for tests of compressed request bodies (zlib, brotli): what an
// SDK sends, and bombs.
#pragma once

#include <brotli/encode.h>
#include <zlib.h>

#include <string>
#include <string_view>

namespace loom::testing {

// windowBits: 16 + 15 gzip, 15 zlib (deflate), -15 raw deflate.
inline std::string ZlibCompress(std::string_view data, int window_bits = 16 + 15) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline std::string BrotliCompress(std::string_view data, int quality = BROTLI_DEFAULT_QUALITY) {
  size_t size = BrotliEncoderMaxCompressedSize(data.size()) + 64;
  std::string out(size, '\0');
  BrotliEncoderCompress(quality, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, data.size(),
                        reinterpret_cast<const uint8_t*>(data.data()), &size,
                        reinterpret_cast<uint8_t*>(out.data()));
  out.resize(size);
  return out;
}

}  // namespace loom::testing
