/* apply.h — `tcpmapctl apply`: bring what listens into line with the config, through systemd.
 *
 * The config has been checked by the caller. This enables tcpmap.target (the generator's
 * switch), reruns the generator (daemon-reload), starts
 * tcpmap.target (so the sockets of new listeners listen), stops the sockets and services of
 * listeners that are gone (first, where a listener moved between tcpmap@ and tcpmap-inetd@
 * and the new socket needs the port), and reloads the running services, whose connections stay: a
 * reload re-reads the config without closing anything. It talks to systemd by running
 * systemctl, as an operator would, and changes nothing else. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

/* Where systemd puts a generator's normal output. */
#define APPLY_GENERATOR_DIR "/run/systemd/generator"

struct apply_options {
	const char *generator_dir; /* NULL: APPLY_GENERATOR_DIR */
	bool enable;               /* also `systemctl enable tcpmap.target`, for the next boot */
};

/* Returns 0, or -errno / a positive systemctl exit status as a negative number when a step
 * failed (each failure is reported on `out` with the command that failed). */
int apply_config(const struct apply_options *o, FILE *out);

/* `tcpmapctl reload`: reload each of `units` (NULL or none: every running tcpmap@ service)
 * and wait (at most 10 s each) for its answer, since `systemctl reload` returns 0 as soon
 * as the signal is sent, whatever tcpmapd makes of the config. A service took the config
 * when its STATUS= names a later config generation (or a new main process, after a
 * re-exec); it rejected it when it logged TCPMAP_MID_CONFIG_REJECTED since. One line per
 * unit on `out`. Returns 0, or -EINVAL when any rejected the config or did not answer, or
 * another -errno. */
int apply_reload(const char *const *units, size_t n_units, FILE *out);
