/* kind-module.c — the Ambassador Module: the defaults every mapping falls back on.
 *
 * Two field tables: the Module's spec, and its `config` mapping, where Ambassador keeps
 * dozens of HTTP settings that are legitimately present in shared files, so keys tcpmap
 * does not read there pass without a warning. */
#include <stddef.h>

#include "kind.h"
#include "util.h"

#define FIELD_ARGS                                                                                 \
	struct yobject *o, const struct field_def *def, const struct fields *f,                    \
	        const struct ynode *value, void *target

static int read_timeout_from(struct yobject *o, const struct field_def *def,
                             const struct ynode *value, void *target, uint64_t min) {
	uint32_t *dst = (uint32_t *)((char *)target + def->offset);
	uint64_t u;
	int r = get_uint_or_digits(o, field_label(def), value, min, UINT32_MAX, &u);

	if (r > 0)
		*dst = (uint32_t)u;
	return MIN(r, 0);
}

/* preread_timeout_ms, connect_timeout_ms: 0 would refuse every connection */
static int read_positive_timeout(FIELD_ARGS) {
	(void)f;
	return read_timeout_from(o, def, value, target, 1);
}

/* drain_timeout_ms, which may be 0 */
static int read_timeout(FIELD_ARGS) {
	(void)f;
	return read_timeout_from(o, def, value, target, 0);
}

static int read_breakers(FIELD_ARGS) {
	struct module_config *mod = target;
	int r = get_circuit_breakers(o, field_label(def), value, &mod->circuit_breakers);

	(void)f;
	return MIN(r, 0);
}

#define AT(field) offsetof(struct module_config, field)

static const struct field_def module_config_fields[] = {
        {"enable_ipv4", "config.enable_ipv4", field_bool, AT(enable_ipv4), 0},
        {"enable_ipv6", "config.enable_ipv6", field_bool, AT(enable_ipv6), 0},
        {"circuit_breakers", "config.circuit_breakers", read_breakers, 0, 0},
        {"preread_timeout_ms", "config.preread_timeout_ms", read_positive_timeout,
         AT(preread_timeout_ms), 0},
        {"connect_timeout_ms", "config.connect_timeout_ms", read_positive_timeout,
         AT(connect_timeout_ms), 0},
        {"drain_timeout_ms", "config.drain_timeout_ms", read_timeout, AT(drain_timeout_ms), 0},
        {"silent_client_timeout_ms", "config.silent_client_timeout_ms", read_positive_timeout,
         AT(silent_client_timeout_ms), 0},
};

static const struct field_table module_config_table = {
        .fields = module_config_fields,
        .n_fields = ELEMENTSOF(module_config_fields),
        .duplicates = FIELDS_FIRST_WINS,
        .quiet_unknown = true,
};

static int read_config(FIELD_ARGS) {
	struct module_config *mod = target;
	struct fields config_fields;

	(void)def;
	/* Only the Module named "ambassador" configures Ambassador itself (Emissary's rule). */
	if (!streq(o->name, "ambassador")) {
		yobject_diag(o, DIAG_DEBUG, f->spec,
		             "only the Module named \"ambassador\" applies, skipping");
		return 0;
	}
	if (ynode_is_null(value))
		return 0;
	if (value->kind != YNODE_MAPPING) {
		yobject_diag(o, DIAG_ERROR, value, "config: must be a mapping, not %s",
		             ynode_describe(value));
		return -EINVAL;
	}
	return fields_parse(o, &module_config_table, value, &config_fields, mod);
}

static const struct field_def module_fields[] = {
        {"config", NULL, read_config, 0, 0},
        /* read from the envelope by kinds.c */
        {"ambassador_id", NULL, NULL, 0, 0},
};

static const struct field_table module_table = {
        .fields = module_fields,
        .n_fields = ELEMENTSOF(module_fields),
        .duplicates = FIELDS_LAST_WINS,
};

int kind_module_read(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                     const struct ynode *name, const struct ynode *spec) {
	struct fields f;

	(void)root, (void)name;
	return fields_parse(o, &module_table, spec, &f, &s->config->module);
}
