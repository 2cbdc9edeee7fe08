// Writes a small seed corpus for the image decoder harness into the folder given as argv[1]: PNGs of several colour
// types and bit depths (interlaced or not) and baseline JPEGs, gray and colour, all a few pixels wide.
#include <stdio.h>
#include <string.h>

#include "image_codecs.h"

static void save(const char *dir, const char *name, const pg_buffer *b) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return;
    fwrite(b->data, 1, b->size, f);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_seeds DIR\n"); return 2; }
    char err[PG_ERROR_CAPACITY];
    float pixels[3 * 7 * 5];
    for (int i = 0; i < 3 * 7 * 5; i++) pixels[i] = (float)((i * 37) % 256) / 255.0f;
    struct { int channels, depth; const char *name; } png[] = {{1, 8, "gray8.png"}, {3, 8, "rgb8.png"},
                                                               {1, 16, "gray16.png"}, {3, 16, "rgb16.png"}};
    for (int k = 0; k < 4; k++) {
        pg_buffer b = {0};
        if (pg_encode_png(pixels, 7, 5, png[k].channels, png[k].depth, -1, &b, err, sizeof err) == PG_OK)
            save(argv[1], png[k].name, &b);
        pg_buffer_free(&b);
    }
    uint8_t samples[64], palette[12] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255}, trns[4] = {0, 128, 255, 255};
    for (int i = 0; i < 64; i++) samples[i] = (uint8_t)(i * 29);
    pg_buffer b = {0};
    if (pg_encode_png_samples(samples, 4, 4, 3, 8, palette, 4, trns, NULL, 4, 1, &b, err, sizeof err) == PG_OK)
        save(argv[1], "palette_interlaced.png", &b);
    pg_buffer_free(&b);
    if (pg_encode_png_samples(samples, 8, 3, 0, 1, NULL, 0, NULL, NULL, 0, 0, &b, err, sizeof err) == PG_OK)
        save(argv[1], "gray1.png", &b);
    pg_buffer_free(&b);
    for (int channels = 1; channels <= 3; channels += 2) {
        if (pg_encode_jpeg(pixels, 7, 5, channels, 75, &b, err, sizeof err) == PG_OK)
            save(argv[1], channels == 1 ? "gray.jpg" : "rgb.jpg", &b);
        pg_buffer_free(&b);
    }
    return 0;
}
