/* kind.h — what every kind's schema (lib/kind-*.c) implements and the state it fills.
 *
 * A kind reads one document's spec through its field table (lib/fields.h) and adds one
 * object to the config being loaded; it never sees other documents. lib/kinds.c calls the
 * kinds; lib/configbuild.c reads what they left (struct mapping_extra). A new kind is a
 * new kind-*.c with its field table, one kind_read_fn here and one line in kinds.c. */
#pragma once

#include <stdbool.h>

#include "diag.h"
#include "fields.h"
#include "model.h"
#include "strindex.h"
#include "yamltree.h"

/* The TCPMapping fields that later stages point diags at. */
enum mapping_field {
	MF_PORT,
	MF_SERVICE,
	MF_ADDRESS,
	MF_HOST,
	MF_TLS,
	MF_WEIGHT,
	MF_IDLE_TIMEOUT,
	MF_ENABLE_IPV4,
	MF_ENABLE_IPV6,
	MF_BREAKERS,
	MF_CONNECT_TIMEOUT,
	MF_PROXY_PROTOCOL,
	MF_TLS_PASSTHROUGH,
	MF_PER_CONNECTION_PROCESS,
	MF_PER_CONNECTION_UNIT,
	_MF_MAX,
};

/* Where each field of a mapping was written, for errors raised after the document is gone. */
struct mapping_extra {
	struct source_pos name_pos;
	struct source_pos field_pos[_MF_MAX];
	bool has_enable_ipv4, has_enable_ipv6, has_connect_timeout;
	bool has_explicit_upstream_port;
	bool service_https; /* service: https://... */
	bool bad;           /* had errors; kept only so its name counts for uniqueness */
};

struct seen_name {
	char *name;
	struct source_pos pos;
};

struct name_set {
	struct seen_name *items;
	size_t n;
	struct strindex by_name; /* name -> its item's index + 1 */
};

enum kind_id {
	KIND_TCPMAPPING,
	KIND_TLSCONTEXT,
	KIND_MODULE,
	KIND_HOST,
	_KIND_MAX,
};

/* What the documents read so far have produced. */
struct kinds_state {
	const char *ambassador_id;
	const char *ambassador_namespace; /* of a document that names none: $AMBASSADOR_NAMESPACE */
	size_t n_other_id;                /* documents skipped as another instance's */
	/* The file being read, for the documents of an annotation string (lib/kinds.c). */
	const char *data;
	size_t size;
	const struct yamltree_limits *limits;
	const char *annotation_namespace; /* inside an annotation: its object's namespace */
	struct diag_list *diags;
	struct config *config;
	struct mapping_extra *extras; /* parallel to config->mappings */
	struct name_set names[_KIND_MAX];
};

/* The kinds' own parsers (kind-*.c), called by kinds.c only: read the document `root`,
 * whose metadata.name is `name`, from its `spec` mapping into s->config. `o` names the
 * object in diags. Each returns 0 (problems are diags and mark `o` bad) or -ENOMEM. */
typedef int kind_read_fn(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                         const struct ynode *name, const struct ynode *spec);
kind_read_fn kind_tcpmapping_read;
kind_read_fn kind_tlscontext_read;
kind_read_fn kind_module_read;
kind_read_fn kind_host_read;
/* The TLSContext fields of a Host's `tls` mapping, read into `t` (lib/kind-tlscontext.c).
 * Returns 0 (problems are diags) or -ENOMEM. */
/* A new TLS context for document `o` (a TLSContext, or a Host's TLS), owned by the config,
 * named after it and labelled `label` in diags. Returns 0 or -ENOMEM. */
int kind_tlscontext_new(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                        const char *label, struct tls_context **ret);
int kind_tlscontext_read_settings(struct yobject *o, const struct ynode *tls,
                                  struct tls_context *t);
