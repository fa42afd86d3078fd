/* handover.c — see handover.h. Must reject anything malformed: the state memfd comes from
 * systemd's store, written by an older binary that may have had other ideas. */
#include "handover.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const kind_suffix[_HANDOVER_FD_MAX] = {
        [HANDOVER_FD_CLIENT] = "client",   [HANDOVER_FD_UPSTREAM] = "upstream",
        [HANDOVER_FD_UP_READ] = "upr",     [HANDOVER_FD_UP_WRITE] = "upw",
        [HANDOVER_FD_DOWN_READ] = "downr", [HANDOVER_FD_DOWN_WRITE] = "downw",
};

static bool id_is_valid(const char *id, size_t len) {
	if (len == 0 || len >= sizeof(((struct handover_record *)0)->id))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
			return false;
	return true;
}

int handover_fd_name(const char *id, enum handover_fd_kind kind, char *buf, size_t size) {
	if ((unsigned)kind >= _HANDOVER_FD_MAX || !id_is_valid(id, strlen(id)))
		return -EINVAL;
	int n = snprintf(buf, size, "c%s.%s", id, kind_suffix[kind]);
	return n < 0 || (size_t)n >= size ? -ENOBUFS : 0;
}

int handover_parse_fd_name(const char *name, char *id, size_t id_size,
                           enum handover_fd_kind *kind) {
	const char *dot;
	size_t len;

	if (!name || name[0] != 'c')
		return -EINVAL;
	dot = strchr(name + 1, '.');
	if (!dot)
		return -EINVAL;
	len = (size_t)(dot - (name + 1));
	if (!id_is_valid(name + 1, len) || len >= id_size)
		return -EINVAL;
	for (int k = 0; k < _HANDOVER_FD_MAX; k++)
		if (streq(dot + 1, kind_suffix[k])) {
			memcpy(id, name + 1, len);
			id[len] = '\0';
			*kind = (enum handover_fd_kind)k;
			return 0;
		}
	return -EINVAL;
}

bool handover_is_state_name(const char *name) {
	return name && strncmp(name, HANDOVER_STATE_PREFIX, strlen(HANDOVER_STATE_PREFIX)) == 0;
}

static bool terminated(const char *s, size_t size) { return memchr(s, '\0', size) != NULL; }

int handover_record_validate(const struct handover_record *r) {
	if (r->magic != HANDOVER_MAGIC || r->version != HANDOVER_VERSION)
		return -EINVAL;
	if (!terminated(r->id, sizeof r->id) || !terminated(r->mapping, sizeof r->mapping) ||
	    !terminated(r->sni, sizeof r->sni))
		return -EINVAL;
	if (!id_is_valid(r->id, strlen(r->id)))
		return -EINVAL;
	if (r->flags & HANDOVER_UNSTARTED) {
		/* routed or not (the mapping may be empty), but nothing moved yet */
		if (r->flags != HANDOVER_UNSTARTED || r->slot != 0 || r->bytes_in || r->bytes_out ||
		    r->in_pipe_up || r->in_pipe_down ||
		    r->client_addr_len > sizeof r->client_addr ||
		    r->local_addr_len > sizeof r->local_addr || r->local_addr_len == 0)
			return -EINVAL;
		return 0;
	}
	if (r->mapping[0] == '\0')
		return -EINVAL;
	if (r->client_addr_len > sizeof r->client_addr ||
	    r->local_addr_len > sizeof r->local_addr ||
	    r->upstream_addr_len > sizeof r->upstream_addr)
		return -EINVAL;
	if (r->flags & ~(uint32_t)(HANDOVER_UP_EOF | HANDOVER_UP_SHUT | HANDOVER_DOWN_EOF |
	                           HANDOVER_DOWN_SHUT))
		return -EINVAL;
	if ((r->flags & HANDOVER_UP_SHUT) && (!(r->flags & HANDOVER_UP_EOF) || r->in_pipe_up > 0))
		return -EINVAL;
	if ((r->flags & HANDOVER_DOWN_SHUT) &&
	    (!(r->flags & HANDOVER_DOWN_EOF) || r->in_pipe_down > 0))
		return -EINVAL;
	return 0;
}

void handover_record_set_relay(struct handover_record *r, const struct relay_state *s) {
	r->bytes_in = s->up.bytes;
	r->bytes_out = s->down.bytes;
	r->in_pipe_up = s->up.in_pipe;
	r->in_pipe_down = s->down.in_pipe;
	r->flags = (s->up.eof ? HANDOVER_UP_EOF : 0) | (s->up.shut ? HANDOVER_UP_SHUT : 0) |
	           (s->down.eof ? HANDOVER_DOWN_EOF : 0) | (s->down.shut ? HANDOVER_DOWN_SHUT : 0);
}

void handover_record_get_relay(const struct handover_record *r, int fds[_HANDOVER_FD_MAX],
                               struct relay_state *ret) {
	*ret = (struct relay_state){
	        .up = {.bytes = r->bytes_in,
	               .in_pipe = r->in_pipe_up,
	               .pipe_r = TAKE_FD(fds[HANDOVER_FD_UP_READ]),
	               .pipe_w = TAKE_FD(fds[HANDOVER_FD_UP_WRITE]),
	               .eof = r->flags & HANDOVER_UP_EOF,
	               .shut = r->flags & HANDOVER_UP_SHUT},
	        .down = {.bytes = r->bytes_out,
	                 .in_pipe = r->in_pipe_down,
	                 .pipe_r = TAKE_FD(fds[HANDOVER_FD_DOWN_READ]),
	                 .pipe_w = TAKE_FD(fds[HANDOVER_FD_DOWN_WRITE]),
	                 .eof = r->flags & HANDOVER_DOWN_EOF,
	                 .shut = r->flags & HANDOVER_DOWN_SHUT},
	};
}
