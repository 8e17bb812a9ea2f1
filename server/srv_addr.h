/* SPDX-License-Identifier: Apache-2.0 */
/* What the per-address limits of gridexd count a peer as. */
#ifndef GRIDEX_SRV_ADDR_H
#define GRIDEX_SRV_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * A peer's address as text (ip, for the log) and what the per-address limits
 * count it as (key): the address itself; for an IPv4-mapped IPv6 address, the
 * IPv4 address (both); for another IPv6 address, its /64 prefix
 * ("2001:db8:1:2::/64"), since a site gets a /64 or more and picks addresses in
 * it at will. len: the size of both buffers (64 is enough). Another family:
 * "?".
 */
void srv_addr_key(const struct sockaddr *addr, char *ip, char *key, size_t len);

#endif
