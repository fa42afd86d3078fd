/* tlsload.c — tcpmapd's side of tcpmap-tls.so: the TLS functions the rest of tcpmapd calls,
 * forwarded to the module, which is loaded the first time a config needs TLS.
 *
 * Why a module: OpenSSL is two thirds of a process's start-up (its libraries' relocations),
 * and the per-connection model starts a process per connection. A cleartext config (an SSH
 * bastion, a database front door) never maps it. Linked programs (tcpmapctl, the tests) take
 * lib/tls.c and lib/tlsrelay.c directly and never see this file.
 *
 * The module is looked for next to the executable (the build tree), then in ../lib/tcpmap
 * from it (`make install`: PREFIX/sbin and PREFIX/lib/tcpmap). Only those two paths: no
 * environment variable or config can point tcpmapd at other code. */
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"
#include "util.h"

#define TLS_MODULE_NAME "tcpmap-tls.so"

static struct {
	bool loaded;
	int (*config_load)(struct config *, const char *, struct diag_list *);
	int (*server_session)(const struct config *, const struct mapping_group *, int, SSL **);
	int (*client_session)(const struct config *, const struct mapping *, int, SSL **);
	int (*handshake_step)(SSL *);
	void (*session_free)(SSL *);
	const char *(*handshake_failure_reason)(void);
	void (*relay_init)(struct tls_relay *, int, SSL *, int, SSL *);
	int (*relay_pump)(struct tls_relay *);
	void (*relay_release)(struct tls_relay *);
	void (*relay_notify_close)(struct tls_relay *);
	const char *(*verify_failure_detail)(SSL *);
	int (*server_hold)(SSL *);
	int (*server_resume)(SSL *, SSL *, int);
	int (*client_offer_alpn)(SSL *, SSL *, const struct mapping *);
} mod;

/* Open one candidate and take every symbol from it; on failure say why in `why`. */
static int module_open(const char *path, char *why, size_t size) {
	static const struct tls_abi want = TLS_ABI_INIT;
	struct {
		const char *name;
		void **slot;
	} syms[] = {
	        {"tls_config_load", (void **)&mod.config_load},
	        {"tls_server_session", (void **)&mod.server_session},
	        {"tls_client_session", (void **)&mod.client_session},
	        {"tls_handshake_step", (void **)&mod.handshake_step},
	        {"tls_session_free", (void **)&mod.session_free},
	        {"tls_handshake_failure_reason", (void **)&mod.handshake_failure_reason},
	        {"tls_relay_init", (void **)&mod.relay_init},
	        {"tls_relay_pump", (void **)&mod.relay_pump},
	        {"tls_relay_release", (void **)&mod.relay_release},
	        {"tls_relay_notify_close", (void **)&mod.relay_notify_close},
	        {"tls_verify_failure_detail", (void **)&mod.verify_failure_detail},
	        {"tls_server_hold", (void **)&mod.server_hold},
	        {"tls_server_resume", (void **)&mod.server_resume},
	        {"tls_client_offer_alpn", (void **)&mod.client_offer_alpn},
	};

	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(why, size, "%.400s", dlerror());
		return -ENOENT;
	}
	const struct tls_abi *abi = dlsym(h, "tcpmap_tls_abi");
	if (!abi || memcmp(abi, &want, sizeof want) != 0) {
		snprintf(why, size,
		         "%.300s was built for another tcpmapd (version %.16s, this is %s)", path,
		         abi ? abi->version : "unknown", TCPMAP_VERSION);
		(void)dlclose(h); /* refused either way: a failed unload changes nothing */
		return -EPROTO;
	}
	for (size_t i = 0; i < ELEMENTSOF(syms); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (!*syms[i].slot) {
			snprintf(why, size, "%.300s has no %s", path, syms[i].name);
			(void)dlclose(h); /* as above */
			return -EPROTO;
		}
	}
	/* never closed: configs hold its SSL_CTXs and their free function */
	mod.loaded = true;
	return 0;
}

/* Load the module once (config loads run in the main thread only). */
static int module_load(const char **ret_path, char *why, size_t size) {
	static char path[PATH_MAX + 64];

	*ret_path = TLS_MODULE_NAME;
	if (mod.loaded)
		return 0;
	int r = -ENOENT;
	for (unsigned i = 0; i < 2; i++) {
		int e = companion_path(TLS_MODULE_NAME, i, path, sizeof path);
		if (e < 0) {
			snprintf(why, size, "cannot find this executable: %s", strerror(-e));
			return e == -ENAMETOOLONG ? e : -ENOENT;
		}
		*ret_path = path;
		if (i == 0 && access(path, F_OK) < 0)
			continue; /* not the build tree: the installed one is what to report */
		r = module_open(path, why, size);
		if (r != -ENOENT || i == 1)
			return r;
	}
	return r;
}

int tls_config_load(struct config *c, const char *secrets_dir, struct diag_list *diags) {
	char why[512] = "";
	const char *path;

	if (!c)
		return -EINVAL;
	/* Once loaded, the module itself handles configs without TLS (and frees what an
	 * earlier load attached); before that, such a config has nothing of it. */
	if (!tls_config_needed(c) && !mod.loaded)
		return 0;
	int r = module_load(&path, why, sizeof why);
	if (r < 0) {
		/* at the first TLSContext, or the first mapping that originates TLS */
		struct source_pos pos = {0};
		if (c->n_tls_contexts > 0)
			pos = c->tls_contexts[0]->pos;
		for (size_t i = 0; i < c->n_mappings && !pos.file; i++)
			if (c->mappings[i]->tls != TLS_ORIGINATE_NONE)
				pos = c->mappings[i]->pos;
		diag_add(diags, DIAG_ERROR, pos.file, pos.line, pos.column,
		         "TLS is configured, but %s cannot be loaded: %s", path, why);
		return -EINVAL;
	}
	return mod.config_load(c, secrets_dir, diags);
}

int tls_server_session(const struct config *c, const struct mapping_group *g, int fd, SSL **ret) {
	*ret = NULL;
	return mod.loaded ? mod.server_session(c, g, fd, ret) : 0;
}

int tls_client_session(const struct config *c, const struct mapping *m, int fd, SSL **ret) {
	*ret = NULL;
	return mod.loaded ? mod.client_session(c, m, fd, ret) : 0;
}

int tls_handshake_step(SSL *ssl) { return mod.handshake_step(ssl); }
void tls_session_free(SSL *ssl) { mod.session_free(ssl); }
const char *tls_handshake_failure_reason(void) {
	return mod.loaded ? mod.handshake_failure_reason() : "handshake_failed";
}
void tls_relay_init(struct tls_relay *r, int client_fd, SSL *client_ssl, int upstream_fd,
                    SSL *upstream_ssl) {
	mod.relay_init(r, client_fd, client_ssl, upstream_fd, upstream_ssl);
}
int tls_relay_pump(struct tls_relay *r) { return mod.relay_pump(r); }
void tls_relay_release(struct tls_relay *r) {
	/* conn.c releases whichever relay it used; a TLS relay exists only with the module */
	if (mod.loaded)
		mod.relay_release(r);
}
void tls_relay_notify_close(struct tls_relay *r) { mod.relay_notify_close(r); }
int tls_server_hold(SSL *client) { return mod.server_hold(client); }
int tls_server_resume(SSL *client, SSL *upstream, int alert) {
	return mod.server_resume(client, upstream, alert);
}
int tls_client_offer_alpn(SSL *upstream, SSL *client, const struct mapping *m) {
	return mod.client_offer_alpn(upstream, client, m);
}
const char *tls_verify_failure_detail(SSL *ssl) {
	return mod.loaded ? mod.verify_failure_detail(ssl) : NULL;
}
