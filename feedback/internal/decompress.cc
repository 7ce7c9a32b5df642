// Streaming decoders that write into a string grown in chunks and checked
// against the cap before every chunk: the cap bounds memory, not just the
// answer. A stream must end exactly at the end of the body: a truncated stream
// is refused (the event inside would be half a document) and so are bytes after
// its end.
#include "feedback/internal/decompress.h"

#include <brotli/decode.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace loom::feedback::internal {
namespace {

constexpr size_t kChunk = 64 << 10;

Status TooBig(std::string_view what, size_t max_output) {
  return Status::ResourceExhausted("the " + std::string(what) + " body decompresses to more than " +
                                   std::to_string(max_output) + " bytes");
}

// windowBits: 16 + 15 for gzip, 15 for zlib, -15 for raw deflate.
Result<std::string> Inflate(std::string_view body, int window_bits, std::string_view what,
                            size_t max_output) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return Status::Internal("inflateInit2 failed");
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  zs.avail_in = static_cast<uInt>(body.size());
  std::string out;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() >= max_output) return TooBig(what, max_output);
    size_t have = out.size();
    size_t room = std::min(kChunk, max_output - have);
    out.resize(have + room);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    zs.avail_out = static_cast<uInt>(room);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(have + (room - zs.avail_out));
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      return Status::InvalidArgument("the " + std::string(what) +
                                     " body is truncated: the compressed stream does not end");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return Status::InvalidArgument("the " + std::string(what) + " body is corrupt (" +
                                     (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)) + ")");
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      return Status::InvalidArgument("the " + std::string(what) +
                                     " body is truncated: the compressed stream does not end");
    }
  }
  if (zs.avail_in != 0) {
    return Status::InvalidArgument("the " + std::string(what) +
                                   " body has bytes after the end of its compressed stream");
  }
  return out;
}

Result<std::string> Unbrotli(std::string_view body, size_t max_output) {
  std::unique_ptr<BrotliDecoderState, decltype(&BrotliDecoderDestroyInstance)> state(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), &BrotliDecoderDestroyInstance);
  if (!state) return Status::Internal("BrotliDecoderCreateInstance failed");
  size_t avail_in = body.size();
  const uint8_t* next_in = reinterpret_cast<const uint8_t*>(body.data());
  std::string out;
  while (true) {
    if (out.size() >= max_output) return TooBig("br", max_output);
    size_t have = out.size();
    size_t room = std::min(kChunk, max_output - have);
    out.resize(have + room);
    size_t avail_out = room;
    uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data() + have);
    BrotliDecoderResult rc = BrotliDecoderDecompressStream(state.get(), &avail_in, &next_in,
                                                           &avail_out, &next_out, nullptr);
    out.resize(have + (room - avail_out));
    if (rc == BROTLI_DECODER_RESULT_SUCCESS) break;
    if (rc == BROTLI_DECODER_RESULT_ERROR) {
      return Status::InvalidArgument(
          std::string("the br body is corrupt (") +
          BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state.get())) + ")");
    }
    if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
      return Status::InvalidArgument(
          "the br body is truncated: the compressed stream does not end");
    }
    // NEEDS_MORE_OUTPUT: loop, the cap is checked first.
  }
  if (avail_in != 0) {
    return Status::InvalidArgument("the br body has bytes after the end of its compressed stream");
  }
  return out;
}

}  // namespace

Result<std::string> Decompress(std::string_view body, std::string_view content_encoding,
                               size_t max_output) {
  std::string enc(content_encoding);
  std::transform(enc.begin(), enc.end(), enc.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!enc.empty() && std::isspace(static_cast<unsigned char>(enc.back()))) enc.pop_back();
  while (!enc.empty() && std::isspace(static_cast<unsigned char>(enc.front()))) enc.erase(0, 1);
  if (enc.empty() || enc == "identity") {
    if (body.size() > max_output) {
      return Status::ResourceExhausted("the body is larger than " + std::to_string(max_output) +
                                       " bytes");
    }
    return std::string(body);
  }
  if (enc == "gzip" || enc == "x-gzip") return Inflate(body, 16 + MAX_WBITS, "gzip", max_output);
  if (enc == "deflate") {
    // RFC 9110's deflate is zlib-wrapped; some clients send raw deflate. A zlib
    // header is two bytes whose big-endian value is a multiple of 31.
    bool zlib_header =
        body.size() >= 2 && (static_cast<unsigned char>(body[0]) & 0x0f) == 8 &&
        ((static_cast<unsigned char>(body[0]) << 8) | static_cast<unsigned char>(body[1])) % 31 ==
            0;
    return Inflate(body, zlib_header ? MAX_WBITS : -MAX_WBITS, "deflate", max_output);
  }
  if (enc == "br") return Unbrotli(body, max_output);
  return Status::Unimplemented("Content-Encoding '" + std::string(content_encoding) +
                               "' is not supported (use gzip, deflate, br or none)");
}

}  // namespace loom::feedback::internal
