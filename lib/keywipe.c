/* keywipe.c — wiping what private-key operations leave behind outside OpenSSL's secure heap:
 * blocks OpenSSL frees, stack frames below the caller, and the vector registers. A scan of
 * tcpmapd's memory after handshakes (tests/bats/security.bats, finding 5) found key numbers
 * in each of the three; SECURITY.md says what remains unprotected. Part of the TLS module.
 * It never logs and never fails. */
#include "keywipe.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* OpenSSL decodes a key through temporaries of its ordinary heap (the PEM's DER, the
 * decoder's buffers) and frees them without wiping: a scan of the process's memory found
 * the key's DER there long after loading. So every block OpenSSL frees is wiped first. It
 * can only be set before OpenSSL's first allocation; when it is too late (a program that
 * used OpenSSL before loading a config) it is a no-op, and keys are as protected as
 * OpenSSL's own secure heap makes them. */
static void *wipe_malloc(size_t n, const char *file, int line) {
	(void)file;
	(void)line;
	return malloc(n);
}

static void wipe_free(void *p, const char *file, int line) {
	(void)file;
	(void)line;
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

/* A moved block must not leave its old copy behind: allocate, copy, wipe, free. */
static void *wipe_realloc(void *p, size_t n, const char *file, int line) {
	if (!p)
		return malloc(n);
	size_t old = malloc_usable_size(p);
	if (n <= old)
		return p; /* shrinking in place keeps every byte ours */
	void *q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old);
	wipe_free(p, file, line);
	return q;
}

void keywipe_on_free(void) {
	static bool tried;
	if (!tried) {
		tried = true;
		(void)CRYPTO_set_mem_functions(wipe_malloc, wipe_realloc, wipe_free);
	}
}

/* OpenSSL's vector big-number code leaves numbers of the key in the vector registers, and
 * the next thing that saves them (the dynamic linker's lazy binding, a signal frame) writes
 * them to the stack: a scan found the CRT coefficient there, in 64-byte register-sized
 * pieces. Zero them; vzeroall clears ZMM0-15 whole, and 16-31 exist only with AVX-512. */
static void clear_vector_registers(void) {
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx512f"))
		__asm__ volatile(
		        "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
		        "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
		        "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
		        "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
		        "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
		        "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
		        "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
		        "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31" ::
		                : "memory");
	if (__builtin_cpu_supports("avx"))
		__asm__ volatile("vzeroall" ::
		                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
		                           "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
		                           "xmm13", "xmm14", "xmm15");
#endif
}

/* ... and OpenSSL's frames below the caller keep numbers of the key too: wipe that much
 * stack once a private-key operation is back. Deeper than OpenSSL's deepest signing path;
 * a few microseconds against a handshake's milliseconds. */
__attribute__((noinline)) void keywipe_stack(void) {
	char buf[64 * 1024];
	explicit_bzero(buf, sizeof buf);
	__asm__ volatile("" : : "r"(buf) : "memory");
	clear_vector_registers();
}
