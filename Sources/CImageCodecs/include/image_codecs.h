// PNG and JPEG decoding/encoding for PatchGuardData, on libpng and libjpeg(-turbo).
//
// libpng and libjpeg report errors by longjmp. A longjmp must never cross Swift frames, so every libpng/libjpeg
// call happens below a setjmp in this file, and each entry point returns a status code (PG_OK or a PG_ERR_*) and
// writes a NUL-terminated, human-readable reason into the caller's `err` buffer (at most `err_capacity` bytes,
// PG_ERROR_CAPACITY is enough). No function here aborts, prints, or leaks on corrupt or truncated input.
//
// Pixel convention: decoded images are planar (CHW) float in [0, 1]: 8-bit samples are v / 255, 16-bit samples
// v / 65535 (exact to the float rounding of that quotient). Gray sources give 1 channel, colour sources 3.
// Alpha (an alpha channel or a tRNS chunk) is dropped: colour values are kept as stored, not composited, which
// is what PIL's `convert("RGB")` does.
#ifndef PG_IMAGE_CODECS_H
#define PG_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Status codes.
#define PG_OK 0
#define PG_ERR_IO 1          // the file could not be opened or read
#define PG_ERR_FORMAT 2      // neither PNG nor JPEG (by magic bytes)
#define PG_ERR_CORRUPT 3     // truncated or corrupt data (libpng/libjpeg's message in err)
#define PG_ERR_UNSUPPORTED 4 // valid but unsupported (CMYK JPEG)
#define PG_ERR_MEMORY 5      // out of memory or image too large
#define PG_ERR_ARGUMENT 6    // invalid arguments to an encoder

// Formats.
#define PG_FORMAT_UNKNOWN 0
#define PG_FORMAT_PNG 1
#define PG_FORMAT_JPEG 2

#define PG_ERROR_CAPACITY 512

// Decoder limits (README, "Limits"). Pixels: 2^26 (67.1 M, e.g. 8192×8192), checked from the file's header
// before any pixel buffer is allocated — at most ~1 GiB of decoder memory for an RGB image (the float result
// and libpng's row buffer). Encoded file size: 256 MiB. Only regular files are read (no FIFOs or devices).
#define PG_MAX_DECODE_PIXELS ((size_t)1 << 26)
#define PG_MAX_FILE_BYTES ((size_t)256 << 20)

/// A decoded image. `pixels` holds channels × height × width floats (planar, row-major), allocated by this library:
/// release it with pg_image_free.
typedef struct pg_image {
    float *pixels;
    int32_t width;
    int32_t height;
    int32_t channels;        // 1 (gray) or 3 (RGB)
    int32_t source_channels; // channels in the file, alpha included (palette PNG: 3, or 4 with tRNS)
    int32_t bit_depth;       // bit depth in the file (1, 2, 4, 8, 16)
    int32_t format;          // PG_FORMAT_PNG or PG_FORMAT_JPEG
} pg_image;

/// An encoded file in memory, allocated by this library: release it with pg_buffer_free.
typedef struct pg_buffer {
    uint8_t *data;
    size_t size;
} pg_buffer;

/// The format of `data` by its magic bytes (PG_FORMAT_UNKNOWN when neither).
int pg_sniff_format(const uint8_t *data, size_t size);

/// Decodes a PNG or JPEG held in memory. On failure `out` is left empty (pixels NULL).
int pg_decode_memory(const uint8_t *data, size_t size, pg_image *out, char *err, size_t err_capacity);

/// Reads the whole file at `path` and decodes it. A missing file gives PG_ERR_IO with reason "file not found"; a
/// FIFO, device or socket gives PG_ERR_IO "not a regular file (…)" without blocking or reading; a file over
/// PG_MAX_FILE_BYTES or an image over PG_MAX_DECODE_PIXELS gives PG_ERR_MEMORY with the sizes in the reason.
int pg_decode_file(const char *path, pg_image *out, char *err, size_t err_capacity);

void pg_image_free(pg_image *image);
void pg_buffer_free(pg_buffer *buffer);

/// Encodes planar float pixels (channels × height × width, values clamped to [0, 1], NaN → 0) as a PNG with
/// `channels` 1 (gray) or 3 (RGB) and `bit_depth` 8 or 16, rounding to the nearest level.
/// `compression_level` is zlib's 0…9, or -1 for the default (6).
int pg_encode_png(const float *pixels, int32_t width, int32_t height, int32_t channels, int32_t bit_depth,
                  int32_t compression_level, pg_buffer *out, char *err, size_t err_capacity);

/// Encodes planar float pixels (1 or 3 channels, clamped, NaN → 0) as a baseline JPEG at `quality` 1…100
/// (libjpeg's defaults otherwise: 4:2:0 chroma subsampling, as PIL's `save(…, "JPEG", quality=q)`).
int pg_encode_jpeg(const float *pixels, int32_t width, int32_t height, int32_t channels, int32_t quality,
                   pg_buffer *out, char *err, size_t err_capacity);

/// Low-level PNG writer, used by tests to build every PNG variant: `samples` are rows exactly as PNG stores them
/// (interleaved, packed for bit depths below 8, 16-bit big-endian), each row png_get_rowbytes long.
/// `color_type` is a PNG colour type (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA). `palette` (3 bytes per
/// entry) is required for colour type 3; `trns` (optional) is the tRNS chunk: one alpha per palette entry for
/// colour type 3, or for types 0/2 a single 16-bit transparent colour given as `trns_count` 1 (gray) / 3 (RGB)
/// 16-bit values in `trns16`. `interlace` 1 writes Adam7.
int pg_encode_png_samples(const uint8_t *samples, int32_t width, int32_t height, int32_t color_type,
                          int32_t bit_depth, const uint8_t *palette, int32_t palette_count, const uint8_t *trns,
                          const uint16_t *trns16, int32_t trns_count, int32_t interlace, pg_buffer *out,
                          char *err, size_t err_capacity);

/// Low-level JPEG writer, used by tests: `samples` are interleaved 8-bit rows with `components` 1 (gray), 3 (RGB)
/// or 4 (CMYK, written with an Adobe marker).
int pg_encode_jpeg_samples(const uint8_t *samples, int32_t width, int32_t height, int32_t components,
                           int32_t quality, pg_buffer *out, char *err, size_t err_capacity);

#ifdef __cplusplus
}
#endif

#endif
