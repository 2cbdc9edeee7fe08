// placeholder; replaced by the image codecs work
int pg_codecs_version(void);
