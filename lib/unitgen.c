/* unitgen.c — see unitgen.h. Writes only below the directory it is given, and follows no
 * symlink it did not make: a generator runs as root early in boot. */
#include "unitgen.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include "util.h"

int unitgen_escape(const char *s, char *buf, size_t size) {
	size_t o = 0;

	for (size_t i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		             (c >= '0' && c <= '9') || c == ':' || c == '_' || (c == '.' && i > 0);
		if (c == '/') {
			if (o + 1 >= size)
				return -ENAMETOOLONG;
			buf[o++] = '-';
		} else if (plain) {
			if (o + 1 >= size)
				return -ENAMETOOLONG;
			buf[o++] = (char)c;
		} else {
			if (o + 4 >= size)
				return -ENAMETOOLONG;
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		}
	}
	if (size == 0)
		return -ENAMETOOLONG;
	buf[o] = '\0';
	return 0;
}

int unitgen_instance(const struct listener *l, char *buf, size_t size) {
	int n;

	if (!l->address)
		n = snprintf(buf, size, "%u", l->port);
	else if (strchr(l->address, ':'))
		n = snprintf(buf, size, "[%s]:%u", l->address, l->port);
	else
		n = snprintf(buf, size, "%s:%u", l->address, l->port);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* An explicit "::" means every IPv6 address and only those: without ipv6-only the socket
 * would take IPv4 too and collide with a 0.0.0.0 listener of the same port. */
static const char *dropin_for(const struct listener *l) {
	if (l->address && l->sockaddr.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&l->sockaddr)->sin6_addr))
		return "[Socket]\nBindIPv6Only=ipv6-only\n";
	return NULL;
}

void unitgen_plan_free(struct unitgen_plan *p) {
	p->units = mfree(p->units);
	p->n_units = 0;
}

int unitgen_plan(const struct config *c, struct unitgen_plan *ret) {
	struct unitgen_plan p = {0};

	if (c->n_listeners > 0) {
		p.units = calloc(c->n_listeners, sizeof *p.units);
		if (!p.units)
			return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener *l = c->listeners[i];
		struct unitgen_unit *u = &p.units[p.n_units];
		char escaped[UNITGEN_NAME_MAX];
		int r = unitgen_instance(l, u->instance, sizeof u->instance);
		if (r >= 0)
			r = unitgen_escape(u->instance, escaped, sizeof escaped);
		if (r < 0) {
			unitgen_plan_free(&p);
			return r;
		}
		/* the listener's process model picks the template, and nothing else differs */
		u->per_connection = l->per_connection_unit;
		const char *prefix =
		        u->per_connection ? UNITGEN_PER_CONNECTION_PREFIX : UNITGEN_THREADED_PREFIX;
		snprintf(u->template, sizeof u->template, "%s.socket", prefix);
		int n = snprintf(u->name, sizeof u->name, "%s%s.socket", prefix, escaped);
		if (n < 0 || (size_t)n >= sizeof u->name) {
			unitgen_plan_free(&p);
			return -ENAMETOOLONG;
		}
		u->dropin = dropin_for(l);
		p.n_units++;
	}
	*ret = p;
	return 0;
}

static int mkdirat_exist_ok(int dirfd, const char *name) {
	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_file_at(int dirfd, const char *name, const char *text) {
	_cleanup_close_ int fd =
	        openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int unitgen_write(const struct unitgen_plan *p, const char *dir, const char *unitdir) {
	_cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int wantsfd = -EBADF;
	int r;

	if (dirfd < 0)
		return -errno;
	if (p->n_units == 0)
		return 0;
	r = mkdirat_exist_ok(dirfd, UNITGEN_TARGET ".wants");
	if (r < 0)
		return r;
	wantsfd = openat(dirfd, UNITGEN_TARGET ".wants",
	                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (wantsfd < 0)
		return -errno;
	for (size_t i = 0; i < p->n_units; i++) {
		const struct unitgen_unit *u = &p->units[i];
		char target[PATH_MAX];
		int n = snprintf(target, sizeof target, "%s/%s", unitdir, u->template);
		if (n < 0 || (size_t)n >= sizeof target)
			return -ENAMETOOLONG;
		if (symlinkat(target, wantsfd, u->name) < 0 && errno != EEXIST)
			return -errno;
		if (!u->dropin)
			continue;
		char d[UNITGEN_NAME_MAX + 2];
		snprintf(d, sizeof d, "%s.d", u->name);
		r = mkdirat_exist_ok(dirfd, d);
		if (r < 0)
			return r;
		_cleanup_close_ int dfd =
		        openat(dirfd, d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			return -errno;
		r = write_file_at(dfd, UNITGEN_DROPIN_NAME, u->dropin);
		if (r < 0)
			return r;
	}
	return 0;
}

void unitgen_print(const struct unitgen_plan *p, const char *unitdir, FILE *out) {
	for (size_t i = 0; i < p->n_units; i++) {
		const struct unitgen_unit *u = &p->units[i];
		fprintf(out, "%s.wants/%s -> %s/%s\t# listens on %s%s\n", UNITGEN_TARGET, u->name,
		        unitdir, u->template, u->instance,
		        u->per_connection ? ", a unit per connection (per_connection_unit)" : "");
		if (u->dropin) {
			fprintf(out, "%s.d/%s:\n", u->name, UNITGEN_DROPIN_NAME);
			for (const char *s = u->dropin; *s;) {
				const char *e = strchr(s, '\n');
				size_t n = e ? (size_t)(e - s) : strlen(s);
				fprintf(out, "    %.*s\n", (int)n, s);
				s += n + (e ? 1 : 0);
			}
		}
	}
}
