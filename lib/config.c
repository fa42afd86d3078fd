/* config.c — loading a config: options, files and directories, and the order of the stages.
 *
 * Each file is parsed into a YAML node tree (lib/yamltree.c); each document is checked by its
 * kind's schema as soon as it ends (lib/kinds.c, lib/kind-*.c); then the whole set is
 * grouped, weighted and laid out into listeners (lib/configbuild.c). Every problem becomes
 * one diag with FILE:LINE:COL, and loading goes on so that one run reports all of them;
 * running out of memory anywhere fails the whole load.
 *
 * This file and those it calls must never touch sockets, secrets, the breaker table or the
 * log: they are run by `tcpmapctl check` and by the fuzzer as well as by tcpmapd. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "configbuild.h"
#include "kinds.h"
#include "util.h"
#include "yamltree.h"

#define DEFAULT_MAX_FILE_SIZE (16u * 1024u * 1024u)
#define DEFAULT_MAX_ALIAS_EXPANSION 10000u
#define DEFAULT_MAX_DEPTH 64u

/* Same defaults as Emissary where it has one; tcpmap's own otherwise (docs/ARCHITECTURE.md). */
#define DEFAULT_CONNECT_TIMEOUT_MS 3000u
#define DEFAULT_PREREAD_TIMEOUT_MS 5000u
#define DEFAULT_DRAIN_TIMEOUT_MS 30000u

static atomic_uint_fast64_t config_generation_counter;

struct loader {
	size_t max_file_size;
	struct yamltree_limits limits;
	struct kinds_state kinds; /* the config being built and what the documents added */
	size_t errors_before;     /* the caller's list may already hold diags */
	size_t lost_before;
	int io_error;         /* the first file that could not be read, or -ENOMEM */
	struct file_id *read; /* every file read so far, so that none is read twice */
	size_t n_read;
};

struct file_id {
	dev_t dev;
	ino_t ino;
	const char *name;
};

static void loader_fail(struct loader *L, int error) { L->io_error = L->io_error ?: error; }

static int on_document(void *userdata, const char *file, const struct ynode *root) {
	struct loader *L = userdata;
	return kinds_read_document(&L->kinds, file, root);
}

static void load_text(struct loader *L, const char *file, const char *data, size_t size) {
	int r;

	if (size > L->max_file_size) {
		diag_add(L->kinds.diags, DIAG_ERROR, file, 0, 0, "file is larger than %zu bytes",
		         L->max_file_size);
		return;
	}
	r = yamltree_parse(file, data, size, &L->limits, L->kinds.diags, on_document, L);
	/* Other errors are in the diags; the next file is read all the same. */
	if (r == -ENOMEM)
		loader_fail(L, r);
}

/* ---- reading files ------------------------------------------------------------------ */

static int config_add_file(struct config *c, const char *name, const char **ret) {
	char *copy = strdup(name);

	if (!copy || model_push(&c->files, &c->n_files, copy) < 0) {
		free(copy);
		return -ENOMEM;
	}
	*ret = copy;
	return 0;
}

static const char *file_type(mode_t mode) {
	return S_ISDIR(mode)    ? "a directory"
	       : S_ISFIFO(mode) ? "a FIFO"
	       : S_ISSOCK(mode) ? "a socket"
	       : S_ISCHR(mode)  ? "a character device"
	       : S_ISBLK(mode)  ? "a block device"
	                        : "not a regular file";
}

/* The same file named twice (a path and its directory, a symlink and its target) would
 * report each of its names as a duplicate of itself. Returns the name it was first read
 * under, or NULL after noting it as read. */
static const char *file_seen(struct loader *L, const struct stat *st, const char *name) {
	struct file_id *read;

	for (size_t i = 0; i < L->n_read; i++)
		if (L->read[i].dev == st->st_dev && L->read[i].ino == st->st_ino)
			return L->read[i].name;
	read = realloc(L->read, (L->n_read + 1) * sizeof(*read));
	if (!read) {
		loader_fail(L, -ENOMEM);
		return NULL;
	}
	L->read = read;
	L->read[L->n_read++] = (struct file_id){.dev = st->st_dev, .ino = st->st_ino, .name = name};
	return NULL;
}

static void load_file(struct loader *L, const char *path) {
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *data = NULL;
	const char *file;
	struct stat st;
	size_t got = 0;

	if (config_add_file(L->kinds.config, path, &file) < 0) {
		loader_fail(L, -ENOMEM);
		return;
	}
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer, forever, in
	 * `tcpmapctl check` or in tcpmapd's reload. Only a regular file is read. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		diag_add(L->kinds.diags, DIAG_ERROR, file, 0, 0, "cannot read: %s", strerror(err));
		loader_fail(L, -err);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		diag_add(L->kinds.diags, DIAG_ERROR, file, 0, 0,
		         "not a regular file (%s); a config must be a file or a directory",
		         file_type(st.st_mode));
		loader_fail(L, -EINVAL);
		return;
	}
	const char *first = file_seen(L, &st, file);
	if (first) {
		diag_add(L->kinds.diags, DIAG_WARNING, file, 0, 0,
		         "the same file as %s, already read; skipping", first);
		return;
	}
	if ((uint64_t)st.st_size > L->max_file_size) {
		diag_add(L->kinds.diags, DIAG_ERROR, file, 0, 0, "file is larger than %zu bytes",
		         L->max_file_size);
		return;
	}
	data = malloc((size_t)st.st_size + 1);
	if (!data) {
		loader_fail(L, -ENOMEM);
		return;
	}
	/* Read what is there now; a file that grows meanwhile is read again on reload. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			diag_add(L->kinds.diags, DIAG_ERROR, file, 0, 0, "cannot read: %s",
			         strerror(err));
			loader_fail(L, -err);
			return;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	load_text(L, file, data, got);
}

static int compare_strings(const void *a, const void *b) {
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_yaml_suffix(const char *name) {
	size_t len = strlen(name);
	return (len > 5 && streq(name + len - 5, ".yaml")) ||
	       (len > 4 && streq(name + len - 4, ".yml"));
}

static void load_directory(struct loader *L, const char *path, DIR *dir) {
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;

	while ((de = readdir(dir))) {
		_cleanup_free_ char *full = NULL;
		struct stat st;

		/* Dot-files include Kubernetes ConfigMap mounts' "..data" and editors' backups. */
		if (de->d_name[0] == '.' || !has_yaml_suffix(de->d_name))
			continue;
		if (asprintf(&full, "%s/%s", path, de->d_name) < 0) {
			full = NULL;
			loader_fail(L, -ENOMEM);
			break;
		}
		if (stat(full, &st) < 0) {
			/* most likely a symlink to a file that is gone: say so, not a word
			 * otherwise */
			diag_add(L->kinds.diags, DIAG_WARNING, full, 0, 0,
			         "cannot read (%s), skipping",
			         errno == ENOENT ? "a dangling symlink" : strerror(errno));
			continue;
		}
		/* A subdirectory is not read (not recursive); anything else that is not a regular
		 * file is refused by load_file, by name. */
		if (S_ISDIR(st.st_mode))
			continue;
		if (strv_push(&names, &n, TAKE_PTR(full)) < 0) {
			loader_fail(L, -ENOMEM);
			break;
		}
	}
	if (n > 0)
		qsort(names, n, sizeof(char *), compare_strings);
	for (size_t i = 0; i < n; i++)
		load_file(L, names[i]);
	strv_free(names);
}

static void load_path(struct loader *L, const char *path) {
	DIR *dir = opendir(path);

	if (dir) {
		load_directory(L, path, dir);
		closedir(dir);
		return;
	}
	load_file(L, path);
}

/* ---- entry points --------------------------------------------------------------------- */

static void loader_init(struct loader *L, const struct config_options *opts,
                        struct diag_list *diags) {
	*L = (struct loader){
	        .max_file_size =
	                opts && opts->max_file_size ? opts->max_file_size : DEFAULT_MAX_FILE_SIZE,
	        .limits =
	                {
	                        .max_alias_expansion = opts && opts->max_alias_expansion
	                                                       ? opts->max_alias_expansion
	                                                       : DEFAULT_MAX_ALIAS_EXPANSION,
	                        .max_depth = opts && opts->max_depth ? opts->max_depth
	                                                             : DEFAULT_MAX_DEPTH,
	                },
	        .kinds =
	                {
	                        .ambassador_id = opts && opts->ambassador_id ? opts->ambassador_id
	                                                                     : "default",
	                        .diags = diags,
	                },
	        .errors_before = diags->n_errors,
	        .lost_before = diags->n_lost,
	};
}

static int loader_start(struct loader *L) {
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->refcount = 1;
	c->module = (struct module_config){
	        .enable_ipv4 = true,
	        .enable_ipv6 = false,
	        .preread_timeout_ms = DEFAULT_PREREAD_TIMEOUT_MS,
	        .connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS,
	        .drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS,
	        .ambassador_id = strdup(L->kinds.ambassador_id),
	};
	L->kinds.config = c;
	if (!c->module.ambassador_id)
		return -ENOMEM;
	return 0;
}

static int loader_finish(struct loader *L, struct config **ret) {
	struct diag_list *diags = L->kinds.diags;
	struct config *c = L->kinds.config;
	int r;

	/* Short of memory, some document may be missing: nothing built on it would be true. */
	if (L->io_error == -ENOMEM)
		return L->io_error;
	r = config_build(&L->kinds);
	if (r < 0)
		return r;

	if (c->n_mappings == 0 && diags->n_errors == L->errors_before)
		diag_add(diags, DIAG_WARNING, c->n_files > 0 ? c->files[0] : "config", 0, 0,
		         "no TCPMapping found; nothing to listen on");

	if (L->io_error)
		return L->io_error;
	/* A diag that could not be recorded may have been an error. */
	if (diags->n_lost > L->lost_before)
		return -ENOMEM;
	/* A mapping flagged bad always produced an error diag, so counting diags suffices. */
	if (diags->n_errors > L->errors_before)
		return -EINVAL;
	c->generation = atomic_fetch_add(&config_generation_counter, 1) + 1;
	*ret = TAKE_PTR(L->kinds.config);
	return 0;
}

static void loader_done(struct loader *L) {
	if (L->kinds.config)
		config_unref(L->kinds.config);
	L->kinds.config = NULL;
	kinds_state_done(&L->kinds);
	free(L->read);
	L->read = NULL;
}

int config_load(const char *const *paths, size_t n_paths, const struct config_options *opts,
                struct config **ret, struct diag_list *diags) {
	struct diag_list local = {};
	struct loader L;
	int r;

	if (!ret || (!paths && n_paths > 0))
		return -EINVAL;
	/* Errors must be counted even when the caller does not want to see them. */
	loader_init(&L, opts, diags ?: &local);
	r = loader_start(&L);
	if (r >= 0) {
		for (size_t i = 0; i < n_paths; i++)
			load_path(&L, paths[i]);
		r = loader_finish(&L, ret);
	}
	loader_done(&L);
	diag_list_free(&local);
	return r;
}

int config_load_buffer(const char *name, const char *data, size_t size,
                       const struct config_options *opts, struct config **ret,
                       struct diag_list *diags) {
	struct diag_list local = {};
	struct loader L;
	const char *file;
	int r;

	if (!ret || (!data && size > 0))
		return -EINVAL;
	loader_init(&L, opts, diags ?: &local);
	r = loader_start(&L);
	if (r >= 0)
		r = config_add_file(L.kinds.config, name ?: "<buffer>", &file);
	if (r >= 0) {
		load_text(&L, file, data ?: "", size);
		r = loader_finish(&L, ret);
	}
	loader_done(&L);
	diag_list_free(&local);
	return r;
}
