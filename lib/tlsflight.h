/* tlsflight.h — one send for all a handshake step writes (tlsflight.c). Part of the TLS
 * module; tlssession.c is its only user. */
#pragma once

#include <openssl/ssl.h>

/* `ssl` reads and writes `fd` through a flight BIO. 0 or -ENOMEM (then `ssl`
 * has no BIO yet). */
int tls_flight_attach(SSL *ssl, int fd);
/* From here on what OpenSSL writes or flushes is kept, until tls_flight_send(). */
void tls_flight_hold(SSL *ssl);
/* Stop keeping and send what was kept: 0 when all of it is out (or `ssl` has no flight
 * BIO), -EAGAIN when the socket took only part of it (the rest waits for the next call),
 * or the socket's -errno. */
int tls_flight_send(SSL *ssl);
/* Once the handshake is done and all is sent: `ssl` reads and writes `fd` directly, so
 * the relay pays nothing for the handshake's BIO. */
void tls_flight_detach(SSL *ssl);
