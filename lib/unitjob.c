/* unitjob.c — see unitjob.h. */
#include "unitjob.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* SIGTERM is already in: systemd gives us TimeoutStopSec=, and a stuck bus must not eat it. */
#define UNITJOB_BUS_TIMEOUT_USEC (1000 * 1000)

static const char *const kind_names[] = {
        [UNITJOB_UNKNOWN] = "unknown",
        [UNITJOB_NONE] = "none",
        [UNITJOB_STOP] = "stop",
        [UNITJOB_RESTART] = "restart",
};

const char *unitjob_kind_name(enum unitjob_kind k) {
	return (unsigned)k < ELEMENTSOF(kind_names) ? kind_names[k] : "unknown";
}

static enum unitjob_kind kind_of_job_type(const char *type) {
	/* systemd collapses try-restart and reload-or-restart into restart jobs */
	if (streq(type, "restart") || streq(type, "try-restart"))
		return UNITJOB_RESTART;
	return UNITJOB_STOP;
}

/* Written by ExecStop= (tcpmap@.service): "stop.$MAINPID" when no restart job is queued. */
static bool stop_marker_take(const char *runtime_dir) {
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/stop.%d", runtime_dir, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof path)
		return false;
	return unlink(path) == 0;
}

enum unitjob_kind unitjob_current(const char *runtime_dir) {
	_cleanup_free_ char *unit_path = NULL, *type = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL, *unit_reply = NULL;
	sd_bus *bus = NULL;
	enum unitjob_kind kind = UNITJOB_UNKNOWN;
	const char *job_path, *path;
	uint32_t job_id;
	int r;

	if (stop_marker_take(runtime_dir))
		return UNITJOB_STOP;
	if (!getenv("INVOCATION_ID"))
		return UNITJOB_UNKNOWN; /* not started by systemd: no one to ask */
	/* systemd finds our unit by PID itself: sd_pid_get_unit() needs PID 1's cgroup in
	 * /proc, which ProtectProc=invisible hides. */
	r = sd_bus_open_system(&bus);
	if (r >= 0)
		r = sd_bus_set_method_call_timeout(bus, UNITJOB_BUS_TIMEOUT_USEC);
	if (r >= 0)
		r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
		                       "org.freedesktop.systemd1.Manager", "GetUnitByPID", &error,
		                       &unit_reply, "u", (uint32_t)getpid());
	if (r >= 0)
		r = sd_bus_message_read(unit_reply, "o", &path);
	if (r >= 0 && !(unit_path = strdup(path)))
		r = -ENOMEM;
	if (r >= 0)
		r = sd_bus_get_property(bus, "org.freedesktop.systemd1", unit_path,
		                        "org.freedesktop.systemd1.Unit", "Job", &error, &reply,
		                        "(uo)");
	if (r >= 0)
		r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
	if (r >= 0 && job_id == 0)
		kind = UNITJOB_NONE;
	else if (r >= 0) {
		r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job_path,
		                               "org.freedesktop.systemd1.Job", "JobType", &error,
		                               &type);
		if (r >= 0)
			kind = kind_of_job_type(type);
	}
	if (r < 0)
		log_debug("unit job: %s",
		          sd_bus_error_is_set(&error) ? error.message : strerror(-r));
	sd_bus_error_free(&error);
	sd_bus_message_unref(reply);
	sd_bus_message_unref(unit_reply);
	sd_bus_flush_close_unref(bus);
	return kind;
}
