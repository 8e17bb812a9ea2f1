/* SPDX-License-Identifier: Apache-2.0 */
/* Internal helpers of libgridex; not installed. */
#ifndef GRIDEX_INTERNAL_H
#define GRIDEX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The 32-byte Ed25519 seed of a PEM private key file; the reason in err. Errors: KEY. */
int gridex_key_seed(const char *path, uint8_t seed[32], char *err, size_t err_len);

struct gridex_event;
/* One ServerFrame body to an event (what gridex_next_event does with each frame).
 * Errors: PROTOCOL, NOMEM; *ev needs gridex_event_free() only on OK. */
int gridex_event_decode(const uint8_t *body, size_t len, struct gridex_event *ev);

#endif
