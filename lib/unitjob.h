/* unitjob.h — what systemd is doing to our own unit at SIGTERM: a restart (a restart job
 * runs: hand connections over to the fd store, which the next process reads) or a stop (the
 * store is flushed with the unit: close and log them).
 *
 * systemd 252 says neither in the signal nor in the environment. Two witnesses, in order:
 * the marker RUNTIME_DIR/stop.PID that the unit's ExecStop= (run as root, so it may ask
 * systemd) leaves when no restart job is queued, and else the unit's Job property over the
 * system bus (which a DynamicUser= service cannot always reach). It decides nothing itself
 * and never blocks for long: at most one bus round trip, with a short timeout. */
#pragma once

enum unitjob_kind {
	UNITJOB_UNKNOWN, /* no unit, no bus, or no answer in time */
	UNITJOB_NONE,    /* no job: a signal from elsewhere (kill), so nothing restarts us */
	UNITJOB_STOP,    /* stop, or any job that does not start us again */
	UNITJOB_RESTART, /* restart (also try-restart and reload-or-restart) */
};

/* The job systemd runs on the unit of this process; consumes the stop marker in
 * `runtime_dir`. Never fails: what cannot be known is UNITJOB_UNKNOWN (logged at debug
 * level). */
enum unitjob_kind unitjob_current(const char *runtime_dir);

const char *unitjob_kind_name(enum unitjob_kind k);
