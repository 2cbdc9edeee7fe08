#ifndef PATCHGUARD_CBLAS_SHIM_H
#define PATCHGUARD_CBLAS_SHIM_H
// Debian's libopenblas-dev installs cblas.h through the alternatives system; the pthread variant's header is
// always at this path, and openblas_get_corename / openblas_set_num_threads are declared there.
#if __has_include(<x86_64-linux-gnu/openblas-pthread/cblas.h>)
#include <x86_64-linux-gnu/openblas-pthread/cblas.h>
#elif __has_include(<aarch64-linux-gnu/openblas-pthread/cblas.h>)
#include <aarch64-linux-gnu/openblas-pthread/cblas.h>
#else
#include <cblas.h>
#endif
#endif
