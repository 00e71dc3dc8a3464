// TLS call cost for tools/bench/tls.sh: one process, a TLS server thread and a TLS client on
// loopback TCP (OpenSSL 3, libssl.so.3). After the handshake, N round trips of
// SSL_write(64 B) / SSL_read(64 B) each way (4 SSL calls per round trip); prints
// "ns_per_call <value>" (wall time / 4N), "cpu_ns_per_call <value>" (the process's user +
// system CPU time over the loop / 4N: less sensitive to a loaded machine's scheduling than
// the ping-pong's wall time; uprobe traps are system time) and "calls <4N>".
// Build: cc -O2 -o tls_bench tls_bench.c -lssl -lcrypto -lpthread
// Run:   tls_bench CERT KEY N
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long rounds;
static SSL_CTX *sctx;
static int lfd;

static void die(const char *what) {
  fprintf(stderr, "tls_bench: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static void full_read(SSL *s, char *buf, int n) {
  int got = 0;
  while (got < n) {
    int r = SSL_read(s, buf + got, n - got);
    if (r <= 0) die("SSL_read");
    got += r;
  }
}

static void *server(void *arg) {
  (void)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) die("accept");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL *s = SSL_new(sctx);
  SSL_set_fd(s, fd);
  if (SSL_accept(s) != 1) die("SSL_accept");
  char buf[64];
  for (long i = 0; i < rounds; i++) {
    full_read(s, buf, sizeof buf);
    if (SSL_write(s, buf, sizeof buf) != sizeof buf) die("server SSL_write");
  }
  SSL_shutdown(s);
  SSL_free(s);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) die("usage: tls_bench CERT KEY N");
  rounds = atol(argv[3]);
  sctx = SSL_CTX_new(TLS_server_method());
  if (!sctx || SSL_CTX_use_certificate_file(sctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1)
    die("server context");
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr *)&a, &alen))
    die("listen");
  pthread_t t;
  pthread_create(&t, NULL, server, NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  SSL *c = SSL_new(cctx);
  SSL_set_fd(c, fd);
  if (SSL_connect(c) != 1) die("SSL_connect");
  char msg[64], buf[64];
  memset(msg, 'x', sizeof msg);
  struct timespec t0, t1;
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < rounds; i++) {
    if (SSL_write(c, msg, sizeof msg) != sizeof msg) die("client SSL_write");
    full_read(c, buf, sizeof buf);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  pthread_join(t, NULL);
  getrusage(RUSAGE_SELF, &r1);
  double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
#define TV(a) ((a).tv_sec * 1e9 + (a).tv_usec * 1e3)
  double cpu = TV(r1.ru_utime) - TV(r0.ru_utime) + TV(r1.ru_stime) - TV(r0.ru_stime);
  printf("ns_per_call %.0f\ncpu_ns_per_call %.0f\ncalls %ld\n", ns / (4.0 * rounds),
         cpu / (4.0 * rounds), 4 * rounds);
  SSL_free(c);
  close(fd);
  return 0;
}
