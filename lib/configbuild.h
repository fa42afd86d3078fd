/* configbuild.h — from the mappings read to the model's groups, weights and listeners.
 *
 * Runs once all documents are read: fills each mapping's defaults from the Module, checks
 * what needs several documents (TLSContext names, hosts without a certificate, group
 * agreement), groups mappings by (address, port, host), turns written weights into exact
 * percentages and lays groups out into listeners. Reads no files and never logs. */
#pragma once

#include "kind.h"

/* Build s->config in place. Problems are diags; returns 0 or -ENOMEM. */
int config_build(struct kinds_state *s);
