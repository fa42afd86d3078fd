# pids.bash — whether a recorded PID is still the process a test started.
#
# The suites record each process they start and stop it by PID at teardown, often minutes
# later. By then it may have exited and its PID been reused: pid_max is 32768 on these
# machines and a systemd suite or the soak starts thousands of processes. Signalling a
# reused PID kills a stranger (another run's soak, a developer's shell). Every process a
# suite starts is in the session of the shell that runs it (nothing here calls setsid), so
# a PID in another session is not ours, whatever its number.

# session_of PID: the session id from /proc/PID/stat (empty when PID is gone).
session_of() {
	sed -nE 's/^[0-9]+ \(.*\) [A-Za-z] -?[0-9]+ -?[0-9]+ (-?[0-9]+) .*/\1/p' "/proc/$1/stat" 2>/dev/null
}

# pid_ours PID: PID exists and is in this shell's session.
pid_ours() {
	local theirs
	theirs=$(session_of "$1")
	[ -n "$theirs" ] && [ "$theirs" = "$(session_of "$BASHPID")" ]
}
