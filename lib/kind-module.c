/* kind-module.c — the Ambassador Module: the defaults every mapping falls back on.
 *
 * Two field tables: the Module's spec, and its `config` mapping, where Emissary keeps
 * dozens of HTTP settings that are legitimately present in shared files: those pass at
 * debug level, and any other key tcpmap does not read warns. */
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

/* drain_timeout_ms: configured, it also holds stops (see model.h) */
static int read_drain_timeout(FIELD_ARGS) {
	struct module_config *mod = target;
	uint64_t u;
	int r = get_uint_or_digits(o, field_label(def), value, 0, UINT32_MAX, &u);

	(void)f;
	if (r > 0) {
		mod->drain_timeout_ms = (uint32_t)u;
		mod->drain_timeout_configured = true;
	}
	return MIN(r, 0);
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
        /* tcpmap's own; tcpmap.yaml(5) promises the v3alpha1 warning for them */
        {"preread_timeout_ms", "config.preread_timeout_ms", read_positive_timeout,
         AT(preread_timeout_ms), FIELD_EXTENSION},
        {"connect_timeout_ms", "config.connect_timeout_ms", read_positive_timeout,
         AT(connect_timeout_ms), FIELD_EXTENSION},
        {"drain_timeout_ms", "config.drain_timeout_ms", read_drain_timeout, AT(drain_timeout_ms),
         FIELD_EXTENSION},
        {"silent_client_timeout_ms", "config.silent_client_timeout_ms", read_positive_timeout,
         AT(silent_client_timeout_ms), FIELD_EXTENSION},
};

/* Emissary's Module settings (its ambassador Module reference): legitimate in a file shared
 * with Emissary, meaningless to tcpmap. Any other key is most likely a misspelling of ours. */
static const char *const emissary_module_keys[] = {
        "add_linkerd_headers",
        "admin_port",
        "allow_chunked_length",
        "buffer",
        "cluster_idle_timeout_ms",
        "cluster_max_connection_lifetime_ms",
        "cluster_request_timeout_ms",
        "cors",
        "default_label_domain",
        "default_labels",
        "defaults",
        "diagnostics",
        "enable_grpc_http11_bridge",
        "enable_grpc_web",
        "enable_http10",
        "envoy_log_format",
        "envoy_log_path",
        "envoy_log_type",
        "envoy_validation_timeout",
        "error_response_overrides",
        "forward_client_cert_details",
        "grpc_stats",
        "header_case_overrides",
        "headers_with_underscores_action",
        "ip_allow",
        "ip_deny",
        "keepalive",
        "listener_idle_timeout_ms",
        "liveness_probe",
        "load_balancer",
        "lua_scripts",
        "max_request_headers_kb",
        "merge_slashes",
        "preserve_external_request_id",
        "proper_case",
        "readiness_probe",
        "regex_max_size",
        "regex_type",
        "reject_requests_with_escaped_slashes",
        "resolver",
        "retry_policy",
        "server_name",
        "set_current_client_cert_details",
        "statsd",
        "strip_matching_host_port",
        "suppress_envoy_headers",
        "use_ambassador_namespace_for_service_resolution",
        "use_proxy_proto",
        "use_remote_address",
        "x_forwarded_proto_redirect",
        "xff_num_trusted_hops",
        NULL,
};

static const struct field_table module_config_table = {
        .fields = module_config_fields,
        .n_fields = ELEMENTSOF(module_config_fields),
        .others = emissary_module_keys,
        .prefix = "config.",
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
        {"ambassadorId", NULL, NULL, 0, 0},
};

static const struct field_table module_table = {
        .fields = module_fields,
        .n_fields = ELEMENTSOF(module_fields),
};

int kind_module_read(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                     const struct ynode *name, const struct ynode *spec) {
	struct fields f;

	(void)root, (void)name;
	return fields_parse(o, &module_table, spec, &f, &s->config->module);
}
