/*
 * Unit tests for server_parse_hostport and server_address_is_loopback: the
 * one HOST:PORT parser of pglite-proxy --tcp and pglite_server_options.tcp.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "server/server.h"

static void accepts(const char *spec, const char *host, int port) {
    char h[64] = "x", err[200] = "";
    int p = -1;
    assert_int_equal(server_parse_hostport(spec, h, sizeof h, &p, err, sizeof err), 0);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void refuses(const char *spec, const char *why) {
    char h[64] = "untouched", err[200] = "";
    int p = -7;
    assert_int_equal(server_parse_hostport(spec, h, sizeof h, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, why));
    assert_int_equal(p, -7);
}

static void test_forms(void **state) {
    (void)state;
    accepts("127.0.0.1:5432", "127.0.0.1", 5432);
    accepts("localhost:0", "localhost", 0);
    accepts("0.0.0.0:65535", "0.0.0.0", 65535);
    accepts("[::1]:5433", "::1", 5433);
    accepts("[::]:1", "::", 1);
    accepts("db.example.org:6543", "db.example.org", 6543);
}

static void test_empty_host_is_loopback(void **state) {
    (void)state;
    accepts(":54399", SERVER_LOOPBACK_HOST, 54399);
    accepts("5432", SERVER_LOOPBACK_HOST, 5432);
    accepts("[]:7", SERVER_LOOPBACK_HOST, 7);
    assert_string_equal(SERVER_LOOPBACK_HOST, "127.0.0.1");
}

static void test_bad_input(void **state) {
    (void)state;
    refuses("", "is not HOST:PORT");
    refuses("localhost", "is not HOST:PORT");
    refuses("localhost:", "is not HOST:PORT");
    refuses("host:65536", "is not HOST:PORT");
    refuses("host:-1", "is not HOST:PORT");
    refuses("host:+5", "is not HOST:PORT");
    refuses("host: 5", "is not HOST:PORT");
    refuses("host:5x", "is not HOST:PORT");
    refuses("host:99999999999999999999", "is not HOST:PORT");
    refuses("[::1:5432", "wants its \"]\"");
    refuses("a]:1", "is not HOST:PORT");
    char longhost[300];
    memset(longhost, 'h', sizeof longhost);
    memcpy(longhost + 280, ":5432", 6);
    refuses(longhost, "too long");
    char h[8], err[100];
    int p;
    assert_int_equal(server_parse_hostport(NULL, h, sizeof h, &p, err, sizeof err), -1);
    /* the host must fit the caller's buffer with its NUL */
    assert_int_equal(server_parse_hostport("12345678:1", h, sizeof h, &p, err, sizeof err), -1);
    assert_int_equal(server_parse_hostport("1234567:1", h, sizeof h, &p, err, sizeof err), 0);
    assert_string_equal(h, "1234567");
}

static int v4_loopback(const char *a) {
    struct sockaddr_in in = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, a, &in.sin_addr), 1);
    return server_address_is_loopback((struct sockaddr *)&in);
}

static int v6_loopback(const char *a) {
    struct sockaddr_in6 in = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, a, &in.sin6_addr), 1);
    return server_address_is_loopback((struct sockaddr *)&in);
}

static void test_loopback(void **state) {
    (void)state;
    assert_true(v4_loopback("127.0.0.1"));
    assert_true(v4_loopback("127.255.0.9"));
    assert_false(v4_loopback("0.0.0.0"));
    assert_false(v4_loopback("10.0.0.1"));
    assert_false(v4_loopback("128.0.0.1"));
    assert_true(v6_loopback("::1"));
    assert_true(v6_loopback("::ffff:127.0.0.1"));
    assert_false(v6_loopback("::"));
    assert_false(v6_loopback("::ffff:10.0.0.1"));
    assert_false(v6_loopback("fe80::1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_empty_host_is_loopback),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
