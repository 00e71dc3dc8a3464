/* SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0) */
/*
 * podtrace TLS plaintext: uprobes + uretprobes on OpenSSL 3's SSL_write, SSL_write_ex,
 * SSL_read and SSL_read_ex (libssl.so.3, or any binary exporting them, e.g. Node.js).
 * #included at the end of podtrace.bpf.c: it reuses its cgroup filter (`targeted`), its
 * per-thread syscall state (`pt_task`), its fd -> socket walk and its event emission
 * (scratch, fill_common, copy_user, finish_data/submit), so a plaintext row is a data event
 * of the socket like any other, with PT_FLAG_TLS_PLAINTEXT and a `syscall` of
 * PT_TLS_NR_* (the function).
 *
 * Which socket an SSL object uses is found without reading any OpenSSL structure (no
 * offsets: the same code works for every OpenSSL 3.x and for static copies). The socket
 * programs of podtrace.bpf.c leave, in the thread's `pt_task` storage, the fd and struct
 * sock * of the last stream-socket call the thread made (`fd`, `sk`, written at syscall
 * entry). At SSL_* entry the thread's current `sk` is remembered; at return:
 *  1. if `sk` changed during the call, the call itself did I/O on that socket (the usual
 *     socket BIO: SSL_write writes the records underneath, SSL_read reads them): bind;
 *  2. else the SSL pointer's cached binding (ssl, tgid) -> (fd, sk) from an earlier call,
 *     if that fd still names that sock (a freed and reused SSL pointer or fd fails this);
 *  3. else the thread's last socket, if its fd still names it: the call was served from
 *     memory (data already buffered in the SSL object, or a memory BIO whose ciphertext
 *     the application moves itself: Node.js reads the socket, then calls SSL_read on the
 *     same thread);
 *  4. else the call is counted as unbound and its plaintext dropped.
 * The binding is cached per (SSL pointer, process). Calls of untargeted cgroups leave at
 * the filter, before any state is touched.
 */
#ifndef PODTRACE_TLS_BPF_H
#define PODTRACE_TLS_BPF_H

/* pt_event.flags: the payload is TLS plaintext read at a TLS library's API. */
#define PT_FLAG_TLS_PLAINTEXT 128

/* pt_event.syscall of plaintext events: the library function. */
#define PT_TLS_NR_SSL_WRITE 2000
#define PT_TLS_NR_SSL_WRITE_EX 2001
#define PT_TLS_NR_SSL_READ 2002
#define PT_TLS_NR_SSL_READ_EX 2003

/* Indexes of the per-CPU counter array `pt_tls_counters`. */
#define PT_TLS_CTR_CALLS 0        /* targeted SSL_* calls seen at entry */
#define PT_TLS_CTR_EVENTS 1       /* plaintext events written to the ring buffer */
#define PT_TLS_CTR_UNBOUND 2      /* calls with data whose socket could not be found */
#define PT_TLS_CTR_NESTED 3       /* entries while the thread was inside another SSL call */
#define PT_TLS_CTR_STATE_FULL 4   /* no per-thread storage could be had: call missed */
#define PT_TLS_CTR_BY_SYSCALL 5   /* bindings made by the call's own socket I/O (rule 1) */
#define PT_TLS_CTR_BY_CACHE 6     /* bindings taken from the SSL pointer's cache (rule 2) */
#define PT_TLS_CTR_BY_THREAD 7    /* bindings to the thread's last socket (rule 3) */
#define PT_TLS_CTR_STALE 8        /* cached bindings whose fd no longer names the sock */
#define PT_TLS_CTR_LOST 9         /* plaintext events lost: scratch slot busy */
#define PT_TLS_CTR_MAX 10

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_TLS_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pt_tls_counters SEC(".maps");

static __always_inline void tls_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&pt_tls_counters, &idx);
	if (v)
		*v += 1;
}

/* The thread's SSL call in flight (task-local storage, created at its first SSL call). */
struct pt_tls_call_t {
	__u64 ssl;     /* SSL *; 0 = no call in flight */
	__u64 buf;     /* plaintext buffer */
	__u64 out_len; /* size_t * of the _ex variants (bytes moved), else 0 */
	__u64 sk0;     /* the thread's last socket (pt_task.sk) at entry */
	__u64 ts;      /* bpf_ktime_get_boot_ns() at entry */
	__u32 nr;      /* PT_TLS_NR_* */
	__u32 depth;   /* nested SSL_* calls in flight inside this one */
	struct socket so; /* scratch for fd_stream_sk */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pt_tls_call_t);
} pt_tls_task SEC(".maps");

/* (SSL pointer, tgid) -> the socket the SSL object was last seen using. */
struct pt_tls_key_t {
	__u64 ssl;
	__u64 tgid;
};

struct pt_tls_bind_t {
	__u64 fd;
	__u64 sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pt_tls_key_t);
	__type(value, struct pt_tls_bind_t);
} pt_tls_binds SEC(".maps");

/* The thread's pt_task (socket programs' storage), without creating it. */
static __always_inline struct pt_args_t *tls_thread_sock(void)
{
	return bpf_task_storage_get(&pt_task, bpf_get_current_task_btf(), 0, 0);
}

static __always_inline void tls_enter(__u64 ssl, __u64 buf, __u64 out_len, __u32 nr)
{
	if (!ssl || !targeted())
		return;
	tls_count(PT_TLS_CTR_CALLS);
	struct pt_tls_call_t *c = bpf_task_storage_get(&pt_tls_task, bpf_get_current_task_btf(),
						       0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		tls_count(PT_TLS_CTR_STATE_FULL);
		return;
	}
	if (c->ssl) {
		/* SSL_* called from inside SSL_* (a callback): the outer call owns the state */
		tls_count(PT_TLS_CTR_NESTED);
		c->depth++;
		return;
	}
	struct pt_args_t *a = tls_thread_sock();
	c->sk0 = a ? a->sk : 0;
	c->ssl = ssl;
	c->buf = buf;
	c->out_len = out_len;
	c->nr = nr;
	c->depth = 0;
	c->ts = bpf_ktime_get_boot_ns();
}

/* Whether `fd` of the current process still names the stream socket `sk`. */
static __always_inline int tls_fd_is(struct pt_tls_call_t *c, __u64 fd, __u64 sk)
{
	return sk && (__u64)fd_stream_sk(fd, &c->so) == sk;
}

/* The socket of the finished call (rules 1-3 above); 0 if none. */
static __always_inline int tls_bind(struct pt_tls_call_t *c, struct pt_tls_bind_t *out)
{
	struct pt_tls_key_t key = {
		.ssl = c->ssl,
		.tgid = bpf_get_current_pid_tgid() >> 32,
	};
	struct pt_args_t *a = tls_thread_sock();
	__u64 fd = a ? a->fd : 0;
	__u64 sk = a ? a->sk : 0;
	if (sk && sk != c->sk0) {
		tls_count(PT_TLS_CTR_BY_SYSCALL);
	} else {
		struct pt_tls_bind_t *b = bpf_map_lookup_elem(&pt_tls_binds, &key);
		if (b) {
			__u64 bfd = b->fd, bsk = b->sk;
			if (tls_fd_is(c, bfd, bsk)) {
				tls_count(PT_TLS_CTR_BY_CACHE);
				out->fd = bfd;
				out->sk = bsk;
				return 1;
			}
			tls_count(PT_TLS_CTR_STALE);
			bpf_map_delete_elem(&pt_tls_binds, &key);
		}
		if (!tls_fd_is(c, fd, sk))
			return 0;
		tls_count(PT_TLS_CTR_BY_THREAD);
	}
	out->fd = fd;
	out->sk = sk;
	bpf_map_update_elem(&pt_tls_binds, &key, out, BPF_ANY);
	return 1;
}

/* finish_data + submit of podtrace.bpf.c for a plaintext event: truncation flags and
 * counters alike; the size is re-bounded behind a compiler barrier (in this program clang
 * otherwise reuses a copy of cap_len the verifier cannot bound). A plaintext stream lost
 * to a full ring is counted (bytes_dropped) but takes no GAP mark: that map is keyed by
 * the socket's ciphertext streams. */
static __always_inline void tls_submit(struct pt_scratch_t *s)
{
	__u64 cap = s->ev.cap_len;
	if (s->ev.ret > 0 && cap < (__u64)s->ev.ret) {
		s->ev.flags |= PT_FLAG_TRUNCATED;
		if (!(s->ev.flags & PT_FLAG_READ_ERROR)) {
			if (cap >= snaplen())
				s->ev.flags |= PT_FLAG_CUT_SNAPLEN;
			else
				s->ev.flags |= PT_FLAG_CUT_BEYOND;
		}
	}
	asm volatile("" : "+r"(cap));
	if (cap > PT_MAX_SNAPLEN)
		cap = PT_MAX_SNAPLEN;
	if (bpf_ringbuf_output(&pt_events, s, sizeof(struct pt_event) + cap,
			       wakeup_flag(sizeof(struct pt_event) + cap))) {
		count(PT_CTR_RINGBUF_FULL, 1);
		count(PT_CTR_BYTES_DROPPED, s->ev.ret);
		return;
	}
	count(PT_CTR_EVENTS, 1);
	count(PT_CTR_BYTES_CAPTURED, cap);
	tls_count(PT_TLS_CTR_EVENTS);
	if (s->ev.flags & PT_FLAG_TRUNCATED) {
		count(PT_CTR_TRUNCATED, 1);
		count(cut_counter(s->ev.flags), 1);
	}
}

static __always_inline void tls_exit(long ret)
{
	struct pt_tls_call_t *c =
		bpf_task_storage_get(&pt_tls_task, bpf_get_current_task_btf(), 0, 0);
	if (!c || !c->ssl)
		return;
	if (c->depth) {
		c->depth--;
		return;
	}
	__u32 nr = c->nr;
	__u64 n = 0;
	if (nr == PT_TLS_NR_SSL_WRITE_EX || nr == PT_TLS_NR_SSL_READ_EX) {
		if (ret == 1 && c->out_len)
			bpf_probe_read_user(&n, sizeof(n), (const void *)c->out_len);
	} else if (ret > 0) {
		n = ret;
	}
	struct pt_tls_bind_t b = {};
	int bound = tls_bind(c, &b);
	__u64 buf = c->buf;
	__u64 ts_enter = c->ts;
	c->ssl = 0;
	if (n == 0)
		return;
	if (!bound) {
		tls_count(PT_TLS_CTR_UNBOUND);
		return;
	}
	struct pt_scratch_t *s = scratch_get();
	if (!s) {
		tls_count(PT_TLS_CTR_LOST);
		return;
	}
	if (sk_fill(s, (struct sock *)b.sk)) {
		s->ev.fd = b.fd;
		fill_common(&s->ev, nr, PT_KIND_DATA);
		s->ev.flags = PT_FLAG_TLS_PLAINTEXT;
		s->ev.ret = n;
		if (nr == PT_TLS_NR_SSL_READ || nr == PT_TLS_NR_SSL_READ_EX)
			s->ev.direction = PT_DIR_INGRESS;
		else
			/* sent plaintext is stamped with the call's start: the peer may read it
			 * before this thread's return probe runs, and a request must not look
			 * sent after it was received */
			s->ev.ts_ns = ts_enter;
		copy_user(s, buf, n);
		tls_submit(s);
	}
	scratch_put(s);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(pt_tls_write, void *ssl, const void *buf)
{
	tls_enter((__u64)ssl, (__u64)buf, 0, PT_TLS_NR_SSL_WRITE);
	return 0;
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_KPROBE(pt_tls_write_ex, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	tls_enter((__u64)ssl, (__u64)buf, (__u64)written, PT_TLS_NR_SSL_WRITE_EX);
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(pt_tls_read, void *ssl, void *buf)
{
	tls_enter((__u64)ssl, (__u64)buf, 0, PT_TLS_NR_SSL_READ);
	return 0;
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_KPROBE(pt_tls_read_ex, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	tls_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, PT_TLS_NR_SSL_READ_EX);
	return 0;
}

/* One return program for all four: the thread's state says which call it was. */
SEC("uretprobe")
int BPF_KRETPROBE(pt_tls_ret, long ret)
{
	tls_exit((int)ret);
	return 0;
}

#endif
