/* test-memlimit.c — finding the memory limit over a fake root: cgroup v2, cgroup v1 (this
 * host's kind), a hybrid host whose v2 tree has no memory controller, v1's "no limit", a
 * parent's lower limit, a container's mount root, and a process moved into a limited
 * cgroup after start.
 *
 * Everything lives in a temporary directory the fixture removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "memlimit.h"
#include "util.h"

#define V1_NO_LIMIT "9223372036854771712\n"

static char root[256];

static void put(const char *rel, const char *text) {
	char path[1024], cmd[1100];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(cmd), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state) {
	(void)state;
	snprintf(root, sizeof root, "/tmp/test-memlimit.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static const char v1_mounts[] =
        "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:6 - cgroup cgroup rw,cpu,cpuacct\n"
        "33 30 0:29 / /sys/fs/cgroup/memory rw shared:7 - cgroup cgroup rw,memory\n";

static void test_parse(void **state) {
	uint64_t v = 0;
	(void)state;
	assert_int_equal(memlimit_parse("1048576\n", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(memlimit_parse("max\n", &v), -ENOENT);
	assert_int_equal(memlimit_parse(V1_NO_LIMIT, &v), -ENOENT);
	assert_int_equal(memlimit_parse("-1\n", &v), -EINVAL);
	assert_int_equal(memlimit_parse("12x\n", &v), -EINVAL);
	assert_int_equal(memlimit_parse_stat("cache 4096\nhierarchical_memory_limit 5000\n",
	                                     "hierarchical_memory_limit", &v),
	                 0);
	assert_int_equal(v, 5000);
	assert_int_equal(memlimit_parse_stat("cache 1\n", "hierarchical_memory_limit", &v),
	                 -ENOENT);
	assert_int_equal(memlimit_parse_stat("hierarchical_memory_limit " V1_NO_LIMIT,
	                                     "hierarchical_memory_limit", &v),
	                 -ENOENT);
}

static void test_v2(void **state) {
	struct memlimit m;
	uint64_t cur, max;
	(void)state;
	put("proc/self/cgroup", "0::/system.slice/tcpmap@1.service\n");
	put("proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put("sys/fs/cgroup/system.slice/tcpmap@1.service/memory.current", "1000\n");
	put("sys/fs/cgroup/system.slice/tcpmap@1.service/memory.max", "max\n");
	assert_int_equal(memlimit_init_at(&m, root), 0);
	assert_int_equal(m.kind, MEMLIMIT_V2);
	assert_int_equal(memlimit_read(&m, &cur, &max), -ENOENT);
	/* `systemctl set-property MemoryMax=` after the start */
	put("sys/fs/cgroup/system.slice/tcpmap@1.service/memory.max", "4000\n");
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(cur, 1000);
	assert_int_equal(max, 4000);
}

static void test_v1(void **state) {
	struct memlimit m;
	uint64_t cur, max;
	(void)state;
	/* hybrid: the v2 tree is mounted but has no memory controller */
	put("proc/self/cgroup",
	    "5:cpu,cpuacct:/x\n4:memory:/system.slice/tcpmap@1.service\n0::/x\n");
	put("proc/self/mountinfo", v1_mounts);
	put("sys/fs/cgroup/unified/x/cgroup.procs", "");
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.usage_in_bytes", "2000\n");
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.limit_in_bytes",
	    V1_NO_LIMIT);
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.stat",
	    "cache 0\nhierarchical_memory_limit " V1_NO_LIMIT "total_cache 0\n");
	assert_int_equal(memlimit_init_at(&m, root), 0);
	assert_int_equal(m.kind, MEMLIMIT_V1);
	assert_int_equal(memlimit_read(&m, &cur, &max), -ENOENT);

	/* MemoryMax= on a v1 host sets limit_in_bytes; memory.stat shows it too */
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.limit_in_bytes", "8000\n");
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.stat",
	    "cache 0\nhierarchical_memory_limit 8000\n");
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(cur, 2000);
	assert_int_equal(max, 8000);

	/* a parent's lower limit binds: memory.stat says so */
	put("sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.stat",
	    "cache 0\nhierarchical_memory_limit 6000\n");
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(max, 6000);

	/* no memory.stat: limit_in_bytes alone */
	char path[512];
	snprintf(path, sizeof path,
	         "%s/sys/fs/cgroup/memory/system.slice/tcpmap@1.service/memory.stat", root);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(max, 8000);
}

static void test_v1_moved_into_a_limited_cgroup(void **state) {
	struct memlimit m;
	uint64_t cur, max;
	(void)state;
	put("proc/self/cgroup", "4:memory:/jail\n0::/\n");
	put("proc/self/mountinfo", v1_mounts);
	put("sys/fs/cgroup/memory/jail/memory.usage_in_bytes", "50000\n");
	put("sys/fs/cgroup/memory/jail/memory.limit_in_bytes", V1_NO_LIMIT);
	assert_int_equal(memlimit_init_at(&m, root), 0);
	assert_int_equal(m.kind, MEMLIMIT_V1);
	assert_int_equal(memlimit_read(&m, &cur, &max), -ENOENT);
	put("sys/fs/cgroup/memory/jail/shed/memory.usage_in_bytes", "300\n");
	put("sys/fs/cgroup/memory/jail/shed/memory.limit_in_bytes", "1000\n");
	put("proc/self/cgroup", "4:memory:/jail/shed\n0::/\n");
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(cur, 300);
	assert_int_equal(max, 1000);
}

static void test_container_mount_root(void **state) {
	struct memlimit m;
	uint64_t cur, max;
	(void)state;
	/* the hierarchy is mounted from /outer/c1: only that part of the tree is visible */
	put("proc/self/cgroup", "4:memory:/outer/c1/svc\n");
	put("proc/self/mountinfo",
	    "33 30 0:29 /outer/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
	put("sys/fs/cgroup/memory/svc/memory.usage_in_bytes", "10\n");
	put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "100\n");
	assert_int_equal(memlimit_init_at(&m, root), 0);
	assert_int_equal(m.kind, MEMLIMIT_V1);
	assert_int_equal(memlimit_read(&m, &cur, &max), 0);
	assert_int_equal(max, 100);
}

static void test_nothing(void **state) {
	struct memlimit m;
	uint64_t cur, max;
	(void)state;
	put("proc/self/cgroup", "0::/\n");
	put("proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	assert_int_equal(memlimit_init_at(&m, root), 0);
	assert_int_equal(m.kind, MEMLIMIT_NONE);
	assert_int_equal(memlimit_read(&m, &cur, &max), -ENOENT);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse),
	        cmocka_unit_test_setup_teardown(test_v2, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_v1, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_v1_moved_into_a_limited_cgroup, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_container_mount_root, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
