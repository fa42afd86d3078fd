/* forkfloor.c — the floor of any process per connection that does not exec: N times, fork a
 * child that exits at once, and wait for it. Prints "CPU_US WALL_US N": the CPU (parent and
 * children, user and system) and the wall time per fork+exit+wait. Built static by
 * bench/run.sh, so the child copies as little as the relay spawner's (tcpmap-spawner). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	struct timespec a, b;
	struct rusage self, children;

	if (n <= 0)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &children);
	double cpu = seconds(self.ru_utime) + seconds(self.ru_stime) + seconds(children.ru_utime) +
	             seconds(children.ru_stime);
	double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%.1f %.1f %d\n", cpu * 1e6 / n, wall * 1e6 / n, n);
	return 0;
}
