int pg_codecs_version(void) { return 1; }
