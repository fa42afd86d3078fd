/* kinds.h — the Ambassador kinds tcpmap reads (TCPMapping, TLSContext, Module), one document
 * at a time.
 *
 * kinds.c checks the envelope every document shares (kind, apiVersion, ambassador_id,
 * metadata.name and its uniqueness), then hands the spec to the kind's schema in kind-*.c.
 * Cross-document rules (groups, weights, listeners) are lib/configbuild.c's. */
#pragma once

#include "kind.h"
#include "yamltree.h"

/* Read one document into s->config. Problems are diags; returns 0, or -ENOMEM, after which
 * the load must fail (the config may miss the object). */
int kinds_read_document(struct kinds_state *s, const char *file, const struct ynode *root);
void kinds_state_done(struct kinds_state *s);
