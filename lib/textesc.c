/* textesc.c — see textesc.h. */
#include "textesc.h"

#include "util.h"

/* Length of the well-formed UTF-8 sequence at p (at most `left` bytes), or 0. */
static size_t utf8_sequence(const uint8_t *p, size_t left) {
	size_t n;
	uint32_t cp;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07u;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	/* overlong forms, surrogates, beyond Unicode, and the C1 controls */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    cp > 0x10ffff || (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

/* Calls emit(buf, n, userdata) for each piece of the escaped text. */
static void textesc_walk(const char *s, size_t len, void (*emit)(const char *, size_t, void *),
                         void *userdata) {
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i < len && p[i]) {
		uint8_t c = p[i];
		char buf[8];
		size_t n;

		if (c == '\\') {
			emit("\\\\", 2, userdata);
			i++;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			buf[0] = '\\';
			buf[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			emit(buf, 2, userdata);
			i++;
		} else if (c >= 0x20 && c < 0x7f) {
			emit((const char *)p + i, 1, userdata);
			i++;
		} else if (c >= 0x80 && (n = utf8_sequence(p + i, len - i)) > 0) {
			emit((const char *)p + i, n, userdata);
			i += n;
		} else {
			snprintf(buf, sizeof(buf), "\\x%02x", c);
			emit(buf, 4, userdata);
			i++;
		}
	}
}

struct growbuf {
	char *data;
	size_t n, cap;
	bool failed;
};

static void growbuf_emit(const char *piece, size_t n, void *userdata) {
	struct growbuf *b = userdata;

	if (b->failed)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *data = realloc(b->data, cap);
		if (!data) {
			b->failed = true;
			return;
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->n, piece, n);
	b->n += n;
	b->data[b->n] = '\0';
}

char *textesc(const char *s, size_t len) {
	struct growbuf b = {};

	growbuf_emit("", 0, &b);
	textesc_walk(s, len, growbuf_emit, &b);
	if (b.failed) {
		free(b.data);
		return NULL;
	}
	return b.data;
}

static void file_emit(const char *piece, size_t n, void *userdata) {
	fwrite(piece, 1, n, userdata);
}

void textesc_fputs(const char *s, FILE *out) { textesc_walk(s, SIZE_MAX, file_emit, out); }

void textesc_copy_lines(FILE *in, FILE *out) {
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	while ((n = getline(&line, &cap, in)) > 0) {
		bool newline = line[n - 1] == '\n';
		/* a NUL inside the line ends what is shown of it: names never hold one */
		textesc_walk(line, (size_t)n - newline, file_emit, out);
		if (newline)
			fputc('\n', out);
	}
	free(line);
}
