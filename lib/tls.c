/* tls.c — the OpenSSL contexts of one config: a server SSL_CTX per TLSContext that has a
 * certificate, client SSL_CTXs for origination, secrets found where tls_config_load (tls.h)
 * says, and the checks that turn a bad TLS setup into a config error rather than a failed
 * handshake. The per-connection side (sessions, handshake steps) is tlssession.c's. Built
 * into a module loaded only for TLS configs (docs/ARCHITECTURE.md, 'Why the TLS module is
 * loaded lazily').
 *
 * Everything is built once, when a config is loaded, so the connection path only calls
 * SSL_new(). This file must never log or print key material, and never hold a private
 * key's bytes outside OpenSSL's secure heap (key_read_secure). */
#include "tls.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keywipe.h"
#include "route.h"
#include "tlsticket.h"
#include "util.h"

/* The same default as the binaries' --secrets-dir, under the configured sysconfdir. */
#define DEFAULT_SECRETS_DIR TCPMAP_SYSCONFDIR "/tcpmap/secrets"

/* Where a context's certificate, key and CA come from, after the secret lookup. */
struct tls_files {
	char *cert;
	char *key;
	char *ca;
	char *crl; /* revoked client certificates (crl_secret) */
};

static void tls_files_done(struct tls_files *f) {
	free(f->cert);
	free(f->key);
	free(f->ca);
	free(f->crl);
	*f = (struct tls_files){};
}

struct tls_context_state {
	const struct tls_context *context;
	SSL_CTX *server;     /* NULL when the context has no certificate */
	SSL_CTX *client;     /* only when some mapping says `tls: NAME` */
	unsigned char *alpn; /* alpn_protocols in wire format (length-prefixed) */
	size_t alpn_len;
	struct tls_files files; /* paths only; kept while loading, so lookups run once */
	bool broken;            /* an error was reported; build nothing more from it */
	bool reported_no_cert;
	bool served_elsewhere; /* only listeners of another process use it: nothing loaded */
};

struct tls_runtime {
	struct tls_context_state *contexts; /* parallel to config->tls_contexts */
	size_t n_contexts;
	SSL_CTX *plain_client;       /* `tls: true`, shared by every such mapping */
	SSL_CTX **client_by_mapping; /* borrowed, indexed by mapping->index */
	size_t n_mappings;
};

/* One tls_config_load() run: where diags go and whether any of them was an error. */
struct tls_loader {
	struct config *config;
	struct tls_runtime *runtime;
	const char *secrets_dir;
	const char *credentials_dir; /* NULL when not run with systemd credentials */
	struct diag_list *diags;
	unsigned n_errors;
	bool out_of_memory;
};

/* ---- diagnostics ---------------------------------------------------------------------- */

_printf_(4, 5) static void tls_diag(struct tls_loader *L, enum diag_level level,
                                    const struct source_pos *pos, const char *fmt, ...) {
	va_list ap;

	if (level == DIAG_ERROR)
		L->n_errors++;
	va_start(ap, fmt);
	if (diag_vadd(L->diags, level, pos->file ? pos->file : "<config>", pos->line, pos->column,
	              fmt, ap) < 0)
		L->out_of_memory = true;
	va_end(ap);
}

/* A Host's certificate and settings load as a context's do; diags name its kind. */
#define CONTEXT_LABEL(t) ((t)->label ? (t)->label : "tlscontext")
#define context_error(L, t, fmt, ...)                                                              \
	tls_diag((L), DIAG_ERROR, &(t)->pos, "%s \"%s\": " fmt, CONTEXT_LABEL(t), (t)->name,       \
	         ##__VA_ARGS__)
#define context_warning(L, t, fmt, ...)                                                            \
	tls_diag((L), DIAG_WARNING, &(t)->pos, "%s \"%s\": " fmt, CONTEXT_LABEL(t), (t)->name,     \
	         ##__VA_ARGS__)
/* At the field that caused it when it was written, else at the document. */
#define field_error(L, t, field, fmt, ...)                                                         \
	tls_diag((L), DIAG_ERROR, (t)->field_pos[field].line ? &(t)->field_pos[field] : &(t)->pos, \
	         "%s \"%s\": " fmt, CONTEXT_LABEL(t), (t)->name, ##__VA_ARGS__)
#define mapping_error(L, m, fmt, ...)                                                              \
	tls_diag((L), DIAG_ERROR, &(m)->pos, "mapping \"%s\": " fmt, (m)->name, ##__VA_ARGS__)

/* OpenSSL's reason for the last failure, for a diag; clears the queue so the next check
 * starts clean. Reason strings never carry key bytes. */
static const char *openssl_reason(void) {
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return reason ? reason : "unknown OpenSSL error";
}

/* ---- secrets -------------------------------------------------------------------------- */

/* 0 when `path` is a readable regular file; -ENOENT when it does not exist; else -errno. */
static int probe_file(const char *path) {
	_cleanup_close_ int fd = -EBADF;
	struct stat st;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	return 0;
}

static char *strv_join(char **v, const char *sep) {
	size_t len = 1, sep_len = strlen(sep);
	char *s, *p;

	for (char **i = v; i && *i; i++)
		len += strlen(*i) + sep_len;
	s = malloc(len);
	if (!s)
		return NULL;
	p = s;
	*p = 0;
	for (char **i = v; i && *i; i++) {
		if (i != v)
			p = stpcpy(p, sep);
		p = stpcpy(p, *i);
	}
	return s;
}

/* Find secret NAME's certificate and key: systemd credentials first (LoadCredential= puts
 * them there, readable only by us), then the Kubernetes-style secrets directory. */
static int find_secret_pair(struct tls_loader *L, const struct tls_context *t, const char *name,
                            struct tls_files *f) {
	_cleanup_(strv_freep) char **tried = NULL;
	_cleanup_free_ char *tried_text = NULL;
	size_t n_tried = 0;

	for (int place = 0; place < 2; place++) {
		_cleanup_free_ char *cert = NULL, *key = NULL;
		int r;

		if (place == 0 && !L->credentials_dir)
			continue;
		r = place == 0 ? asprintf(&cert, "%s/%s.crt", L->credentials_dir, name)
		               : asprintf(&cert, "%s/%s/tls.crt", L->secrets_dir, name);
		if (r < 0)
			return -ENOMEM;
		r = place == 0 ? asprintf(&key, "%s/%s.key", L->credentials_dir, name)
		               : asprintf(&key, "%s/%s/tls.key", L->secrets_dir, name);
		if (r < 0)
			return -ENOMEM;

		r = probe_file(cert);
		if (r == -ENOENT || r == -ENOTDIR) {
			char *copy = strdup(cert);
			if (!copy || strv_push(&tried, &n_tried, copy) < 0)
				return -ENOMEM;
			continue;
		}
		if (r < 0) {
			field_error(L, t, TF_SECRET, "secret \"%s\": cannot read %s: %s", name,
			            cert, strerror(-r));
			return -EINVAL;
		}
		r = probe_file(key);
		if (r < 0) {
			field_error(L, t, TF_SECRET,
			            "secret \"%s\": found %s, but cannot read its key %s: %s", name,
			            cert, key, strerror(-r));
			return -EINVAL;
		}
		f->cert = TAKE_PTR(cert);
		f->key = TAKE_PTR(key);
		return 0;
	}

	tried_text = strv_join(tried, ", ");
	if (!tried_text)
		return -ENOMEM;
	field_error(L, t, TF_SECRET, "secret \"%s\": not found; tried %s", name, tried_text);
	return -EINVAL;
}

/* A secret that is one file: as a credential NAME`cred_suffix`, else in the secrets
 * directory NAME/`keys[0]`, NAME/`keys[1]`, ... in turn. `field` names it in diags. */
static int find_secret_file(struct tls_loader *L, const struct tls_context *t, enum tls_field field,
                            const char *what, const char *name, const char *cred_suffix,
                            const char *const *keys, size_t n_keys, char **ret) {
	_cleanup_(strv_freep) char **tried = NULL;
	_cleanup_free_ char *tried_text = NULL;
	size_t n_tried = 0;

	for (int place = -1; place < (int)n_keys; place++) {
		_cleanup_free_ char *path = NULL;
		int r;

		if (place < 0 && !L->credentials_dir)
			continue;
		r = place < 0 ? asprintf(&path, "%s/%s%s", L->credentials_dir, name, cred_suffix)
		              : asprintf(&path, "%s/%s/%s", L->secrets_dir, name, keys[place]);
		if (r < 0)
			return -ENOMEM;
		r = probe_file(path);
		if (r == -ENOENT || r == -ENOTDIR) {
			if (strv_push(&tried, &n_tried, TAKE_PTR(path)) < 0)
				return -ENOMEM;
			continue;
		}
		if (r < 0) {
			field_error(L, t, field, "%s \"%s\": cannot read %s: %s", what, name, path,
			            strerror(-r));
			return -EINVAL;
		}
		*ret = TAKE_PTR(path);
		return 0;
	}
	tried_text = strv_join(tried, ", ");
	if (!tried_text)
		return -ENOMEM;
	field_error(L, t, field, "%s \"%s\": not found; tried %s", what, name, tried_text);
	return -EINVAL;
}

/* A CA secret: as a credential, NAME.crt; in the secrets directory, its ca.crt if present
 * (Kubernetes convention), else its tls.crt. No key is needed. */
static int find_secret_ca(struct tls_loader *L, const struct tls_context *t, const char *name,
                          char **ret) {
	static const char *const keys[] = {"ca.crt", "tls.crt"};
	return find_secret_file(L, t, TF_CA_SECRET, "ca_secret", name, ".crt", keys,
	                        ELEMENTSOF(keys), ret);
}

/* A CRL secret: as a credential NAME.crl; in the secrets directory its crl.pem (the key
 * Emissary's CRL secrets use), else ca.crl, else tls.crl. */
static int find_secret_crl(struct tls_loader *L, const struct tls_context *t, const char *name,
                           char **ret) {
	static const char *const keys[] = {"crl.pem", "ca.crl", "tls.crl"};
	return find_secret_file(L, t, TF_CRL_SECRET, "crl_secret", name, ".crl", keys,
	                        ELEMENTSOF(keys), ret);
}

static int check_given_file(struct tls_loader *L, const struct tls_context *t, enum tls_field field,
                            const char *path, char **ret) {
	static const char *const names[_TF_MAX] = {
	        [TF_CERT_CHAIN_FILE] = "cert_chain_file",
	        [TF_PRIVATE_KEY_FILE] = "private_key_file",
	        [TF_CACERT_CHAIN_FILE] = "cacert_chain_file",
	};
	int r = probe_file(path);

	if (r < 0) {
		field_error(L, t, field, "%s: cannot read %s: %s", names[field], path,
		            strerror(-r));
		return -EINVAL;
	}
	*ret = strdup(path);
	return *ret ? 0 : -ENOMEM;
}

/* Resolve every file the context names. -EINVAL (already reported) or -ENOMEM. */
static int find_context_files(struct tls_loader *L, const struct tls_context *t,
                              struct tls_files *f) {
	int r, ret = 0;

	if (t->secret && (t->cert_chain_file || t->private_key_file)) {
		context_error(L, t,
		              "secret and cert_chain_file/private_key_file are both set; "
		              "use one");
		ret = -EINVAL;
	} else if (t->secret) {
		r = find_secret_pair(L, t, t->secret, f);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			ret = r;
	} else if (t->cert_chain_file || t->private_key_file) {
		if (!t->cert_chain_file || !t->private_key_file) {
			context_error(L, t, "%s: needs %s as well",
			              t->cert_chain_file ? "cert_chain_file" : "private_key_file",
			              t->cert_chain_file ? "private_key_file" : "cert_chain_file");
			ret = -EINVAL;
		} else {
			r = check_given_file(L, t, TF_CERT_CHAIN_FILE, t->cert_chain_file,
			                     &f->cert);
			if (r == -ENOMEM)
				return r;
			if (r >= 0)
				r = check_given_file(L, t, TF_PRIVATE_KEY_FILE, t->private_key_file,
				                     &f->key);
			if (r == -ENOMEM)
				return r;
			if (r < 0)
				ret = r;
		}
	}

	if (t->ca_secret && t->cacert_chain_file) {
		context_error(L, t, "ca_secret and cacert_chain_file are both set; use one");
		ret = -EINVAL;
	} else if (t->ca_secret) {
		r = find_secret_ca(L, t, t->ca_secret, &f->ca);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			ret = r;
	} else if (t->cacert_chain_file) {
		r = check_given_file(L, t, TF_CACERT_CHAIN_FILE, t->cacert_chain_file, &f->ca);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			ret = r;
	}

	if (t->crl_secret && !t->ca_secret && !t->cacert_chain_file) {
		field_error(L, t, TF_CRL_SECRET,
		            "crl_secret: needs ca_secret or cacert_chain_file (a CRL is checked "
		            "while verifying client certificates)");
		ret = -EINVAL;
	} else if (t->crl_secret) {
		r = find_secret_crl(L, t, t->crl_secret, &f->crl);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			ret = r;
	}

	if (t->cert_required && !t->ca_secret && !t->cacert_chain_file) {
		context_error(L, t,
		              "cert_required: needs ca_secret or cacert_chain_file to "
		              "verify client certificates against");
		ret = -EINVAL;
	}
	return ret;
}

/* ---- SSL_CTX settings ----------------------------------------------------------------- */

static int tls_version_from_string(const char *s) {
	if (!s)
		return 0;
	if (streq(s, "v1.0"))
		return TLS1_VERSION;
	if (streq(s, "v1.1"))
		return TLS1_1_VERSION;
	if (streq(s, "v1.2"))
		return TLS1_2_VERSION;
	if (streq(s, "v1.3"))
		return TLS1_3_VERSION;
	return -EINVAL;
}

/* A key file with a passphrase must fail the load, not prompt on a terminal (OpenSSL's
 * default); `userdata`, when set, is a bool that learns that one was wanted. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *userdata) {
	(void)buf, (void)size, (void)rwflag;
	if (userdata)
		*(bool *)userdata = true;
	return 0;
}

#define TLS_READ_AHEAD (64 * 1024 + SSL3_RT_MAX_ENCRYPTED_OVERHEAD + SSL3_RT_HEADER_LENGTH)

/* TLS 1.2 without a TLSContext's cipher_suites: forward secrecy and AEAD only, Mozilla's
 * "intermediate" profile less its DHE suites (no DH parameters are configured). OpenSSL's
 * own default also offers CBC suites (LUCKY13) and plain-RSA key exchange, which a scanner
 * rightly flags on an internet-facing port; a TLSContext that lists cipher_suites gets
 * exactly those. TLS 1.3's suites are OpenSSL's, all AEAD. */
#define TLS12_DEFAULT_CIPHERS                                                                      \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static SSL_CTX *ctx_new(const SSL_METHOD *method) {
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (!ctx)
		return NULL;
	/* Idle relays are the common case: give their 2x16 KiB buffers back. Partial and
	 * moving writes let the relay retry from wherever its ring buffer now starts. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Without read-ahead each record costs two reads, its header and then its body; with
	 * it one read takes whatever has arrived, up to four full records. The buffer is
	 * still given back whenever it runs empty. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_AHEAD);
	/* A bare FIN is a half-close to relay, as with cleartext, not a fatal error: without
	 * IGNORE_UNEXPECTED_EOF OpenSSL 3 kills the session and the answer still on its way
	 * back could never be written. The FIN itself is forwarded, so no truncation hides. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS12_DEFAULT_CIPHERS)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Versions, ciphers and curves, which apply alike to both directions. */
static int apply_context_settings(struct tls_loader *L, const struct tls_context *t, SSL_CTX *ctx) {
	int min = tls_version_from_string(t->min_tls_version);
	int max = tls_version_from_string(t->max_tls_version);
	int ret = 0;

	if (min < 0 || max < 0) {
		/* config.c already refuses these; stay safe if it ever stops */
		context_error(L, t,
		              "min_tls_version/max_tls_version: not v1.0, v1.1, v1.2 or v1.3");
		return -EINVAL;
	}
	if (min && max && min > max) {
		field_error(L, t, TF_MAX_TLS_VERSION,
		            "min_tls_version %s is above max_tls_version %s", t->min_tls_version,
		            t->max_tls_version);
		return -EINVAL;
	}
	if (min && min < TLS1_2_VERSION) {
		/* OpenSSL 3 only speaks TLS 1.0/1.1 at security level 0; the user asked for it. */
		SSL_CTX_set_security_level(ctx, 0);
		context_warning(L, t,
		                "min_tls_version %s: versions below v1.2 are insecure, "
		                "allowing them as configured",
		                t->min_tls_version);
	}
	if ((min && !SSL_CTX_set_min_proto_version(ctx, min)) ||
	    (max && !SSL_CTX_set_max_proto_version(ctx, max))) {
		field_error(L, t, TF_MIN_TLS_VERSION, "min_tls_version/max_tls_version: %s",
		            openssl_reason());
		return -EINVAL;
	}

	if (t->cipher_suites && t->cipher_suites[0]) {
		_cleanup_free_ char *list = NULL;

		/* One at a time first, so the diag names the culprit: a list is accepted by
		 * OpenSSL as long as any one name in it is known. */
		for (char **c = t->cipher_suites; *c; c++)
			if (!SSL_CTX_set_cipher_list(ctx, *c)) {
				ERR_clear_error();
				field_error(L, t, TF_CIPHER_SUITES,
				            "cipher_suites: \"%s\" is not a TLS 1.2 cipher OpenSSL "
				            "knows",
				            *c);
				ret = -EINVAL;
			}
		list = strv_join(t->cipher_suites, ":");
		if (!list)
			return -ENOMEM;
		if (ret == 0 && !SSL_CTX_set_cipher_list(ctx, list)) {
			field_error(L, t, TF_CIPHER_SUITES, "cipher_suites: %s", openssl_reason());
			ret = -EINVAL;
		}
	}

	if (t->ecdh_curves && t->ecdh_curves[0]) {
		_cleanup_free_ char *list = strv_join(t->ecdh_curves, ":");

		if (!list)
			return -ENOMEM;
		if (!SSL_CTX_set1_groups_list(ctx, list)) {
			ERR_clear_error();
			field_error(L, t, TF_ECDH_CURVES,
			            "ecdh_curves: OpenSSL does not know all of \"%s\"", list);
			ret = -EINVAL;
		}
	}
	return ret;
}

/* Keys are at most a few KiB of PEM; the cap keeps one from filling the 256 KiB secure
 * heap (tls_config_load) that every other key shares. */
#define KEY_FILE_MAX (64 * 1024)

/* Read a private key with its bytes only ever in OpenSSL's secure heap (locked, never in a
 * core, wiped when freed): the file is read into OPENSSL_secure_malloc'ed memory, parsed
 * from a memory BIO over it, and wiped at once. SSL_CTX_use_PrivateKey_file would read it
 * through a stdio buffer in the ordinary heap, freed unwiped. The PEM decoder keeps its
 * DER in the secure heap and the key's private numbers are secure BIGNUMs (OpenSSL 3).
 * Returns 0, -errno for the file (reported as such), or -EBADMSG with OpenSSL's error
 * queue set. */
static int key_read_secure(SSL_CTX *ctx, const char *path, EVP_PKEY **ret, struct stat *ret_st) {
	struct stat st;
	size_t got = 0;

	/* O_NONBLOCK: a FIFO in the key's place must not wedge a reload in open(). */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	if (st.st_size > KEY_FILE_MAX)
		return -EFBIG;
	*ret_st = st;
	size_t size = (size_t)st.st_size + 1;
	char *buf = OPENSSL_secure_malloc(size);
	if (!buf)
		return -ENOMEM;
	while (got < size - 1) {
		ssize_t n = read(fd, buf + got, size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* shrank while read: parse what is there, as a file read would */
		got += (size_t)n;
	}
	BIO *bio = BIO_new_mem_buf(buf, (int)got);
	EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, SSL_CTX_get_default_passwd_cb(ctx),
	                                              SSL_CTX_get_default_passwd_cb_userdata(ctx))
	                    : NULL;
	BIO_free(bio);
	OPENSSL_secure_clear_free(buf, size);
	if (!key)
		return -EBADMSG;
	*ret = key;
	return 0;
}

/* A key others can read is no longer private, and a directory others can write lets them
 * swap the key (or the certificate) for their own: still served, but said. */
static void warn_loose_key(struct tls_loader *L, const struct tls_context *t, const char *key,
                           const struct stat *st) {
	_cleanup_free_ char *dir = strdup(key);
	struct stat dst;

	if (st->st_mode & (S_IRGRP | S_IROTH))
		context_warning(L, t,
		                "private key %s can be read by group or others (mode %04o); make "
		                "it 0600",
		                key, (unsigned)(st->st_mode & 07777));
	/* the key's directory, and above it the secrets (or credentials) directory */
	for (int up = 0; dir && up < 2; up++) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			break;
		*slash = '\0';
		const char *d = slash == dir ? "/" : dir;
		if (stat(d, &dst) == 0 && (dst.st_mode & (S_IWGRP | S_IWOTH)) &&
		    !(dst.st_mode & S_ISVTX)) {
			context_warning(L, t,
			                "private key %s: directory %s can be written by group or "
			                "others, who could replace the key",
			                key, d);
			break;
		}
	}
}

static int load_cert_and_key(struct tls_loader *L, const struct tls_context *t, SSL_CTX *ctx,
                             const struct tls_files *f) {
	enum tls_field cert_field = t->secret ? TF_SECRET : TF_CERT_CHAIN_FILE,
	               key_field = t->secret ? TF_SECRET : TF_PRIVATE_KEY_FILE;
	bool wants_passphrase = false;
	unsigned long e;
	int r;

	if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
		field_error(L, t, cert_field, "cannot load certificate %s: %s", f->cert,
		            openssl_reason());
		return -EINVAL;
	}
	/* ctx_new set refuse_passphrase; it reports here whether a passphrase was wanted */
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &wants_passphrase);
	EVP_PKEY *key = NULL;
	struct stat kst;
	int k = key_read_secure(ctx, f->key, &key, &kst);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	if (k < 0 && k != -EBADMSG) {
		field_error(L, t, key_field, "cannot load private key %s: %s", f->key,
		            strerror(-k));
		return -EINVAL;
	}
	r = key ? SSL_CTX_use_PrivateKey(ctx, key) : 0;
	EVP_PKEY_free(key); /* the context holds its own reference */
	if (r != 1) {
		/* OpenSSL refuses a key of the certificate's type that is not its pair here */
		e = ERR_peek_last_error();
		if (wants_passphrase) {
			ERR_clear_error();
			field_error(
			        L, t, key_field,
			        "private key %s is protected by a passphrase, which tcpmap cannot "
			        "ask for; store it without one (readable by root only)",
			        f->key);
		} else if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		           ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			field_error(L, t, key_field, "private key %s does not match certificate %s",
			            f->key, f->cert);
		} else
			field_error(L, t, key_field, "cannot load private key %s: %s", f->key,
			            openssl_reason());
		return -EINVAL;
	}
	/* ... and a key of another type only here */
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		field_error(L, t, key_field, "private key %s does not match certificate %s", f->key,
		            f->cert);
		return -EINVAL;
	}
	warn_loose_key(L, t, f->key, &kst);
	return 0;
}

static int load_ca(struct tls_loader *L, const struct tls_context *t, SSL_CTX *ctx,
                   const char *ca) {
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		field_error(L, t, t->ca_secret ? TF_CA_SECRET : TF_CACERT_CHAIN_FILE,
		            "cannot load CA certificates %s: %s", ca, openssl_reason());
		return -EINVAL;
	}
	return 0;
}

/* The CRLs of crl_secret, checked for every certificate of a client's chain, as Envoy
 * checks them by default: a revoked certificate, or an issuer without a CRL here, fails
 * the handshake. */
static int load_crl(struct tls_loader *L, const struct tls_context *t, SSL_CTX *ctx,
                    const char *crl) {
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lookup = store ? X509_STORE_add_lookup(store, X509_LOOKUP_file()) : NULL;

	if (!lookup || X509_load_crl_file(lookup, crl, X509_FILETYPE_PEM) <= 0) {
		field_error(L, t, TF_CRL_SECRET, "cannot load the CRL %s: %s", crl,
		            openssl_reason());
		return -EINVAL;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/* Ambassador gives alpn_protocols as a list; TLS wants length-prefixed bytes. */
static int build_alpn(struct tls_loader *L, struct tls_context_state *s) {
	const struct tls_context *t = s->context;
	size_t len = 0;
	unsigned char *p;

	if (!t->alpn_protocols || !t->alpn_protocols[0])
		return 0;
	for (char **a = t->alpn_protocols; *a; a++) {
		size_t n = strlen(*a);
		if (n == 0 || n > 255) {
			field_error(L, t, TF_ALPN_PROTOCOLS,
			            "alpn_protocols: \"%s\" must be 1-255 bytes long", *a);
			return -EINVAL;
		}
		len += 1 + n;
	}
	if (len > 65535) {
		field_error(L, t, TF_ALPN_PROTOCOLS,
		            "alpn_protocols: the list is over 65535 bytes");
		return -EINVAL;
	}
	s->alpn = p = malloc(len);
	if (!p)
		return -ENOMEM;
	for (char **a = t->alpn_protocols; *a; a++) {
		size_t n = strlen(*a);
		*p++ = (unsigned char)n;
		memcpy(p, *a, n);
		p += n;
	}
	s->alpn_len = len;
	return 0;
}

/* The server's preference wins, as Envoy's does: the first of ours the client offers. With
 * no overlap the handshake goes on without ALPN rather than failing. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
	const struct tls_context_state *s = arg;
	const unsigned char *upstream;
	unsigned char upstream_len;

	/* Terminating and originating: the client is told only what the upstream accepted
	 * (it was offered the client's own list), so both ends speak the same protocol. */
	switch (tls_gate_alpn(ssl, &upstream, &upstream_len)) {
	case 0:
		return SSL_TLSEXT_ERR_NOACK;
	case 1:
		for (unsigned j = 0; j < inlen && j + 1u + in[j] <= inlen; j += 1u + in[j])
			if (in[j] == upstream_len &&
			    memcmp(in + j + 1, upstream, upstream_len) == 0) {
				*out = in + j + 1;
				*outlen = in[j];
				return SSL_TLSEXT_ERR_OK;
			}
		return SSL_TLSEXT_ERR_NOACK;
	default:
		break;
	}
	for (size_t i = 0; i < s->alpn_len; i += 1 + s->alpn[i]) {
		const unsigned char *ours = s->alpn + i;
		for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
			if (j + 1u + in[j] > inlen)
				break;
			if (in[j] == ours[0] && memcmp(in + j + 1, ours + 1, ours[0]) == 0) {
				*out = in + j + 1;
				*outlen = in[j];
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Routing already chose this context from the peeked SNI; refusing here as well keeps a
 * terminating port from ever serving a certificate for a name it was not asked for. */
static int check_servername(SSL *ssl, int *alert, void *arg) {
	const struct tls_context_state *s = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (name && model_tlscontext_covers(s->context, name))
		return SSL_TLSEXT_ERR_OK;
	*alert = SSL_AD_UNRECOGNIZED_NAME;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int build_server_ctx(struct tls_loader *L, struct tls_context_state *s,
                            const struct tls_files *f) {
	const struct tls_context *t = s->context;
	SSL_CTX *ctx;
	int r;

	ctx = ctx_new(TLS_server_method());
	if (!ctx)
		return -ENOMEM;
	s->server = ctx;

	/* Tickets stay on (OpenSSL's default) so returning clients resume cheaply; under the
	 * host's shared keys when tcpmapd has them, so they resume in any of its processes. */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (L->config->ticket_keys && tls_ticket_keys_use(ctx, L->config->ticket_keys) < 0)
		return -ENOMEM;
	/* Resumption with client verification needs an id context; the name is stable. */
	/* fails only for an id over SSL_MAX_SID_CTX_LENGTH, which MIN rules out */
	(void)SSL_CTX_set_session_id_context(ctx, (const unsigned char *)t->name,
	                                     MIN(strlen(t->name), (size_t)SSL_MAX_SID_CTX_LENGTH));
	SSL_CTX_set_tlsext_servername_callback(ctx, check_servername);
	SSL_CTX_set_tlsext_servername_arg(ctx, s);
	/* always: an originating connection's ALPN is the upstream's, whatever this lists */
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, s);
	SSL_CTX_set_client_hello_cb(ctx, tls_gate_client_hello, NULL);

	r = apply_context_settings(L, t, ctx);
	if (r < 0)
		return r;
	r = load_cert_and_key(L, t, ctx, f);
	if (r < 0)
		return r;
	if (f->ca) {
		STACK_OF(X509_NAME) * names;

		r = load_ca(L, t, ctx, f->ca);
		if (r >= 0 && f->crl)
			r = load_crl(L, t, ctx, f->crl);
		if (r < 0)
			return r;
		/* Tell clients which CA we accept, so they pick the right certificate. */
		names = SSL_load_client_CA_file(f->ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
		SSL_CTX_set_verify(ctx,
		                   t->cert_required
		                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
		                           : SSL_VERIFY_PEER,
		                   NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return 0;
}

/* `tls: NAME`: offer the context's certificate (if it has one); verify the upstream only
 * when the context names a CA, as the doc says. */
static int build_context_client_ctx(struct tls_loader *L, struct tls_context_state *s) {
	const struct tls_context *t = s->context;
	const struct tls_files *f = &s->files;
	SSL_CTX *ctx;
	int r;

	ctx = ctx_new(TLS_client_method());
	if (!ctx)
		return -ENOMEM;
	s->client = ctx;

	r = apply_context_settings(L, t, ctx);
	if (r < 0)
		return r;
	if (s->alpn && SSL_CTX_set_alpn_protos(ctx, s->alpn, (unsigned)s->alpn_len) != 0)
		return -ENOMEM;
	if (f->cert) {
		r = load_cert_and_key(L, t, ctx, f);
		if (r < 0)
			return r;
	}
	if (f->ca) {
		r = load_ca(L, t, ctx, f->ca);
		if (r < 0)
			return r;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return 0;
}

/* ---- termination: which context serves a group ---------------------------------------- */

static bool group_is_passthrough(const struct mapping_group *g) {
	for (size_t i = 0; i < g->n_mappings; i++)
		if (g->mappings[i]->tls_passthrough)
			return true;
	return false;
}

static int assign_termination(struct tls_loader *L) {
	struct config *c = L->config;

	for (size_t i = 0; i < c->n_groups; i++) {
		struct mapping_group *g = c->groups[i];
		struct tls_context *t;
		struct tls_context_state *s;

		g->termination_context = NULL;
		if (!g->host || g->n_mappings == 0 || group_is_passthrough(g) ||
		    !listener_served_here(g->listener))
			continue;
		t = model_tlscontext_for_host(c, g->host);
		if (!t) {
			mapping_error(
			        L, g->mappings[0],
			        "host: no TLSContext covers \"%s\", nor any Host (terminating TLS "
			        "needs its certificate)",
			        g->host);
			continue;
		}
		g->termination_context = t;
		s = t->runtime;
		if (!s->files.cert && !s->broken && !s->reported_no_cert) {
			/* one diag per context, however many groups it covers */
			s->reported_no_cert = true;
			context_error(
			        L, t,
			        "terminates TLS for \"%s\" but has no certificate (set secret, "
			        "or cert_chain_file and private_key_file)",
			        g->host);
		}
	}
	return 0;
}

/* ---- origination ---------------------------------------------------------------------- */

static int assign_origination(struct tls_loader *L) {
	struct config *c = L->config;
	struct tls_runtime *rt = L->runtime;
	int r;

	for (size_t i = 0; i < c->n_mappings; i++) {
		struct mapping *m = c->mappings[i];
		struct tls_context_state *s;

		if (m->index >= rt->n_mappings || !listener_served_here(m->group->listener))
			continue;
		if (m->tls == TLS_ORIGINATE_PLAIN) {
			/* `tls: true`: no certificate offered, and nothing to verify with. */
			if (!rt->plain_client) {
				rt->plain_client = ctx_new(TLS_client_method());
				if (!rt->plain_client)
					return -ENOMEM;
				SSL_CTX_set_verify(rt->plain_client, SSL_VERIFY_NONE, NULL);
			}
			rt->client_by_mapping[m->index] = rt->plain_client;
		} else if (m->tls == TLS_ORIGINATE_CONTEXT) {
			if (!m->tls_context || !m->tls_context->runtime) {
				mapping_error(L, m, "tls: no TLSContext named \"%s\"",
				              m->tls_context_name ? m->tls_context_name : "");
				continue;
			}
			s = m->tls_context->runtime;
			if (s->broken)
				continue; /* already reported */
			if (!s->client) {
				r = build_context_client_ctx(L, s);
				if (r == -ENOMEM)
					return r;
				if (r < 0) {
					s->broken = true;
					continue;
				}
			}
			rt->client_by_mapping[m->index] = s->client;
		}
	}
	return 0;
}

/* ---- load and free -------------------------------------------------------------------- */

static void tls_runtime_release(struct config *c) {
	struct tls_runtime *rt = c->tls_runtime;

	if (!rt)
		return;
	for (size_t i = 0; i < rt->n_contexts; i++) {
		struct tls_context_state *s = &rt->contexts[i];
		SSL_CTX_free(s->server);
		SSL_CTX_free(s->client);
		free(s->alpn);
		tls_files_done(&s->files);
	}
	for (size_t i = 0; i < c->n_tls_contexts; i++)
		c->tls_contexts[i]->runtime = NULL;
	SSL_CTX_free(rt->plain_client);
	free(rt->contexts);
	free(rt->client_by_mapping);
	free(rt);
	c->tls_runtime = NULL;
	c->tls_runtime_free = NULL;
}

/* With listeners served elsewhere (tcpmapd under socket units, one instance per port),
 * mark the contexts only those listeners use: their secrets may be given to the other
 * instance alone (a per-instance LoadCredential=), and a port must never go down for want
 * of another port's secret (issue 23, defect 2). */
static void mark_contexts_served_elsewhere(struct config *c, struct tls_runtime *rt) {
	bool filtered = false;
	for (size_t i = 0; i < c->n_listeners; i++)
		filtered = filtered || c->listeners[i]->served_elsewhere;
	if (!filtered)
		return;
	for (size_t i = 0; i < rt->n_contexts; i++)
		rt->contexts[i].served_elsewhere = true;
	for (size_t i = 0; i < c->n_groups; i++) {
		struct mapping_group *g = c->groups[i];
		if (!listener_served_here(g->listener))
			continue;
		if (g->host && !group_is_passthrough(g)) {
			struct tls_context *t = model_tlscontext_for_host(c, g->host);
			if (t && t->runtime)
				((struct tls_context_state *)t->runtime)->served_elsewhere = false;
		}
		for (size_t j = 0; j < g->n_mappings; j++) {
			struct tls_context *t = g->mappings[j]->tls_context;
			if (g->mappings[j]->tls == TLS_ORIGINATE_CONTEXT && t && t->runtime)
				((struct tls_context_state *)t->runtime)->served_elsewhere = false;
		}
	}
}

static int load_context(struct tls_loader *L, struct tls_context_state *s) {
	int r;

	if (s->served_elsewhere)
		return 0;

	r = build_alpn(L, s);
	if (r >= 0)
		r = find_context_files(L, s->context, &s->files);
	/* Every context with a certificate gets its server SSL_CTX, used or not, so that
	 * `tcpmapctl check` reports a broken secret before anything needs it. */
	if (r >= 0 && s->files.cert)
		r = build_server_ctx(L, s, &s->files);
	if (r < 0) {
		SSL_CTX_free(s->server);
		s->server = NULL;
		s->broken = true;
	}
	return r;
}

int tls_config_load(struct config *c, const char *secrets_dir, struct diag_list *diags) {
	struct tls_loader L = {
	        .config = c,
	        .secrets_dir = secrets_dir ? secrets_dir : DEFAULT_SECRETS_DIR,
	        .diags = diags,
	};
	struct tls_runtime *rt;
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	int r;

	if (!c)
		return -EINVAL;
	if (c->tls_runtime_free)
		c->tls_runtime_free(c);
	/* No TLS anywhere: leave OpenSSL uninitialised. Its first use loads error strings and
	 * providers, a sixth of a per-connection process's start-up. */
	if (!tls_config_needed(c))
		return 0;
	/* Keys live in this process's memory once loaded: OpenSSL keeps their numbers in its
	 * locked secure heap (best effort: it needs mlock), and what it frees of the rest is
	 * wiped first (wipe_free). */
	keywipe_on_free();
	if (!CRYPTO_secure_malloc_initialized())
		(void)CRYPTO_secure_malloc_init(256 * 1024, 64);
	if (creds && *creds)
		L.credentials_dir = creds;
	ERR_clear_error();

	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	c->tls_runtime = rt;
	c->tls_runtime_free = tls_runtime_release;
	L.runtime = rt;
	rt->n_contexts = c->n_tls_contexts;
	rt->n_mappings = c->n_mappings;
	rt->contexts = calloc(MAX(rt->n_contexts, 1u), sizeof(*rt->contexts));
	rt->client_by_mapping = calloc(MAX(rt->n_mappings, 1u), sizeof(SSL_CTX *));
	if (!rt->contexts || !rt->client_by_mapping) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < c->n_tls_contexts; i++) {
		rt->contexts[i].context = c->tls_contexts[i];
		c->tls_contexts[i]->runtime = &rt->contexts[i];
	}

	mark_contexts_served_elsewhere(c, rt);
	for (size_t i = 0; i < rt->n_contexts; i++) {
		r = load_context(&L, &rt->contexts[i]);
		if (r == -ENOMEM)
			goto fail;
	}
	r = assign_termination(&L);
	if (r < 0)
		goto fail;
	r = assign_origination(&L);
	if (r < 0)
		goto fail;

	ERR_clear_error();
	keywipe_stack(); /* what decoding and checking the keys left there */
	for (size_t i = 0; i < rt->n_contexts; i++)
		tls_files_done(&rt->contexts[i].files);
	if (L.out_of_memory) {
		r = -ENOMEM;
		goto fail;
	}
	if (L.n_errors > 0) {
		r = -EINVAL;
		goto fail;
	}
	return 0;

fail:
	for (size_t i = 0; i < c->n_groups; i++)
		c->groups[i]->termination_context = NULL;
	tls_runtime_release(c);
	ERR_clear_error();
	return r;
}

/* ---- per-connection lookups ----------------------------------------------------------- */

SSL_CTX *tls_server_ctx(const struct config *c, const struct mapping_group *g) {
	const struct tls_context_state *s;

	if (!c || !c->tls_runtime || !g || !g->termination_context)
		return NULL;
	s = g->termination_context->runtime;
	return s ? s->server : NULL;
}

SSL_CTX *tls_client_ctx(const struct config *c, const struct mapping *m) {
	const struct tls_runtime *rt;

	if (!c || !m)
		return NULL;
	rt = c->tls_runtime;
	if (!rt || m->index >= rt->n_mappings)
		return NULL;
	return rt->client_by_mapping[m->index];
}

/* What tcpmapd checks before it uses tcpmap-tls.so (this file, tlssession.c, tlsrelay.c). */
const struct tls_abi tcpmap_tls_abi = TLS_ABI_INIT;
