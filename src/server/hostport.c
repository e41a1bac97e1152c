/* HOST:PORT, the one parser for pglite-proxy --tcp and pglite_server's
 * `tcp` option, and the loopback test behind the refusal of trust
 * listeners reachable from the network. */
#define _GNU_SOURCE
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int server_parse_hostport(const char *spec, char *host, size_t hostlen, int *port, char *err,
                          size_t errlen) {
    if (!spec || !host || hostlen == 0 || !port) {
        snprintf(err, errlen, "no address given");
        return -1;
    }
    const char *colon = strrchr(spec, ':');
    const char *ps = colon ? colon + 1 : spec;
    const char *h = spec;
    size_t hl = colon ? (size_t)(colon - spec) : 0;
    if (hl >= 1 && h[0] == '[') { /* [::1]:5432 */
        if (hl < 2 || h[hl - 1] != ']') {
            snprintf(err, errlen, "\"%s\": an IPv6 address in brackets wants its \"]\"", spec);
            return -1;
        }
        h++;
        hl -= 2;
    }
    if (hl >= hostlen) {
        snprintf(err, errlen, "the host name is too long (%zu bytes, at most %zu)", hl,
                 hostlen - 1);
        return -1;
    }
    if (hl && memchr(h, ']', hl)) {
        snprintf(err, errlen, "\"%s\" is not HOST:PORT", spec);
        return -1;
    }
    char *end;
    errno = 0;
    long p = strtol(ps, &end, 10);
    if (!*ps || *end || errno || p < 0 || p > 65535 || *ps == '-' || *ps == '+' || *ps == ' ') {
        snprintf(err, errlen, "\"%s\" is not HOST:PORT (PORT a number from 0 to 65535)", spec);
        return -1;
    }
    if (hl == 0)
        snprintf(host, hostlen, "%s", SERVER_LOOPBACK_HOST);
    else {
        memcpy(host, h, hl);
        host[hl] = 0;
    }
    *port = (int)p;
    return 0;
}

int server_address_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return sa->sa_family == AF_UNIX;
}
