// PNG and JPEG codecs behind setjmp guards; see include/image_codecs.h for the contract.
//
// Pattern used throughout: each operation keeps all of its state and resources in a struct that lives in the
// *calling* frame (`pg_…` entry point). A small `…_guarded` function does the setjmp and every libpng/libjpeg call;
// on error the library's error handler writes the reason into the state and longjmps back to that setjmp, the
// guarded function returns the status, and the entry point frees whatever was allocated. Because the state is not
// an automatic object of the function that calls setjmp, its contents stay well defined after the longjmp
// (C11 7.13.2.1p3), and no longjmp ever leaves this file.
#include "image_codecs.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

// Largest image we encode, in samples (channels × height × width): 2^28 floats = 1 GiB.
#define PG_MAX_SAMPLES ((size_t)1 << 28)
#define PG_MAX_DIMENSION 1000000

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static void set_error(char *err, size_t cap, const char *format, ...) {
    if (err == NULL || cap == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, cap, format, args);
    va_end(args);
}

static int fail(char *err, size_t cap, int status, const char *message) {
    set_error(err, cap, "%s", message);
    return status;
}

// Error context shared by the libpng and libjpeg handlers. `status` stays PG_OK until the first error; an error
// raised by our own code sets status and message before handing control to the library's error path, so the
// library handler keeps that more specific message.
typedef struct err_ctx {
    char *err;
    size_t cap;
    int status;
    const char *label; // prefix for library messages: "invalid PNG", "PNG encoder", …
} err_ctx;

static void err_ctx_set(err_ctx *e, int status, const char *message) {
    if (e->status != PG_OK) return;
    e->status = status;
    set_error(e->err, e->cap, "%s", message);
}

static void err_ctx_library(err_ctx *e, const char *message) {
    if (e->status != PG_OK) return;
    e->status = PG_ERR_CORRUPT;
    set_error(e->err, e->cap, "%s: %s", e->label, message);
}

static inline uint8_t float_to_u8(float x) {
    if (!(x > 0.0f)) return 0; // also NaN
    if (x >= 1.0f) return 255;
    return (uint8_t)(x * 255.0f + 0.5f);
}

static inline uint16_t float_to_u16(float x) {
    if (!(x > 0.0f)) return 0;
    if (x >= 1.0f) return 65535;
    return (uint16_t)((double)x * 65535.0 + 0.5);
}

static float u8_table[256];
static int u8_table_ready = 0;

static const float *u8_to_float(void) {
    // Idempotent and written with identical values by every thread, so a race only repeats the same stores.
    if (!__atomic_load_n(&u8_table_ready, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 256; i++) u8_table[i] = (float)i / 255.0f;
        __atomic_store_n(&u8_table_ready, 1, __ATOMIC_RELEASE);
    }
    return u8_table;
}

int pg_sniff_format(const uint8_t *data, size_t size) {
    if (data == NULL) return PG_FORMAT_UNKNOWN;
    if (size >= 8 && memcmp(data, png_magic, 8) == 0) return PG_FORMAT_PNG;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return PG_FORMAT_JPEG;
    return PG_FORMAT_UNKNOWN;
}

void pg_image_free(pg_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    memset(image, 0, sizeof *image);
}

void pg_buffer_free(pg_buffer *buffer) {
    if (buffer == NULL) return;
    free(buffer->data);
    buffer->data = NULL;
    buffer->size = 0;
}

// The decoder's pixel limit (PG_MAX_DECODE_PIXELS in the header), checked from the header before any pixel buffer
// is allocated. Writes "image is W×H pixels (… M), over the decoder's limit of … M pixels (8192×8192)" into
// `message` and returns 0 when the image is too large.
static int check_decode_pixels(size_t width, size_t height, char *message, size_t cap) {
    if (width == 0 || height == 0) {
        set_error(message, cap, "image has no pixels (%zux%zu)", width, height);
        return 0;
    }
    if (width > PG_MAX_DIMENSION || height > PG_MAX_DIMENSION || width * height > PG_MAX_DECODE_PIXELS) {
        set_error(message, cap,
                  "image is %zux%zu pixels (%.1f M), over the decoder's limit of %.1f M pixels (e.g. 8192x8192)",
                  width, height, (double)width * (double)height / 1e6, (double)PG_MAX_DECODE_PIXELS / 1e6);
        return 0;
    }
    return 1;
}

static int check_size(size_t width, size_t height, size_t channels) {
    if (width == 0 || height == 0) return 0;
    if (width > PG_MAX_DIMENSION || height > PG_MAX_DIMENSION) return 0;
    return width * height * channels <= PG_MAX_SAMPLES;
}

// MARK: - PNG decoding

typedef struct png_dec {
    err_ctx e;
    const uint8_t *data;
    size_t size, pos;
    png_structp png;
    png_infop info;
    uint8_t *raw;     // rowbytes × height, as libpng delivers it after our transformations
    png_bytep *rows;  // height row pointers into raw
    float *pixels;    // the result, planar
    pg_image result;
} png_dec;

static void png_error_handler(png_structp png, png_const_charp message) {
    err_ctx *e = (err_ctx *)png_get_error_ptr(png);
    err_ctx_library(e, message);
    png_longjmp(png, 1);
}

static void png_warning_handler(png_structp png, png_const_charp message) {
    (void)png;
    (void)message; // warnings (bad ancillary chunks, sRGB profile notes) are not our user's concern
}

static void png_read_memory(png_structp png, png_bytep out, size_t count) {
    png_dec *d = (png_dec *)png_get_io_ptr(png);
    if (d->size - d->pos < count) {
        err_ctx_set(&d->e, PG_ERR_CORRUPT, "truncated PNG");
        png_error(png, "truncated PNG");
    }
    memcpy(out, d->data + d->pos, count);
    d->pos += count;
}

static int png_decode_guarded(png_dec *d) {
    if (setjmp(png_jmpbuf(d->png))) return d->e.status != PG_OK ? d->e.status : PG_ERR_CORRUPT;

    png_set_read_fn(d->png, d, png_read_memory);
    png_set_user_limits(d->png, PG_MAX_DIMENSION, PG_MAX_DIMENSION);
    png_read_info(d->png, d->info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(d->png, d->info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    char too_large[200];
    if (!check_decode_pixels(width, height, too_large, sizeof too_large)) {
        err_ctx_set(&d->e, PG_ERR_MEMORY, too_large);
        return d->e.status;
    }
    int source_channels = png_get_channels(d->png, d->info);
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        source_channels = png_get_valid(d->png, d->info, PNG_INFO_tRNS) ? 4 : 3;

    // Transformations: palette → RGB, low-bit gray → 8 bits, alpha stripped. 16-bit samples stay 16-bit
    // (big-endian, converted below). tRNS is not expanded to alpha, i.e. it is ignored.
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(d->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(d->png);
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(d->png);
    (void)png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->info);

    int channels = png_get_channels(d->png, d->info); // 1 or 3 (2/4 only if alpha survived; handled below)
    int depth = png_get_bit_depth(d->png, d->info);   // 8 or 16
    size_t rowbytes = png_get_rowbytes(d->png, d->info);
    if (depth != 8 && depth != 16) {
        err_ctx_set(&d->e, PG_ERR_UNSUPPORTED, "unsupported PNG sample layout");
        return d->e.status;
    }
    int out_channels = channels >= 3 ? 3 : 1;
    if (!check_size(width, height, (size_t)out_channels) || rowbytes < (size_t)width * channels * (depth / 8)) {
        err_ctx_set(&d->e, PG_ERR_MEMORY, "PNG image too large");
        return d->e.status;
    }

    d->raw = (uint8_t *)malloc(rowbytes * height);
    d->rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    d->pixels = (float *)malloc(sizeof(float) * (size_t)out_channels * width * height);
    if (d->raw == NULL || d->rows == NULL || d->pixels == NULL) {
        err_ctx_set(&d->e, PG_ERR_MEMORY, "out of memory");
        return d->e.status;
    }
    for (png_uint_32 y = 0; y < height; y++) d->rows[y] = d->raw + (size_t)y * rowbytes;
    png_read_image(d->png, d->rows);
    png_read_end(d->png, NULL);

    size_t plane = (size_t)width * height;
    if (depth == 8) {
        const float *table = u8_to_float();
        for (png_uint_32 y = 0; y < height; y++) {
            const uint8_t *row = d->rows[y];
            for (int c = 0; c < out_channels; c++) {
                float *dst = d->pixels + c * plane + (size_t)y * width;
                for (png_uint_32 x = 0; x < width; x++) dst[x] = table[row[(size_t)x * channels + c]];
            }
        }
    } else {
        for (png_uint_32 y = 0; y < height; y++) {
            const uint8_t *row = d->rows[y];
            for (int c = 0; c < out_channels; c++) {
                float *dst = d->pixels + c * plane + (size_t)y * width;
                for (png_uint_32 x = 0; x < width; x++) {
                    const uint8_t *s = row + 2 * ((size_t)x * channels + c);
                    dst[x] = (float)(((unsigned)s[0] << 8) | s[1]) / 65535.0f;
                }
            }
        }
    }
    d->result.pixels = d->pixels;
    d->result.width = (int32_t)width;
    d->result.height = (int32_t)height;
    d->result.channels = out_channels;
    d->result.source_channels = source_channels;
    d->result.bit_depth = bit_depth;
    d->result.format = PG_FORMAT_PNG;
    return PG_OK;
}

static int decode_png(const uint8_t *data, size_t size, pg_image *out, char *err, size_t cap) {
    png_dec d;
    memset(&d, 0, sizeof d);
    d.e.err = err;
    d.e.cap = cap;
    d.e.label = "invalid PNG";
    d.data = data;
    d.size = size;
    d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d.e, png_error_handler, png_warning_handler);
    if (d.png == NULL) return fail(err, cap, PG_ERR_MEMORY, "out of memory");
    d.info = png_create_info_struct(d.png);
    if (d.info == NULL) {
        png_destroy_read_struct(&d.png, NULL, NULL);
        return fail(err, cap, PG_ERR_MEMORY, "out of memory");
    }
    int status = png_decode_guarded(&d);
    png_destroy_read_struct(&d.png, &d.info, NULL);
    free(d.raw);
    free(d.rows);
    if (status != PG_OK) {
        free(d.pixels);
        return status;
    }
    *out = d.result;
    return PG_OK;
}

// MARK: - JPEG error handling and memory source/destination

typedef struct jpeg_err {
    struct jpeg_error_mgr pub; // first: libjpeg hands us a pointer to it
    err_ctx e;
    jmp_buf jump;
} jpeg_err;

static void jpeg_error_exit_handler(j_common_ptr cinfo) {
    jpeg_err *je = (jpeg_err *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) err_ctx_set(&je->e, PG_ERR_MEMORY, "out of memory");
    err_ctx_library(&je->e, message);
    longjmp(je->jump, 1);
}

static void jpeg_emit_message_handler(j_common_ptr cinfo, int level) {
    if (level < 0) cinfo->err->num_warnings++; // warnings (e.g. extraneous bytes) are tolerated, as PIL does
}

static void jpeg_output_message_handler(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_err_init(jpeg_err *je, char *err, size_t cap, const char *label) {
    jpeg_std_error(&je->pub);
    je->pub.error_exit = jpeg_error_exit_handler;
    je->pub.emit_message = jpeg_emit_message_handler;
    je->pub.output_message = jpeg_output_message_handler;
    je->e.err = err;
    je->e.cap = cap;
    je->e.label = label;
}

// Our own raise: sets the message, then leaves through the same longjmp as library errors.
static void jpeg_raise(j_common_ptr cinfo, int status, const char *message) {
    jpeg_err *je = (jpeg_err *)cinfo->err;
    err_ctx_set(&je->e, status, message);
    longjmp(je->jump, 1);
}

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }

// Called only when all bytes are consumed: the data ended before the decoder was done. (libjpeg's own memory
// source would insert a fake EOI and return a gray-filled image with a warning; we refuse truncated files.)
static boolean src_fill(j_decompress_ptr cinfo) {
    jpeg_raise((j_common_ptr)cinfo, PG_ERR_CORRUPT, "truncated JPEG");
    return FALSE;
}

static void src_skip(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0) return;
    if ((size_t)count > src->bytes_in_buffer) jpeg_raise((j_common_ptr)cinfo, PG_ERR_CORRUPT, "truncated JPEG");
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}

static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

typedef struct jpeg_dest {
    struct jpeg_destination_mgr pub;
    uint8_t *data;
    size_t capacity;
    size_t size;
} jpeg_dest;

static void dest_init(j_compress_ptr cinfo) {
    jpeg_dest *dst = (jpeg_dest *)cinfo->dest;
    dst->capacity = 1 << 16;
    dst->data = (uint8_t *)malloc(dst->capacity);
    if (dst->data == NULL) jpeg_raise((j_common_ptr)cinfo, PG_ERR_MEMORY, "out of memory");
    dst->pub.next_output_byte = dst->data;
    dst->pub.free_in_buffer = dst->capacity;
}

static boolean dest_empty(j_compress_ptr cinfo) { // the buffer is full
    jpeg_dest *dst = (jpeg_dest *)cinfo->dest;
    size_t used = dst->capacity;
    uint8_t *grown = (uint8_t *)realloc(dst->data, dst->capacity * 2);
    if (grown == NULL) jpeg_raise((j_common_ptr)cinfo, PG_ERR_MEMORY, "out of memory");
    dst->data = grown;
    dst->capacity *= 2;
    dst->pub.next_output_byte = dst->data + used;
    dst->pub.free_in_buffer = dst->capacity - used;
    return TRUE;
}

static void dest_term(j_compress_ptr cinfo) {
    jpeg_dest *dst = (jpeg_dest *)cinfo->dest;
    dst->size = dst->capacity - dst->pub.free_in_buffer;
}

// MARK: - JPEG decoding

typedef struct jpeg_dec {
    jpeg_err je;
    struct jpeg_decompress_struct cinfo;
    struct jpeg_source_mgr src;
    uint8_t *row;
    float *pixels;
    pg_image result;
} jpeg_dec;

static int jpeg_decode_guarded(jpeg_dec *d, const uint8_t *data, size_t size) {
    if (setjmp(d->je.jump)) return d->je.e.status != PG_OK ? d->je.e.status : PG_ERR_CORRUPT;

    jpeg_create_decompress(&d->cinfo);
    d->src.init_source = src_init;
    d->src.fill_input_buffer = src_fill;
    d->src.skip_input_data = src_skip;
    d->src.resync_to_restart = jpeg_resync_to_restart;
    d->src.term_source = src_term;
    d->src.next_input_byte = data;
    d->src.bytes_in_buffer = size;
    d->cinfo.src = &d->src;

    jpeg_read_header(&d->cinfo, TRUE);
    // Before jpeg_start_decompress, which allocates whole-image buffers for progressive files.
    char too_large[200];
    if (!check_decode_pixels(d->cinfo.image_width, d->cinfo.image_height, too_large, sizeof too_large))
        jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_MEMORY, too_large);
    if (d->cinfo.jpeg_color_space == JCS_CMYK || d->cinfo.jpeg_color_space == JCS_YCCK)
        jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_UNSUPPORTED, "CMYK JPEG not supported");
    int gray = d->cinfo.jpeg_color_space == JCS_GRAYSCALE;
    d->cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    int source_channels = d->cinfo.num_components;
    jpeg_start_decompress(&d->cinfo);

    size_t width = d->cinfo.output_width, height = d->cinfo.output_height;
    int channels = d->cinfo.output_components;
    if (channels != 1 && channels != 3)
        jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_UNSUPPORTED, "unsupported JPEG colour layout");
    if (!check_size(width, height, (size_t)channels))
        jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_MEMORY, "JPEG image too large");
    d->row = (uint8_t *)malloc(width * channels);
    d->pixels = (float *)malloc(sizeof(float) * width * height * channels);
    if (d->row == NULL || d->pixels == NULL) jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_MEMORY, "out of memory");

    const float *table = u8_to_float();
    size_t plane = width * height;
    while (d->cinfo.output_scanline < height) {
        size_t y = d->cinfo.output_scanline;
        JSAMPROW rows[1] = {d->row};
        if (jpeg_read_scanlines(&d->cinfo, rows, 1) != 1)
            jpeg_raise((j_common_ptr)&d->cinfo, PG_ERR_CORRUPT, "truncated JPEG");
        for (int c = 0; c < channels; c++) {
            float *dst = d->pixels + c * plane + y * width;
            for (size_t x = 0; x < width; x++) dst[x] = table[d->row[x * channels + c]];
        }
    }
    jpeg_finish_decompress(&d->cinfo);

    d->result.pixels = d->pixels;
    d->result.width = (int32_t)width;
    d->result.height = (int32_t)height;
    d->result.channels = channels;
    d->result.source_channels = source_channels;
    d->result.bit_depth = d->cinfo.data_precision;
    d->result.format = PG_FORMAT_JPEG;
    return PG_OK;
}

static int decode_jpeg(const uint8_t *data, size_t size, pg_image *out, char *err, size_t cap) {
    jpeg_dec d;
    memset(&d, 0, sizeof d);
    jpeg_err_init(&d.je, err, cap, "invalid JPEG");
    d.cinfo.err = &d.je.pub;
    int status = jpeg_decode_guarded(&d, data, size);
    jpeg_destroy_decompress(&d.cinfo); // safe on a zeroed or partly created struct
    free(d.row);
    if (status != PG_OK) {
        free(d.pixels);
        return status;
    }
    *out = d.result;
    return PG_OK;
}

// MARK: - Decoding entry points

int pg_decode_memory(const uint8_t *data, size_t size, pg_image *out, char *err, size_t err_capacity) {
    if (out == NULL) return fail(err, err_capacity, PG_ERR_ARGUMENT, "no output image");
    memset(out, 0, sizeof *out);
    if (data == NULL || size == 0) return fail(err, err_capacity, PG_ERR_FORMAT, "empty file");
    switch (pg_sniff_format(data, size)) {
    case PG_FORMAT_PNG: return decode_png(data, size, out, err, err_capacity);
    case PG_FORMAT_JPEG: return decode_jpeg(data, size, out, err, err_capacity);
    default: break;
    }
    // A prefix of a signature: the file was cut inside its first bytes.
    if (size < 8 && memcmp(data, png_magic, size) == 0)
        return fail(err, err_capacity, PG_ERR_CORRUPT, "truncated PNG");
    if (size < 3 && data[0] == 0xFF && (size == 1 || data[1] == 0xD8))
        return fail(err, err_capacity, PG_ERR_CORRUPT, "truncated JPEG");
    return fail(err, err_capacity, PG_ERR_FORMAT, "not a PNG or JPEG file");
}

static int open_error(char *err, size_t cap, int code) {
    switch (code) {
    case ENOENT: return fail(err, cap, PG_ERR_IO, "file not found");
    case ENOTDIR: return fail(err, cap, PG_ERR_IO, "file not found (a parent is not a directory)");
    case EACCES: return fail(err, cap, PG_ERR_IO, "permission denied");
    case EISDIR: return fail(err, cap, PG_ERR_IO, "is a directory");
    default: set_error(err, cap, "cannot read file: %s", strerror(code)); return PG_ERR_IO;
    }
}

int pg_decode_file(const char *path, pg_image *out, char *err, size_t err_capacity) {
    if (out == NULL) return fail(err, err_capacity, PG_ERR_ARGUMENT, "no output image");
    memset(out, 0, sizeof *out);
    if (path == NULL || path[0] == 0) return fail(err, err_capacity, PG_ERR_ARGUMENT, "empty path");
    // O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read (a FIFO, a device such
    // as /dev/zero behind a symlink, or a socket is refused before any byte is read).
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return open_error(err, err_capacity, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int code = errno;
        close(fd);
        return open_error(err, err_capacity, code);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return open_error(err, err_capacity, EISDIR);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        const char *kind = S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                         : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket" : "not a file";
        set_error(err, err_capacity, "not a regular file (%s); images are read from regular files only", kind);
        return PG_ERR_IO;
    }
    if ((unsigned long long)st.st_size > PG_MAX_FILE_BYTES) {
        close(fd);
        set_error(err, err_capacity, "file is %lld bytes, over the decoder's limit of %d MiB",
                  (long long)st.st_size, (int)(PG_MAX_FILE_BYTES >> 20));
        return PG_ERR_MEMORY;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    // Read at most the size fstat gave (+1 to see growth); a file that grows past the limit meanwhile is refused.
    size_t capacity = (size_t)st.st_size + 1, size = 0;
    uint8_t *data = (uint8_t *)malloc(capacity);
    if (data == NULL) {
        close(fd);
        return fail(err, err_capacity, PG_ERR_MEMORY, "out of memory");
    }
    for (;;) {
        if (size == capacity) {
            if (capacity > PG_MAX_FILE_BYTES) {
                free(data);
                close(fd);
                set_error(err, err_capacity, "file grew past the decoder's limit of %d MiB while being read",
                          (int)(PG_MAX_FILE_BYTES >> 20));
                return PG_ERR_MEMORY;
            }
            uint8_t *grown = (uint8_t *)realloc(data, capacity * 2);
            if (grown == NULL) {
                free(data);
                close(fd);
                return fail(err, err_capacity, PG_ERR_MEMORY, "out of memory");
            }
            data = grown;
            capacity *= 2;
        }
        ssize_t n = read(fd, data + size, capacity - size);
        if (n < 0) {
            if (errno == EINTR) continue;
            int code = errno;
            free(data);
            close(fd);
            return open_error(err, err_capacity, code);
        }
        if (n == 0) break;
        size += (size_t)n;
    }
    close(fd);
    int status = pg_decode_memory(data, size, out, err, err_capacity);
    free(data);
    return status;
}

// MARK: - PNG encoding

typedef struct png_enc {
    err_ctx e;
    png_structp png;
    png_infop info;
    uint8_t *data;
    size_t size, capacity;
    png_bytep *rows;
} png_enc;

static void png_write_memory(png_structp png, png_bytep bytes, size_t count) {
    png_enc *w = (png_enc *)png_get_io_ptr(png);
    if (w->capacity - w->size < count) {
        size_t capacity = w->capacity ? w->capacity : 1 << 14;
        while (capacity - w->size < count) capacity *= 2;
        uint8_t *grown = (uint8_t *)realloc(w->data, capacity);
        if (grown == NULL) {
            err_ctx_set(&w->e, PG_ERR_MEMORY, "out of memory");
            png_error(png, "out of memory");
        }
        w->data = grown;
        w->capacity = capacity;
    }
    memcpy(w->data + w->size, bytes, count);
    w->size += count;
}

static void png_flush_memory(png_structp png) { (void)png; }

static int png_channels_of(int color_type) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_PALETTE: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 0;
    }
}

typedef struct png_enc_args {
    const uint8_t *samples;
    int32_t width, height, color_type, bit_depth;
    const uint8_t *palette;
    int32_t palette_count;
    const uint8_t *trns;
    const uint16_t *trns16;
    int32_t trns_count, interlace, compression_level;
} png_enc_args;

static int png_encode_guarded(png_enc *w, const png_enc_args *a) {
    if (setjmp(png_jmpbuf(w->png))) return w->e.status != PG_OK ? w->e.status : PG_ERR_CORRUPT;

    png_set_write_fn(w->png, w, png_write_memory, png_flush_memory);
    png_set_IHDR(w->png, w->info, (png_uint_32)a->width, (png_uint_32)a->height, a->bit_depth, a->color_type,
                 a->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (a->compression_level >= 0) png_set_compression_level(w->png, a->compression_level);
    if (a->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color palette[256];
        for (int i = 0; i < a->palette_count; i++) {
            palette[i].red = a->palette[3 * i];
            palette[i].green = a->palette[3 * i + 1];
            palette[i].blue = a->palette[3 * i + 2];
        }
        png_set_PLTE(w->png, w->info, palette, a->palette_count);
        if (a->trns != NULL && a->trns_count > 0)
            png_set_tRNS(w->png, w->info, a->trns, a->trns_count, NULL);
    } else if (a->trns16 != NULL && a->trns_count > 0) {
        png_color_16 colour;
        memset(&colour, 0, sizeof colour);
        if (a->color_type == PNG_COLOR_TYPE_GRAY) {
            colour.gray = a->trns16[0];
        } else if (a->trns_count >= 3) {
            colour.red = a->trns16[0];
            colour.green = a->trns16[1];
            colour.blue = a->trns16[2];
        }
        png_set_tRNS(w->png, w->info, NULL, 0, &colour);
    }
    png_write_info(w->png, w->info);
    size_t rowbytes = ((size_t)a->width * png_channels_of(a->color_type) * a->bit_depth + 7) / 8;
    w->rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)a->height);
    if (w->rows == NULL) {
        err_ctx_set(&w->e, PG_ERR_MEMORY, "out of memory");
        return w->e.status;
    }
    for (int32_t y = 0; y < a->height; y++) w->rows[y] = (png_bytep)(a->samples + (size_t)y * rowbytes);
    png_write_image(w->png, w->rows);
    png_write_end(w->png, NULL);
    return PG_OK;
}

static int encode_png_samples(const png_enc_args *a, pg_buffer *out, char *err, size_t cap) {
    if (out == NULL) return fail(err, cap, PG_ERR_ARGUMENT, "no output buffer");
    out->data = NULL;
    out->size = 0;
    if (a->samples == NULL || a->width <= 0 || a->height <= 0 || png_channels_of(a->color_type) == 0)
        return fail(err, cap, PG_ERR_ARGUMENT, "invalid PNG layout");
    if (a->color_type == PNG_COLOR_TYPE_PALETTE &&
        (a->palette == NULL || a->palette_count < 1 || a->palette_count > 256))
        return fail(err, cap, PG_ERR_ARGUMENT, "palette PNG needs 1…256 palette entries");
    png_enc w;
    memset(&w, 0, sizeof w);
    w.e.err = err;
    w.e.cap = cap;
    w.e.label = "PNG encoder";
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w.e, png_error_handler, png_warning_handler);
    if (w.png == NULL) return fail(err, cap, PG_ERR_MEMORY, "out of memory");
    w.info = png_create_info_struct(w.png);
    if (w.info == NULL) {
        png_destroy_write_struct(&w.png, NULL);
        return fail(err, cap, PG_ERR_MEMORY, "out of memory");
    }
    int status = png_encode_guarded(&w, a);
    png_destroy_write_struct(&w.png, &w.info);
    free(w.rows);
    if (status == PG_ERR_CORRUPT) status = PG_ERR_ARGUMENT; // libpng rejected what we asked it to write
    if (status != PG_OK) {
        free(w.data);
        return status;
    }
    out->data = w.data;
    out->size = w.size;
    return PG_OK;
}

int pg_encode_png_samples(const uint8_t *samples, int32_t width, int32_t height, int32_t color_type,
                          int32_t bit_depth, const uint8_t *palette, int32_t palette_count, const uint8_t *trns,
                          const uint16_t *trns16, int32_t trns_count, int32_t interlace, pg_buffer *out,
                          char *err, size_t err_capacity) {
    png_enc_args a = {samples, width, height, color_type, bit_depth, palette, palette_count, trns, trns16,
                      trns_count, interlace, -1};
    return encode_png_samples(&a, out, err, err_capacity);
}

int pg_encode_png(const float *pixels, int32_t width, int32_t height, int32_t channels, int32_t bit_depth,
                  int32_t compression_level, pg_buffer *out, char *err, size_t err_capacity) {
    if (out != NULL) {
        out->data = NULL;
        out->size = 0;
    }
    if (pixels == NULL || width <= 0 || height <= 0)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "empty image");
    if (channels != 1 && channels != 3)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "PNG encoder takes 1 or 3 channels");
    if (bit_depth != 8 && bit_depth != 16)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "PNG bit depth must be 8 or 16");
    if (compression_level > 9) compression_level = 9;
    if (!check_size((size_t)width, (size_t)height, (size_t)channels))
        return fail(err, err_capacity, PG_ERR_MEMORY, "image too large");
    size_t plane = (size_t)width * height, bytes = (size_t)bit_depth / 8;
    uint8_t *samples = (uint8_t *)malloc(plane * channels * bytes);
    if (samples == NULL) return fail(err, err_capacity, PG_ERR_MEMORY, "out of memory");
    for (size_t i = 0; i < plane; i++) {
        for (int c = 0; c < channels; c++) {
            float v = pixels[c * plane + i];
            uint8_t *s = samples + (i * channels + c) * bytes;
            if (bit_depth == 8) {
                s[0] = float_to_u8(v);
            } else {
                uint16_t q = float_to_u16(v);
                s[0] = (uint8_t)(q >> 8);
                s[1] = (uint8_t)(q & 0xFF);
            }
        }
    }
    png_enc_args a = {samples, width, height, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                      bit_depth, NULL, 0, NULL, NULL, 0, 0, compression_level};
    int status = encode_png_samples(&a, out, err, err_capacity);
    free(samples);
    return status;
}

// MARK: - JPEG encoding

typedef struct jpeg_enc {
    jpeg_err je;
    struct jpeg_compress_struct cinfo;
    jpeg_dest dest;
} jpeg_enc;

static int jpeg_encode_guarded(jpeg_enc *w, const uint8_t *samples, int32_t width, int32_t height,
                               int32_t components, int32_t quality) {
    if (setjmp(w->je.jump)) return w->je.e.status != PG_OK ? w->je.e.status : PG_ERR_CORRUPT;

    jpeg_create_compress(&w->cinfo);
    w->dest.pub.init_destination = dest_init;
    w->dest.pub.empty_output_buffer = dest_empty;
    w->dest.pub.term_destination = dest_term;
    w->cinfo.dest = &w->dest.pub;
    w->cinfo.image_width = (JDIMENSION)width;
    w->cinfo.image_height = (JDIMENSION)height;
    w->cinfo.input_components = components;
    w->cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&w->cinfo);
    jpeg_set_quality(&w->cinfo, quality, TRUE);
    jpeg_start_compress(&w->cinfo, TRUE);
    size_t stride = (size_t)width * components;
    while (w->cinfo.next_scanline < w->cinfo.image_height) {
        JSAMPROW rows[1] = {(JSAMPROW)(samples + w->cinfo.next_scanline * stride)};
        jpeg_write_scanlines(&w->cinfo, rows, 1);
    }
    jpeg_finish_compress(&w->cinfo);
    return PG_OK;
}

int pg_encode_jpeg_samples(const uint8_t *samples, int32_t width, int32_t height, int32_t components,
                           int32_t quality, pg_buffer *out, char *err, size_t err_capacity) {
    if (out == NULL) return fail(err, err_capacity, PG_ERR_ARGUMENT, "no output buffer");
    out->data = NULL;
    out->size = 0;
    if (samples == NULL || width <= 0 || height <= 0 || width > 65500 || height > 65500)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "JPEG images are 1…65500 pixels on a side");
    if (components != 1 && components != 3 && components != 4)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "JPEG encoder takes 1, 3 or 4 components");
    if (quality < 1 || quality > 100) return fail(err, err_capacity, PG_ERR_ARGUMENT, "JPEG quality must be 1…100");
    jpeg_enc w;
    memset(&w, 0, sizeof w);
    jpeg_err_init(&w.je, err, err_capacity, "JPEG encoder");
    w.cinfo.err = &w.je.pub;
    int status = jpeg_encode_guarded(&w, samples, width, height, components, quality);
    jpeg_destroy_compress(&w.cinfo);
    if (status != PG_OK) {
        free(w.dest.data);
        return status;
    }
    out->data = w.dest.data;
    out->size = w.dest.size;
    return PG_OK;
}

int pg_encode_jpeg(const float *pixels, int32_t width, int32_t height, int32_t channels, int32_t quality,
                   pg_buffer *out, char *err, size_t err_capacity) {
    if (out != NULL) {
        out->data = NULL;
        out->size = 0;
    }
    if (pixels == NULL || width <= 0 || height <= 0)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "empty image");
    if (channels != 1 && channels != 3)
        return fail(err, err_capacity, PG_ERR_ARGUMENT, "JPEG encoder takes 1 or 3 channels");
    if (!check_size((size_t)width, (size_t)height, (size_t)channels))
        return fail(err, err_capacity, PG_ERR_MEMORY, "image too large");
    size_t plane = (size_t)width * height;
    uint8_t *samples = (uint8_t *)malloc(plane * channels);
    if (samples == NULL) return fail(err, err_capacity, PG_ERR_MEMORY, "out of memory");
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < channels; c++) samples[i * channels + c] = float_to_u8(pixels[c * plane + i]);
    int status = pg_encode_jpeg_samples(samples, width, height, channels, quality, out, err, err_capacity);
    free(samples);
    return status;
}
