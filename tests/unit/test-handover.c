/* test-handover.c — the names and records that carry a connection across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "handoff.h"
#include "handover.h"
#include "util.h"

static struct handover_record valid_record(void) {
	struct handover_record r = {.magic = HANDOVER_MAGIC, .version = HANDOVER_VERSION};
	snprintf(r.id, sizeof r.id, "1234-7");
	snprintf(r.mapping, sizeof r.mapping, "ssh");
	r.client_addr_len = 16;
	return r;
}

static void test_fd_names_round_trip(void **state) {
	(void)state;
	for (int k = 0; k < _HANDOVER_FD_MAX; k++) {
		char name[64], id[32];
		enum handover_fd_kind kind;
		assert_int_equal(handover_fd_name("4321-0", k, name, sizeof name), 0);
		assert_int_equal(handover_parse_fd_name(name, id, sizeof id, &kind), 0);
		assert_string_equal(id, "4321-0");
		assert_int_equal(kind, k);
	}
	char name[64];
	assert_int_equal(handover_fd_name("1-1", HANDOVER_FD_CLIENT, name, sizeof name), 0);
	assert_string_equal(name, "c1-1.client");
	assert_int_equal(handover_fd_name("1-1", HANDOVER_FD_DOWN_WRITE, name, sizeof name), 0);
	assert_string_equal(name, "c1-1.downw");
}

static void test_fd_names_rejected(void **state) {
	(void)state;
	static const char *const bad[] = {
	        "tcpmap@2222.socket",
	        "connection",
	        "c.client",
	        "c12.",
	        "c12.clientx",
	        "c1 2.client",
	        "x12.client",
	        "c12",
	        "",
	        "c123456789012345678901234567890123.client",
	        "c12/..client",
	};
	char id[32], name[8];
	enum handover_fd_kind kind;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(handover_parse_fd_name(bad[i], id, sizeof id, &kind), -EINVAL);
	assert_int_equal(handover_fd_name("a-b", HANDOVER_FD_CLIENT, id, sizeof id), -EINVAL);
	assert_int_equal(handover_fd_name("12", _HANDOVER_FD_MAX, id, sizeof id), -EINVAL);
	assert_int_equal(handover_fd_name("12345", HANDOVER_FD_UPSTREAM, name, sizeof name),
	                 -ENOBUFS);
}

static void test_state_names(void **state) {
	(void)state;
	assert_true(handover_is_state_name("tcpmap-state.77.0"));
	assert_false(handover_is_state_name("tcpmap@1.socket"));
	assert_false(handover_is_state_name(NULL));
}

static void test_record_validation(void **state) {
	(void)state;
	struct handover_record r = valid_record();
	assert_int_equal(handover_record_validate(&r), 0);

	r = valid_record();
	r.magic = 0;
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.version = 2;
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	memset(r.mapping, 'a', sizeof r.mapping); /* no NUL */
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.mapping[0] = '\0';
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.client_addr_len = sizeof r.client_addr + 1;
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.flags = HANDOVER_UP_SHUT; /* shut without eof */
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.flags = HANDOVER_DOWN_EOF | HANDOVER_DOWN_SHUT;
	r.in_pipe_down = 5; /* bytes behind a FIN already sent */
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.flags = HANDOVER_UP_EOF | HANDOVER_UP_SHUT;
	r.in_pipe_up = 5; /* the same, client to upstream */
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.flags = 1u << 9;
	assert_int_equal(handover_record_validate(&r), -EINVAL);
	r = valid_record();
	r.flags = HANDOVER_UP_EOF | HANDOVER_UP_SHUT | HANDOVER_DOWN_EOF;
	r.in_pipe_down = 100;
	assert_int_equal(handover_record_validate(&r), 0);
}

/* What handoff_store_fd() tells systemd, read from a notify socket of our own: the fd, its
 * name, and FDPOLL=0, without which systemd drops a stored socket at its first EPOLLHUP while
 * its connection may still owe the client bytes (docs/ARCHITECTURE.md, handoff.c). */
static void test_store_fd_asks_systemd_not_to_poll(void **state) {
	char dir[] = "/tmp/test-handover-XXXXXX", path[128], text[256] = "";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int pipe_fds[2], got_fd = -1;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/notify", dir);
	strcpy(sa.sun_path, path);
	int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(sock >= 0);
	assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(pipe(pipe_fds), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);

	assert_int_equal(handoff_store_fd("c1-0.client", pipe_fds[0]), 0);

	union {
		char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(64)];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = text, .iov_len = sizeof text - 1};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = control.buf,
	                     .msg_controllen = sizeof control.buf};
	ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	assert_true(n > 0);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&got_fd, CMSG_DATA(cm), sizeof got_fd);
	assert_true(got_fd >= 0);
	assert_non_null(strstr(text, "FDSTORE=1\n"));
	assert_non_null(strstr(text, "FDPOLL=0\n"));
	assert_non_null(strstr(text, "FDNAME=c1-0.client"));

	unsetenv("NOTIFY_SOCKET");
	close(got_fd);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	close(sock);
	unlink(path);
	rmdir(dir);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fd_names_round_trip),
	        cmocka_unit_test(test_fd_names_rejected),
	        cmocka_unit_test(test_state_names),
	        cmocka_unit_test(test_record_validation),
	        cmocka_unit_test(test_store_fd_asks_systemd_not_to_poll),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
