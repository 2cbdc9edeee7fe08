// libFuzzer harness for the image decoder (Sources/CImageCodecs): any bytes through pg_decode_memory, which must
// return a status without crashing, leaking or reading out of bounds (ASan), and respect the pixel limit.
#include <stdlib.h>
#include <string.h>

#include "image_codecs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pg_image image;
    char err[PG_ERROR_CAPACITY];
    int status = pg_decode_memory(data, size, &image, err, sizeof err);
    if (status == PG_OK) {
        size_t pixels = (size_t)image.width * (size_t)image.height;
        if (image.pixels == NULL || pixels == 0 || pixels > PG_MAX_DECODE_PIXELS) abort();
        if (image.channels != 1 && image.channels != 3) abort();
        // Touch every sample: a short buffer is an ASan report; every value must be in [0, 1].
        for (size_t i = 0; i < pixels * (size_t)image.channels; i++)
            if (!(image.pixels[i] >= 0.0f && image.pixels[i] <= 1.0f)) abort();
    } else if (image.pixels != NULL || memchr(err, 0, sizeof err) == NULL) {
        abort(); // a failure leaves no image and a terminated message
    }
    pg_image_free(&image);
    return 0;
}
