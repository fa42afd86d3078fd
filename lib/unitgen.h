/* unitgen.h — which systemd socket units a config's listeners need, and writing them where
 * systemd's generator protocol says (systemd.generator(7)).
 *
 * The plan is pure: a listener becomes one instance of its process model's socket template,
 * tcpmap@.socket (Accept=no, one threaded tcpmapd) or, with `per_connection_unit: true`,
 * tcpmap-inetd@.socket (Accept=yes, a tcpmapd unit per connection), named after its
 * `[address:]port` escaped as systemd-escape escapes it, linked into tcpmap.target.wants/,
 * with a drop-in only where the template's defaults do not fit the address. The same plan is
 * written by tcpmap-generator(8) and printed by `tcpmapctl units`, so what an operator reviews
 * is what the generator writes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "model.h"

/* systemd's unit names are at most 255 bytes (UNIT_NAME_MAX) */
#define UNITGEN_NAME_MAX 256
#define UNITGEN_DROPIN_NAME "50-tcpmap-generator.conf"
#define UNITGEN_TARGET "tcpmap.target"
/* The two socket templates, one per process model; their instances are all the generator
 * ever links (and all `tcpmapctl apply` ever closes). */
#define UNITGEN_THREADED_PREFIX "tcpmap@"
#define UNITGEN_PER_CONNECTION_PREFIX "tcpmap-inetd@"

struct unitgen_unit {
	char name[UNITGEN_NAME_MAX];     /* "tcpmap@127.0.0.1:2222.socket" */
	char template[UNITGEN_NAME_MAX]; /* "tcpmap@.socket": what the wants/ link points at */
	char instance[UNITGEN_NAME_MAX]; /* unescaped: "[::1]:2222" */
	const char *dropin;              /* [Socket] settings for this address, or NULL */
	bool per_connection;             /* tcpmap-inetd@ (Accept=yes), not tcpmap@ */
};

struct unitgen_plan {
	struct unitgen_unit *units;
	size_t n_units;
};

/* Escape `s` as `systemd-escape` does for one unit name component: '/' becomes '-', every
 * byte outside [A-Za-z0-9:_.] (and a leading '.') becomes "\xNN". Returns 0, or -ENAMETOOLONG
 * when the result does not fit `size`. Pure. */
int unitgen_escape(const char *s, char *buf, size_t size);

/* The instance text of a listener: "2222", "127.0.0.1:2222" or "[::1]:2222". Pure. */
int unitgen_instance(const struct listener *l, char *buf, size_t size);

/* The units for every listener of `c`, in the config's listener order. Returns 0 or -errno
 * (-ENOMEM, -ENAMETOOLONG). Free with unitgen_plan_free. */
int unitgen_plan(const struct config *c, struct unitgen_plan *ret);
void unitgen_plan_free(struct unitgen_plan *p);

/* Write the plan into the generator directory `dir`: UNITGEN_TARGET.wants/NAME symlinks to
 * `unitdir`/TEMPLATE, and NAME.d/UNITGEN_DROPIN_NAME where a unit has a drop-in. Returns 0
 * or -errno; on failure what was written stays (systemd discards the directory anyway). */
int unitgen_write(const struct unitgen_plan *p, const char *dir, const char *unitdir);

/* Print the plan as the files unitgen_write makes, for review (`tcpmapctl units`). */
void unitgen_print(const struct unitgen_plan *p, const char *unitdir, FILE *out);
