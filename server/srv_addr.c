/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void srv_addr_key(const struct sockaddr *addr, char *ip, char *key, size_t len)
{
	snprintf(ip, len, "?");
	if (addr->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, ip,
			  (socklen_t)len);
	} else if (addr->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)addr)->sin6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a.s6_addr, mapped, sizeof(mapped)) == 0) {
			/* An IPv4 client on a dual-stack socket. */
			inet_ntop(AF_INET, a.s6_addr + 12, ip, (socklen_t)len);
		} else {
			inet_ntop(AF_INET6, &a, ip, (socklen_t)len);
			memset(a.s6_addr + 8, 0, 8);
			char prefix[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, &a, prefix, sizeof(prefix));
			snprintf(key, len, "%s/64", prefix);
			return;
		}
	}
	snprintf(key, len, "%s", ip);
}
