// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
/*
 * podtrace socket capture.
 *
 * Three interchangeable hook sets share all the logic below (the loader picks one):
 * - socket tracepoints `sock:sock_send_length` / `sock_recv_length` /
 *   `inet_sock_set_state` / `tcp:tcp_destroy_sock` (default where present; see their
 *   section below): no syscall hook at all;
 * - per-syscall tracepoints `syscalls/sys_enter_<call>` / `sys_exit_<call>`: the
 *   programs run for the socket syscalls podtrace follows only, so any other syscall runs
 *   no podtrace program at all;
 * - `tp_btf/sys_enter` + `tp_btf/sys_exit` (fallback where the per-syscall tracepoints are
 *   missing): they run for every syscall and test the syscall number first.
 *
 * The two syscall sets: enter: the cgroup filter first (untargeted processes leave right there), then the
 * arguments go into the thread's task-local storage (no hash map, no capacity bound).
 * close() is handled at entry, while the fd still names the socket.
 * Exit: take the saved arguments, resolve fd -> file -> socket -> sock (four kernel reads;
 * only AF_INET/AF_INET6 stream sockets pass), and emit one event: the header of event.h
 * plus up to `snaplen` payload bytes copied from the user buffer or from every iovec (a
 * bpf_loop over up to UIO_MAXIOV iovecs, and over every message of sendmmsg/recvmmsg),
 * through a per-CPU scratch, with variable-size bpf_ringbuf_output(). Every event whose
 * payload is shorter than the syscall's byte count carries PT_FLAG_TRUNCATED plus exactly
 * one reason flag, and is counted per reason. Counters live in a per-CPU array.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

/* x86_64 syscall numbers */
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288
#define NR_recvmmsg 299
#define NR_sendmmsg 307

/* Wake the consumer once per this much data written per CPU (it also polls every ~10 ms):
 * a power of two, see wakeup_flag(). */
#define WAKEUP_SHIFT 18
#define WAKEUP_BYTES (1 << WAKEUP_SHIFT)

/* Set by the loader before loading (aya: EbpfLoader::set_global). */
const volatile __u32 pt_snaplen = PT_MAX_SNAPLEN;

/* cgroup v2 ids of the targeted cgroups (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} pt_cgroups SEC(".maps");

/* Direct-mapped front of pt_cgroups, indexed by `cgroup id & (PT_CG_SLOTS - 1)`: 0 = no
 * targeted id in this slot, the id itself = the only one, PT_CG_SLOT_MANY = several (then
 * the hash map decides). An array lookup is inlined by the verifier, so the common
 * untargeted case costs no helper call beyond reading the cgroup id. Kept by user space. */
#define PT_CG_SLOTS 4096
#define PT_CG_SLOT_MANY ((__u64)-1)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_CG_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} pt_cg_slots SEC(".maps");

/* Arguments of the thread's in-flight targeted syscall (task-local storage: created at the
 * thread's first targeted socket call, freed with the thread). */
struct pt_args_t {
	__u64 id; /* syscall number + 1 while a call is in flight, 0 otherwise */
	__u64 fd;
	__u64 buf; /* buffer, iovec array, msghdr or mmsghdr array */
	__u64 len; /* count, iovcnt or vlen */
	__u64 sk;  /* the fd's struct sock *, resolved at entry (not for accept) */
	struct socket so; /* copy of the fd's struct socket while resolving it */
	/* socket tracepoint set: the message of a sendmmsg/recvmmsg in progress */
	__u64 mm_id;   /* syscall number + 1 while more messages are expected, else 0 */
	__u64 mm_buf;  /* its mmsghdr array */
	__u32 mm_vlen; /* its message count */
	__u32 mm_next; /* index of the message the next socket call moves */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pt_args_t);
} pt_task SEC(".maps");

/* Iovecs read from user memory with one copy (a power of two): one helper call per
 * PT_IOV_BATCH iovecs instead of one per iovec (a writev of a header and a body, as nginx
 * sends its responses, had cost two reads of iovecs and two of their bytes). */
#define PT_IOV_BATCH 8

/* Header + payload scratch, one slot per CPU. Twice the snaplen so the verifier can prove
 * `offset + length` stays inside for every iovec copy. */
struct pt_scratch_t {
	struct pt_event ev;
	__u8 data[2 * PT_MAX_SNAPLEN];
	/* copies of the kernel's socket structures while resolving an fd */
	struct socket so;
	struct sock_common skc;
	/* the iovecs of the call being copied, read PT_IOV_BATCH at a time (see iov_step) */
	struct iovec iov[PT_IOV_BATCH];
	/* Set while a program uses the slot. Programs run with migration disabled but can be
	 * preempted (PREEMPT kernels); a program of another task on the same CPU then finds
	 * the slot busy and drops its event (counted) instead of corrupting this one. */
	__u32 busy;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512); /* resized to the number of possible CPUs by the loader */
	__type(key, __u32);
	__type(value, struct pt_scratch_t);
} pt_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pt_counters SEC(".maps");

/* (sock | direction) of streams that lost a data event; the next one is flagged GAP.
 * `pt_gap_any[0]` becomes 1 on the first loss so that, until then, nothing is looked up. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} pt_gaps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pt_gap_any SEC(".maps");

/* The write check of a targeted TCP connection (see PT_FLAG_WSEQ), by its sock: tcp
 * write_seq at its open, and at the FIN it queued — the end of its data — until its
 * destruction. LRU: a connection whose entry gave way (more than max_entries open at once)
 * is not checked, like one whose open was not seen. The ports tell a later socket at the
 * same address from the one whose destruction was not seen (its cgroup was no longer
 * targeted then). */
struct pt_wseq {
	__u32 start; /* write_seq at the open */
	__u32 end;   /* write_seq when the FIN was queued (the FIN not counted) */
	__u32 fin;   /* a FIN was queued: `end` is set */
	__u32 ports; /* lport << 16 | rport at the open */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct pt_wseq);
} pt_wseqs SEC(".maps");

/* Bytes this CPU has written to the ring buffer (see wakeup_flag()). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pt_wake SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024); /* resized by the loader */
} pt_events SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&pt_counters, &idx);
	if (v)
		*v += n;
}

static __always_inline int followed(__u64 id)
{
	switch (id) {
	case NR_read: case NR_write: case NR_close: case NR_readv: case NR_writev:
	case NR_sendfile: case NR_connect: case NR_accept: case NR_sendto:
	case NR_recvfrom: case NR_sendmsg: case NR_recvmsg: case NR_accept4:
	case NR_recvmmsg: case NR_sendmmsg:
		return 1;
	}
	return 0;
}

/* Whether a cgroup id is targeted: the direct-mapped slot first, the hash map only when
 * several targeted ids share the slot. */
static __always_inline int targeted_id(__u64 cg)
{
	__u32 slot = cg & (PT_CG_SLOTS - 1);
	__u64 *v = bpf_map_lookup_elem(&pt_cg_slots, &slot);
	if (!v || *v == 0)
		return 0;
	if (*v == cg)
		return 1;
	if (*v != PT_CG_SLOT_MANY)
		return 0;
	return bpf_map_lookup_elem(&pt_cgroups, &cg) != 0;
}

/* Whether the current task's cgroup is targeted. */
static __always_inline int targeted(void)
{
	return targeted_id(bpf_get_current_cgroup_id());
}

static __always_inline __u32 snaplen(void)
{
	__u32 limit = pt_snaplen;
	return limit > PT_MAX_SNAPLEN ? PT_MAX_SNAPLEN : limit;
}

/* Family, ports and addresses of an AF_INET/AF_INET6 sock from its `sock_common` `c` (a copy,
 * or the sock itself when it is a trusted BTF pointer) into the event; 0 for other families.
 * `skv` is the sock's address (the event's socket identity). */
static __always_inline int sk_fields(struct pt_event *ev, const struct sock_common *c, __u64 skv)
{
	__u16 family = c->skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	ev->family = family;
	__portpair ports = c->skc_portpair;
	ev->rport = bpf_ntohs((__u16)ports); /* skc_dport: low half, network order */
	ev->lport = (__u16)(ports >> 16);     /* skc_num: high half, host order */
	/* once a connection reached CLOSE (e.g. TIME_WAIT, while its application still reads
	 * the queued bytes) its port is released (inet_num = 0); the source port it used is
	 * still in inet_sport */
	if (!ev->lport)
		ev->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)skv, inet_sport));
	if (family == AF_INET) {
		__builtin_memset(ev->laddr, 0, 16);
		__builtin_memset(ev->raddr, 0, 16);
		__addrpair addrs = c->skc_addrpair;
		__u32 r = (__u32)addrs;         /* skc_daddr */
		__u32 l = (__u32)(addrs >> 32); /* skc_rcv_saddr */
		__builtin_memcpy(ev->laddr, &l, 4);
		__builtin_memcpy(ev->raddr, &r, 4);
	} else {
		__builtin_memcpy(ev->laddr, &c->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(ev->raddr, &c->skc_v6_daddr, 16);
	}
	ev->sock = skv;
	return 1;
}

/* sk_fields of a sock pointer as the syscall programs have it (untrusted): its
 * `sock_common` copied whole into `skc` with one read first. */
static __always_inline int sk_fill_ev(struct pt_event *ev, struct sock_common *skc,
				      struct sock *sk)
{
	if (bpf_probe_read_kernel(skc, sizeof(*skc), sk))
		return 0;
	return sk_fields(ev, skc, (__u64)sk);
}

/* sk_fill_ev into the scratch slot's event. */
static __always_inline int sk_fill(struct pt_scratch_t *s, struct sock *sk)
{
	return sk_fill_ev(&s->ev, &s->skc, sk);
}

/* sk_fields of a trusted (BTF-typed) sock, as the tp_btf socket programs get it: direct
 * loads of the few fields, no helper call copying the whole sock_common. */
static __always_inline int sk_fill_btf(struct pt_event *ev, struct sock *sk, __u64 skv)
{
	return sk_fields(ev, &sk->__sk_common, skv);
}

/* The thread's `struct file *` of an fd (0 if none). */
static __always_inline struct file *fd_file(__u64 fd)
{
	/* Direct (BTF-typed) loads from the trusted current task: no helper calls. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	if (!files)
		return 0;
	struct fdtable *fdt = files->fdt;
	if (!fdt)
		return 0;
	if (fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return 0;
	return file;
}

/* The struct sock * of a stream socket fd, else NULL; `so` receives a copy of its struct
 * socket. Three kernel reads: fd table slot, file->private_data, the struct socket (its
 * back pointer to the file proves the file is a socket). */
static __always_inline struct sock *fd_stream_sk(__u64 fd, struct socket *so)
{
	struct file *file = fd_file(fd);
	if (!file)
		return 0;
	void *priv = 0;
	if (bpf_core_read(&priv, sizeof(priv), &file->private_data) || !priv)
		return 0;
	if (bpf_probe_read_kernel(so, sizeof(*so), priv))
		return 0;
	if ((void *)so->file != (void *)file || so->type != SOCK_STREAM)
		return 0;
	return so->sk;
}

/* fd -> struct sock * of an AF_INET/AF_INET6 stream socket, else NULL; fills the address
 * part of the event (a fourth read: sock_common). */
static __always_inline struct sock *fd_sock(__u64 fd, struct pt_scratch_t *s)
{
	struct sock *sk = fd_stream_sk(fd, &s->so);
	if (!sk || !sk_fill(s, sk))
		return 0;
	s->ev.fd = fd;
	return sk;
}

/* The struct sock * of a stream socket fd, resolved at syscall entry into the thread's
 * storage, else 0. The call holds a reference on the file until it returns, so the sock
 * stays valid until the exit even if another thread closes the fd meanwhile (resolving at
 * exit would miss such calls). */
static __always_inline __u64 fd_sk_enter(__u64 fd, struct pt_args_t *a)
{
	return (__u64)fd_stream_sk(fd, &a->so);
}

static __always_inline struct pt_scratch_t *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct pt_scratch_t *s = bpf_map_lookup_elem(&pt_scratch, &cpu);
	if (!s)
		return 0;
	if (s->busy) {
		count(PT_CTR_SCRATCH_BUSY, 1);
		return 0;
	}
	s->busy = 1;
	return s;
}

static __always_inline void scratch_put(struct pt_scratch_t *s)
{
	s->busy = 0;
}

/* The cgroup v2 id of a task: what bpf_get_current_cgroup_id() returns for the current
 * task (its default-hierarchy cgroup's kernfs id), by direct BTF loads instead of a helper
 * call. */
static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	return task->cgroups->dfl_cgrp->kn->id;
}

/*
 * The event's common fields; `cg` is the task's cgroup id (the cgroup filter read it).
 * Process id, thread id and name are direct (BTF) loads from the current task: the values
 * bpf_get_current_pid_tgid() and bpf_get_current_comm() return (user space reads the name
 * up to its first NUL, as before), without their two helper calls: on kernels built with
 * return-thunk mitigations each helper's call and return costs more than the loads.
 */
static __always_inline void fill_common_task(struct pt_event *ev, __u64 id, __u32 kind, __u64 cg,
					     struct task_struct *task)
{
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cg;
	ev->pid = task->tgid;
	ev->tid = task->pid;
	ev->kind = kind;
	ev->syscall = id;
	ev->cap_len = 0;
	ev->flags = 0;
	ev->role = PT_ROLE_UNKNOWN;
	ev->direction = PT_DIR_EGRESS;
	ev->cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(ev->comm, task->comm, sizeof(ev->comm));
}

static __always_inline void fill_common(struct pt_event *ev, __u64 id, __u32 kind)
{
	struct task_struct *task = bpf_get_current_task_btf();
	fill_common_task(ev, id, kind, task_cgroup_id(task), task);
}

/*
 * The wakeup of the consumer for a record of `size` bytes: forced when the record takes the
 * bytes this CPU has written across a multiple of WAKEUP_BYTES, none otherwise. So the
 * consumer is woken about once per 256 KiB written (by all CPUs together), not once per
 * record, and a program reads no shared cache line to decide it. Every forced wakeup queues
 * the ring's irq_work, a self-IPI (an APIC write: a VM exit under a hypervisor) that costs
 * more than the rest of the record; forcing every record while more than 256 KiB were
 * pending (bpf_ringbuf_query) did that ~6,000 times per 400,000 records of two busy writers,
 * and the query itself read the consumer's position, a cache line the consumer writes. Data
 * below the mark waits at most for the consumer's own ~10 ms poll.
 */
static __always_inline __u64 wakeup_flag(__u64 size)
{
	__u32 zero = 0;
	__u64 *written = bpf_map_lookup_elem(&pt_wake, &zero);
	if (!written)
		return BPF_RB_NO_WAKEUP;
	__u64 before = *written;
	/* + the ring's 8-byte record header */
	__u64 after = before + size + 8;
	*written = after;
	return (before >> WAKEUP_SHIFT) != (after >> WAKEUP_SHIFT) ? BPF_RB_FORCE_WAKEUP
								    : BPF_RB_NO_WAKEUP;
}

/* The counter of a truncation reason flag. */
static __always_inline __u32 cut_counter(__u32 flags)
{
	if (flags & PT_FLAG_READ_ERROR)
		return PT_CTR_TRUNC_READ_ERROR;
	if (flags & PT_FLAG_CUT_SNAPLEN)
		return PT_CTR_TRUNC_SNAPLEN;
	if (flags & PT_FLAG_CUT_NOT_USER)
		return PT_CTR_TRUNC_NOT_USER;
	if (flags & PT_FLAG_CUT_IOV_LIMIT)
		return PT_CTR_TRUNC_IOV_LIMIT;
	return PT_CTR_TRUNC_BEYOND;
}

/* Marks a drop on `gap_key` (socket | direction): the socket's next event in that direction
 * (or its close) carries PT_FLAG_GAP. */
static __always_inline void mark_gap(__u64 gap_key)
{
	__u8 one = 1;
	__u32 zero = 0;
	bpf_map_update_elem(&pt_gaps, &gap_key, &one, BPF_ANY);
	__u64 *any = bpf_map_lookup_elem(&pt_gap_any, &zero);
	if (any)
		*any = 1;
}

/* Whether a drop left the gap mark `gap_key` (socket | direction), which it removes; one
 * array read while no drop ever happened. */
static __always_inline int take_gap(__u64 gap_key)
{
	__u32 zero = 0;
	__u64 *any = bpf_map_lookup_elem(&pt_gap_any, &zero);
	if (!any || !*any || !bpf_map_lookup_elem(&pt_gaps, &gap_key))
		return 0;
	bpf_map_delete_elem(&pt_gaps, &gap_key);
	return 1;
}

/* Writes header + cap_len payload bytes of the scratch to the ring buffer. */
static __always_inline void submit(struct pt_scratch_t *s)
{
	__u32 cap = s->ev.cap_len;
	if (cap > PT_MAX_SNAPLEN)
		cap = PT_MAX_SNAPLEN;
	__u64 size = sizeof(struct pt_event) + cap;
	__u64 gap_key = s->ev.sock | s->ev.direction;
	if (s->ev.kind == PT_KIND_DATA && take_gap(gap_key))
		s->ev.flags |= PT_FLAG_GAP;
	if (bpf_ringbuf_output(&pt_events, s, size, wakeup_flag(size))) {
		count(PT_CTR_RINGBUF_FULL, 1);
		if (s->ev.kind == PT_KIND_DATA) {
			if (s->ev.ret > 0)
				count(PT_CTR_BYTES_DROPPED, s->ev.ret);
			mark_gap(gap_key);
		}
		return;
	}
	count(PT_CTR_EVENTS, 1);
	count(PT_CTR_BYTES_CAPTURED, cap);
	if (s->ev.flags & PT_FLAG_TRUNCATED) {
		count(PT_CTR_TRUNCATED, 1);
		count(cut_counter(s->ev.flags), 1);
	}
}

/* Appends up to `want` bytes from user address `src` at the current cap_len; stops at the
 * snaplen. Returns 0 when the caller may go on copying, 1 when it must stop (snaplen
 * reached or the copy failed: the payload stays a prefix of what the call moved). */
static __always_inline int copy_user(struct pt_scratch_t *s, __u64 src, __u64 want)
{
	__u32 off = s->ev.cap_len;
	__u32 limit = snaplen();
	if (off >= limit)
		return 1;
	if (want == 0)
		return 0;
	__u64 n = want;
	if (n > limit - off)
		n = limit - off;
	if (n > PT_MAX_SNAPLEN)
		n = PT_MAX_SNAPLEN;
	off &= (PT_MAX_SNAPLEN - 1);
	if (bpf_probe_read_user(&s->data[off], n, (const void *)src)) {
		s->ev.flags |= PT_FLAG_READ_ERROR;
		count(PT_CTR_READ_ERRORS, 1);
		return 1;
	}
	s->ev.cap_len = off + n;
	return off + n >= limit;
}

/* State of one bpf_loop walk over an iovec array. */
struct iov_walk {
	__u64 iov;  /* user address of the iovec array */
	__u64 cnt;  /* iovecs in it */
	__u64 left; /* bytes of the call not yet attributed to an iovec */
	__u32 cpu;  /* the scratch slot (the walk runs on this CPU) */
	__u32 pad;
};

static long iov_step(__u64 i, void *ctx)
{
	struct iov_walk *w = ctx;
	if (i >= w->cnt || w->left == 0)
		return 1;
	__u32 cpu = w->cpu;
	struct pt_scratch_t *s = bpf_map_lookup_elem(&pt_scratch, &cpu);
	if (!s)
		return 1;
	__u32 k = i & (PT_IOV_BATCH - 1);
	if (k == 0) {
		/* the next PT_IOV_BATCH iovecs (or the rest of the array) in one read */
		__u64 n = w->cnt - i;
		if (n > PT_IOV_BATCH)
			n = PT_IOV_BATCH;
		if (bpf_probe_read_user(s->iov, n * sizeof(struct iovec),
					(const void *)(w->iov + i * sizeof(struct iovec)))) {
			s->ev.flags |= PT_FLAG_READ_ERROR;
			count(PT_CTR_READ_ERRORS, 1);
			return 1;
		}
	}
	struct iovec *v = &s->iov[k];
	__u64 len = v->iov_len;
	__u64 n = len < w->left ? len : w->left;
	w->left -= n;
	return copy_user(s, (__u64)v->iov_base, n);
}

/* Copies the first `total` bytes spread over an iovec array (every iovec, up to
 * PT_MAX_IOV = UIO_MAXIOV). */
static __always_inline void copy_iov(struct pt_scratch_t *s, __u64 iov_addr, __u64 iovcnt,
				     __u64 total)
{
	struct iov_walk w = {
		.iov = iov_addr,
		.cnt = iovcnt,
		.left = total,
		.cpu = bpf_get_smp_processor_id(),
	};
	__u32 n = iovcnt > PT_MAX_IOV ? PT_MAX_IOV : iovcnt;
	if (iovcnt > PT_MAX_IOV)
		s->ev.flags |= PT_FLAG_CUT_IOV_LIMIT;
	bpf_loop(n, iov_step, &w, 0);
}

/* Sets PT_FLAG_TRUNCATED and one reason flag when the payload is shorter than ret. */
static __always_inline void finish_data(struct pt_scratch_t *s)
{
	if (s->ev.ret > 0 && (__u64)s->ev.cap_len < (__u64)s->ev.ret) {
		s->ev.flags |= PT_FLAG_TRUNCATED;
		if (s->ev.flags & (PT_FLAG_READ_ERROR | PT_FLAG_CUT_NOT_USER | PT_FLAG_CUT_IOV_LIMIT)) {
			/* reason already set */
		} else if (s->ev.cap_len >= snaplen()) {
			s->ev.flags |= PT_FLAG_CUT_SNAPLEN;
		} else {
			s->ev.flags |= PT_FLAG_CUT_BEYOND;
		}
	}
	submit(s);
}

/* State of the bpf_loop over the messages of sendmmsg/recvmmsg. */
struct mmsg_walk {
	__u64 msgs; /* user address of the mmsghdr array */
	__u32 cpu;
	__u8 dir;
};

static long mmsg_step(__u64 m, void *ctx)
{
	struct mmsg_walk *w = ctx;
	__u32 cpu = w->cpu;
	struct pt_scratch_t *s = bpf_map_lookup_elem(&pt_scratch, &cpu);
	if (!s)
		return 1;
	struct mmsghdr h = {};
	if (bpf_probe_read_user(&h, sizeof(h), (const void *)(w->msgs + m * sizeof(struct mmsghdr)))) {
		count(PT_CTR_READ_ERRORS, 1);
		return 1;
	}
	s->ev.direction = w->dir;
	s->ev.ret = h.msg_len;
	s->ev.cap_len = 0;
	s->ev.flags = 0;
	copy_iov(s, (__u64)h.msg_hdr.msg_iov, h.msg_hdr.msg_iovlen, h.msg_len);
	finish_data(s);
	return 0;
}

static __always_inline void on_mmsg(struct pt_scratch_t *s, struct pt_args_t *a, long ret,
				    __u8 dir)
{
	struct mmsg_walk w = {
		.msgs = a->buf,
		.cpu = bpf_get_smp_processor_id(),
		.dir = dir,
	};
	/* ret <= vlen <= UIO_MAXIOV: the kernel handles no more messages per call */
	__u32 n = ret > PT_MAX_IOV ? PT_MAX_IOV : ret;
	bpf_loop(n, mmsg_step, &w, 0);
}

/* Accounts for a data event that could not get a scratch slot: `bytes` count as dropped
 * and the stream (sock, dir) gets the GAP flag, as for a full ring buffer. */
static __always_inline void lost_data(__u64 bytes, __u64 sk, __u8 dir)
{
	count(PT_CTR_BYTES_DROPPED, bytes);
	mark_gap(sk | dir);
}

/* lost_data for the event of a finished syscall of the syscall sets. */
static __always_inline void lost_exit(__u64 id, long ret, __u64 sk)
{
	if (id == NR_connect || id == NR_accept || id == NR_accept4 || !sk)
		return;
	__u8 dir = (id == NR_read || id == NR_readv || id == NR_recvfrom || id == NR_recvmsg ||
		    id == NR_recvmmsg) ? PT_DIR_INGRESS : PT_DIR_EGRESS;
	/* the ret of sendmmsg/recvmmsg is a message count */
	lost_data(id == NR_sendmmsg || id == NR_recvmmsg ? 0 : ret, sk, dir);
}

/* Emits the event of a finished syscall (scratch slot held by the caller). */
static __always_inline void emit_exit(struct pt_scratch_t *s, __u64 id, long ret,
				      struct pt_args_t *a)
{
	if (id == NR_accept || id == NR_accept4) {
		if (!fd_sock(ret, s))
			return;
		fill_common(&s->ev, id, PT_KIND_OPEN);
		s->ev.role = PT_ROLE_SERVER;
		s->ev.ret = ret;
		submit(s);
		return;
	}
	if (!sk_fill(s, (struct sock *)a->sk))
		return;
	s->ev.fd = a->fd;
	if (id == NR_connect) {
		fill_common(&s->ev, id, PT_KIND_OPEN);
		s->ev.role = PT_ROLE_CLIENT;
		s->ev.ret = ret;
		submit(s);
		return;
	}

	fill_common(&s->ev, id, PT_KIND_DATA);
	s->ev.ret = ret;
	switch (id) {
	case NR_write:
	case NR_sendto:
		copy_user(s, a->buf, ret);
		break;
	case NR_read:
	case NR_recvfrom:
		s->ev.direction = PT_DIR_INGRESS;
		copy_user(s, a->buf, ret);
		break;
	case NR_writev:
		copy_iov(s, a->buf, a->len, ret);
		break;
	case NR_readv:
		s->ev.direction = PT_DIR_INGRESS;
		copy_iov(s, a->buf, a->len, ret);
		break;
	case NR_sendmsg:
	case NR_recvmsg: {
		struct user_msghdr h = {};
		if (id == NR_recvmsg)
			s->ev.direction = PT_DIR_INGRESS;
		if (bpf_probe_read_user(&h, sizeof(h), (void *)a->buf)) {
			s->ev.flags |= PT_FLAG_READ_ERROR;
			count(PT_CTR_READ_ERRORS, 1);
		} else {
			copy_iov(s, (__u64)h.msg_iov, h.msg_iovlen, ret);
		}
		break;
	}
	case NR_sendmmsg:
		on_mmsg(s, a, ret, PT_DIR_EGRESS);
		return;
	case NR_recvmmsg:
		on_mmsg(s, a, ret, PT_DIR_INGRESS);
		return;
	case NR_sendfile:
		/* the bytes come from another file: no user buffer to copy */
		s->ev.flags |= PT_FLAG_CUT_NOT_USER;
		break;
	}
	finish_data(s);
}

/* Syscall entry of a followed socket call: the cgroup filter first; then, for a stream
 * socket fd, the arguments and the sock into the thread's storage (close: the event now,
 * while the fd is still open; accept: the socket is the returned fd, resolved at exit). */
static __always_inline void on_enter(__u64 id, __u64 fd, __u64 buf, __u64 len)
{
	if (!targeted())
		return;
	count(PT_CTR_SYSCALLS, 1);
	if (id == NR_close) {
		struct pt_scratch_t *s = scratch_get();
		if (!s)
			return;
		if (fd_sock(fd, s)) {
			fill_common(&s->ev, id, PT_KIND_CLOSE);
			s->ev.ret = 0;
			submit(s);
		}
		scratch_put(s);
		return;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_args_t *a =
		bpf_task_storage_get(&pt_task, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a) {
		count(PT_CTR_ARGS_FULL, 1);
		return;
	}
	a->id = 0;
	__u64 sk = 0;
	if (id != NR_accept && id != NR_accept4) {
		sk = fd_sk_enter(fd, a);
		if (!sk)
			return; /* not a stream socket: nothing to do at exit */
	}
	a->sk = sk;
	a->fd = fd;
	a->buf = buf;
	a->len = len;
	a->id = id + 1;
}

/* Syscall exit of a followed socket call (not close). */
static __always_inline void on_exit(__u64 id, long ret)
{
	/* the cgroup filter first here too: cheaper than the task-storage lookup for the
	 * untargeted calls, which are most of them */
	if (!targeted())
		return;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_args_t *a = bpf_task_storage_get(&pt_task, task, 0, 0);
	if (!a || a->id == 0)
		return;
	__u64 want = a->id;
	a->id = 0;
	if (want != id + 1)
		return;

	if (id == NR_accept || id == NR_accept4) {
		if (ret < 0)
			return;
	} else if (id == NR_connect) {
		if (ret != 0 && ret != -EINPROGRESS)
			return;
	} else if (ret <= 0) {
		return;
	}

	struct pt_scratch_t *s = scratch_get();
	if (!s) {
		lost_exit(id, ret, a->sk);
		return;
	}
	/* `a` is the thread's own storage: nothing else writes it before this thread's next
	 * syscall */
	emit_exit(s, id, ret, a);
	scratch_put(s);
}

/* --- per-syscall tracepoints (default): attached to syscalls/sys_enter_<call> and
 * syscalls/sys_exit_<call> of each followed call; the record layout is that of every
 * syscall trace event (tracefs events/syscalls/<name>/format). */
struct pt_tp_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct pt_tp_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

/* The kernel refuses to attach a program that reads past the fields of an event (the
 * context of sys_enter_close has one argument, sys_enter_read three): one enter program
 * per argument count read. */
SEC("tracepoint/syscalls/sys_enter")
int pt_tp_enter(struct pt_tp_enter_ctx *ctx)
{
	/* (fd, buf, len) of every followed call with at least three arguments */
	on_enter((__u32)ctx->nr, ctx->args[0], ctx->args[1], ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int pt_tp_close(struct pt_tp_enter_ctx *ctx)
{
	on_enter(NR_close, ctx->args[0], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendfile64")
int pt_tp_sendfile(struct pt_tp_enter_ctx *ctx)
{
	/* sendfile64(out_fd, in_fd, offset, count) */
	on_enter(NR_sendfile, ctx->args[0], ctx->args[1], ctx->args[3]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit")
int pt_tp_exit(struct pt_tp_exit_ctx *ctx)
{
	on_exit((__u32)ctx->nr, ctx->ret);
	return 0;
}

/* --- fallback: tp_btf on every syscall, the syscall number tested first. */
SEC("tp_btf/sys_enter")
int BPF_PROG(pt_sys_enter, struct pt_regs *regs, long id)
{
	if (!followed(id))
		return 0;
	on_enter(id, regs->di, regs->si, id == NR_sendfile ? regs->r10 : regs->dx);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pt_sys_exit, struct pt_regs *regs, long ret)
{
	__u64 id = regs->orig_ax;
	if (!followed(id) || id == NR_close)
		return 0;
	on_exit(id, ret);
	return 0;
}

/*
 * --- socket tracepoints (default where the kernel has them, 6.3+): `tp_btf` on
 * sock:sock_send_length and sock:sock_recv_length (in sock_sendmsg/sock_recvmsg, after the
 * protocol moved the bytes; arguments: the struct sock *, the result, the flags) for data,
 * on sock:inet_sock_set_state for opens and tcp:tcp_destroy_sock for closes. No syscall
 * hook at all: a syscall that is not a socket call runs no podtrace program and does not
 * enter the kernel's syscall-tracing slow path; an untargeted socket call runs one short
 * program (the cgroup filter). The socket comes with the tracepoint (no fd -> file -> socket walk); the user
 * buffer comes from the syscall's own registers (bpf_task_pt_regs: orig_ax names the
 * call, di/si/dx its fd, buffer or msghdr, length or count), copied exactly as the syscall
 * sets copy it at exit: the bytes are still in the caller's memory, which cannot change
 * before the call returns.
 */
#define PT_TCP_ESTABLISHED 1
#define PT_TCP_SYN_SENT 2
#define PT_TCP_SYN_RECV 3
#define PT_TCP_FIN_WAIT1 4
#define PT_TCP_CLOSE 7
#define PT_TCP_LAST_ACK 9
#define PT_TCP_LISTEN 10
#define PT_IPPROTO_TCP 6
#define PT_MSG_PEEK 2
#define PT_MSG_ERRQUEUE 0x2000
#define PT_PF_KTHREAD 0x00200000
#define PT_PF_IO_WORKER 0x00000010

/* The message index of a sendmmsg/recvmmsg socket call. The kernel calls sock_sendmsg /
 * sock_recvmsg once per message, in order, and stops early only on an error (seen here as
 * ret < 0) or a short message; the thread's storage remembers the next index while the
 * call may go on. (A call that stops for a reason not seen here — recvmmsg's timeout, a
 * fault writing msg_len — leaves a next index that the thread's next mmsg call on the same
 * array would take; such a call re-starts at 0 when its array or count differ.) */
static __always_inline __u32 mmsg_index(struct pt_args_t *a, __u64 id, __u64 buf, __u64 vlen,
					long ret)
{
	__u32 idx = 0;
	if (a->mm_id == id + 1 && a->mm_buf == buf && a->mm_vlen == vlen && a->mm_next < vlen)
		idx = a->mm_next;
	if (ret <= 0 || idx + 1 >= vlen) {
		a->mm_id = 0;
	} else {
		a->mm_id = id + 1;
		a->mm_buf = buf;
		a->mm_vlen = vlen;
		a->mm_next = idx + 1;
	}
	return idx;
}

/* A kernel pointer as a plain number: the verifier refuses arithmetic (the gap key's `|`)
 * on the typed pointers tp_btf programs get, so the value is copied through the stack. */
static __always_inline __u64 ptr_scalar(const void *p)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

/* A kernel pointer as a plain number without a helper call: stored into map memory `slot`
 * (privileged programs may store pointers into maps) and loaded back, which the verifier
 * types as a scalar. The compiler barrier keeps the load from being folded into the
 * pointer register. */
static __always_inline __u64 stored_scalar(__u64 *slot, const void *p)
{
	*slot = (__u64)p;
	asm volatile("" ::: "memory");
	return *(volatile __u64 *)slot;
}

/* One socket call of a targeted task: an event with the bytes it moved. */
static __always_inline void sock_data(struct sock *sk, long ret, int flags, __u8 dir)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 cg = task_cgroup_id(task);
	if (!targeted_id(cg))
		return;
	count(PT_CTR_SYSCALLS, 1);
	struct socket *so = sk->sk_socket;
	if (!so || !so->file || sk->sk_type != SOCK_STREAM)
		return; /* a kernel socket, or not a stream */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return;
	__u64 id = regs->orig_ax;
	__u64 fd = regs->di;
	__u64 arg = regs->si;
	__u64 cnt = regs->dx;
	if (task->flags & (PT_PF_KTHREAD | PT_PF_IO_WORKER)) {
		/* an io_uring worker (or a kernel thread) of a targeted cgroup moved the bytes:
		 * its registers are not a syscall's; the event says how many, flagged
		 * not-in-user-memory */
		id = PT_NR_KERNEL_THREAD;
		fd = 0;
	}
	if (ret <= 0 && id != NR_sendmmsg && id != NR_recvmmsg)
		return; /* nothing moved (EAGAIN, end of stream, an error): the thread's last
			 * socket stays the last one that moved bytes */

	/* the thread's last socket (TLS binds SSL objects to it) and the mmsg position */
	struct pt_args_t *a =
		bpf_task_storage_get(&pt_task, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u64 skv;
	if (a) {
		a->fd = fd;
		skv = stored_scalar(&a->sk, sk);
	} else {
		count(PT_CTR_ARGS_FULL, 1);
		skv = ptr_scalar(sk);
	}
	__u32 msg = 0;
	if (id == NR_sendmmsg || id == NR_recvmmsg) {
		if (!a)
			return;
		msg = mmsg_index(a, id, arg, cnt, ret);
	}
	if (ret <= 0 || (dir == PT_DIR_INGRESS && (flags & (PT_MSG_PEEK | PT_MSG_ERRQUEUE))))
		return; /* nothing moved, peeked bytes that a later call reads again, or the
			 * error queue (timestamps, zerocopy notices: not the peer's bytes) */

	struct pt_scratch_t *s = scratch_get();
	if (!s) {
		lost_data(ret, skv, dir);
		return;
	}
	if (!sk_fill_btf(&s->ev, sk, skv)) {
		scratch_put(s);
		return;
	}
	fill_common_task(&s->ev, id, PT_KIND_DATA, cg, task);
	s->ev.fd = fd;
	s->ev.ret = ret;
	s->ev.direction = dir;
	switch (id) {
	case NR_write:
	case NR_sendto:
	case NR_read:
	case NR_recvfrom:
		copy_user(s, arg, ret);
		break;
	case NR_writev:
	case NR_readv:
		copy_iov(s, arg, cnt, ret);
		break;
	case NR_sendmsg:
	case NR_recvmsg: {
		struct user_msghdr h = {};
		if (bpf_probe_read_user(&h, sizeof(h), (void *)arg)) {
			s->ev.flags |= PT_FLAG_READ_ERROR;
			count(PT_CTR_READ_ERRORS, 1);
		} else {
			copy_iov(s, (__u64)h.msg_iov, h.msg_iovlen, ret);
		}
		break;
	}
	case NR_sendmmsg:
	case NR_recvmmsg: {
		struct mmsghdr h = {};
		if (msg >= PT_MAX_IOV) {
			s->ev.flags |= PT_FLAG_CUT_IOV_LIMIT;
		} else if (bpf_probe_read_user(&h, sizeof(h),
					       (void *)(arg + msg * sizeof(struct mmsghdr)))) {
			s->ev.flags |= PT_FLAG_READ_ERROR;
			count(PT_CTR_READ_ERRORS, 1);
		} else {
			copy_iov(s, (__u64)h.msg_hdr.msg_iov, h.msg_hdr.msg_iovlen, ret);
		}
		break;
	}
	default:
		/* sendfile, splice, io_uring...: the bytes are not in a user buffer of this call */
		s->ev.flags |= PT_FLAG_CUT_NOT_USER;
		break;
	}
	finish_data(s);
	scratch_put(s);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(pt_sock_send, struct sock *sk, int ret, int flags)
{
	sock_data(sk, ret, flags, PT_DIR_EGRESS);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(pt_sock_recv, struct sock *sk, int ret, int flags)
{
	sock_data(sk, ret, flags, PT_DIR_INGRESS);
	return 0;
}

/* The cgroup v2 id of the cgroup a socket belongs to (its creator's; an accepted socket
 * inherits its listener's). */
static __always_inline __u64 sk_cgroup_id(struct sock *sk)
{
	/* direct BTF loads (the socket programs' `sk` is a trusted pointer), as for tasks */
	return sk->sk_cgrp_data.cgroup->kn->id;
}

/* The read position of a TCP socket (see PT_FLAG_SEQ): copied_seq, less the FIN's sequence
 * number once the application has read the end of the stream (the peer's FIN arrived —
 * SOCK_DONE — and the application read up to rcv_nxt, which counts the FIN). */
static __always_inline __u32 tcp_read_position(struct tcp_sock *tp)
{
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	unsigned long sk_flags = BPF_CORE_READ((struct sock *)tp, __sk_common.skc_flags);
	int done = bpf_core_enum_value(enum sock_flags, SOCK_DONE);
	if (((sk_flags >> done) & 1) && copied == rcv_nxt)
		copied -= 1;
	return copied;
}

/* The kernel's counts of a TCP connection's stream for the checks of its rows (see
 * PT_FLAG_SEQ, PT_FLAG_WSEQ): at the open, the read position in `ret` and write_seq noted
 * in pt_wseqs; at the close, the read position and the bytes written since the open. */
static __always_inline void stream_counts(struct pt_event *ev, __u32 kind)
{
	struct tcp_sock *tp = (struct tcp_sock *)ev->sock;
	if (kind == PT_KIND_OPEN) {
		struct pt_wseq w = {
			.start = BPF_CORE_READ(tp, write_seq),
			.ports = (__u32)ev->lport << 16 | ev->rport,
		};
		bpf_map_update_elem(&pt_wseqs, &ev->sock, &w, BPF_ANY);
		ev->ret = tcp_read_position(tp);
		ev->flags |= PT_FLAG_SEQ;
		return;
	}
	__u32 written = 0, known = 0;
	struct pt_wseq *w = bpf_map_lookup_elem(&pt_wseqs, &ev->sock);
	if (w) {
		__u32 end = w->fin ? w->end : BPF_CORE_READ(tp, write_seq);
		written = end - w->start;
		known = w->ports == ((__u32)ev->lport << 16 | ev->rport);
		bpf_map_delete_elem(&pt_wseqs, &ev->sock);
	}
	/* an upper layer protocol (kernel TLS) turns the stream's bytes into records while
	 * the socket calls move plaintext: the counts do not compare, so none is given */
	if (BPF_CORE_READ((struct inet_connection_sock *)tp, icsk_ulp_ops))
		return;
	ev->ret = (__s64)(((__u64)written << 32) | tcp_read_position(tp));
	ev->flags |= PT_FLAG_SEQ | (known ? PT_FLAG_WSEQ : 0);
}

/* An open or close of a TCP socket of a targeted cgroup (the socket's own cgroup: these
 * run mostly in softirq — the handshake's last packet, the last ACK of a close, a timer —
 * where the current task is any task). The events carry PT_FLAG_NO_TASK and no task
 * fields: user space takes the socket's process from its data events. */
static __always_inline void sock_state(struct sock *sk, __u32 nr, __u32 kind, __u8 role)
{
	__u64 cg = sk_cgroup_id(sk);
	if (!targeted_id(cg))
		return;
	/* built on the stack, not in the CPU's scratch slot: a softirq can interrupt a data
	 * program that holds the slot */
	struct pt_event ev = {};
	struct sock_common skc;
	if (!sk_fill_ev(&ev, &skc, (struct sock *)ptr_scalar(sk)) || !ev.rport)
		return; /* not INET, a listener, or a socket that never connected */
	ev.ts_ns = bpf_ktime_get_boot_ns();
	ev.cgroup_id = cg;
	ev.kind = kind;
	ev.syscall = nr;
	ev.role = role;
	ev.flags = PT_FLAG_NO_TASK;
	ev.cpu = bpf_get_smp_processor_id();
	if (BPF_CORE_READ(sk, sk_protocol) == PT_IPPROTO_TCP)
		stream_counts(&ev, kind);
	/* a drop after the socket's last event left its gap mark: the close carries it (the
	 * bytes are counted as dropped already), and the marks go with it (both taken) */
	if (kind == PT_KIND_CLOSE &&
	    (take_gap(ev.sock | PT_DIR_INGRESS) | take_gap(ev.sock | PT_DIR_EGRESS)))
		ev.flags |= PT_FLAG_GAP;
	if (bpf_ringbuf_output(&pt_events, &ev, sizeof(ev), wakeup_flag(sizeof(ev)))) {
		count(PT_CTR_RINGBUF_FULL, 1);
		return;
	}
	count(PT_CTR_EVENTS, 1);
}

/* The application shut its side of a connection down and TCP queues its FIN next
 * (tcp_close_state sets FIN_WAIT1 or LAST_ACK, then tcp_send_fin counts the FIN in
 * write_seq): write_seq is the end of the data now, for the close's write check. A
 * close() after a shutdown() sets the same state again, the FIN counted by then: only
 * the first transition is the end of the data. */
static __always_inline void fin_queued(struct sock *sk)
{
	if (!targeted_id(sk_cgroup_id(sk)))
		return; /* another cgroup's socket: no entry to look up */
	__u64 key = ptr_scalar(sk);
	struct pt_wseq *w = bpf_map_lookup_elem(&pt_wseqs, &key);
	if (!w || w->fin)
		return; /* not a targeted connection opened during the recording, or done */
	w->end = BPF_CORE_READ((struct tcp_sock *)key, write_seq);
	w->fin = 1;
}

/* Opens: the handshake's completion on either side (SYN_SENT -> ESTABLISHED: a client;
 * SYN_RECV -> ESTABLISHED: a server's accepted socket), when both ports are known (at
 * SYN_SENT a client's port is not chosen yet). And the FIN a connection queues (see
 * fin_queued). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_sock_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_type != SOCK_STREAM)
		return 0;
	if (newstate == PT_TCP_FIN_WAIT1 || newstate == PT_TCP_LAST_ACK) {
		fin_queued(sk);
		return 0;
	}
	if (newstate != PT_TCP_ESTABLISHED)
		return 0;
	if (oldstate == PT_TCP_SYN_SENT)
		sock_state(sk, NR_connect, PT_KIND_OPEN, PT_ROLE_CLIENT);
	else if (oldstate == PT_TCP_SYN_RECV)
		sock_state(sk, NR_accept, PT_KIND_OPEN, PT_ROLE_SERVER);
	return 0;
}

/* Closes: the socket's destruction (tcp_v4_destroy_sock, also for IPv6), after its
 * application closed it and TCP is done with it, so after every byte the application
 * read — not the transition to CLOSE, which a connection can reach (TIME_WAIT) while its
 * application still reads the queued bytes — and before the struct sock can be reused. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(pt_sock_destroy, struct sock *sk)
{
	sock_state(sk, NR_close, PT_KIND_CLOSE, PT_ROLE_UNKNOWN);
	return 0;
}

/*
 * Alternative probe set (`--probes kprobe`) for kernels with kprobes: data from
 * tcp_sendmsg/tcp_recvmsg (the user buffers of the msghdr's iov_iter), connections from
 * tcp_connect (client), inet_csk_accept (server) and tcp_close. Loaded instead of the
 * tp_btf programs; same maps, same event layout (fd is 0: not known on this path).
 */
#define KP_sendmsg 1000
#define KP_recvmsg 1001
#define KP_connect 1002
#define KP_accept 1003
#define KP_close 1004

struct pt_kargs_t {
	__u64 sk;
	__u64 iter_type;
	__u64 base;
	__u64 nr_segs;
	__u64 offset;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pt_kargs_t);
} pt_kargs SEC(".maps");

static __always_inline void kp_save(struct sock *sk, struct msghdr *msg)
{
	if (!targeted())
		return;
	struct pt_kargs_t a = {};
	a.sk = (__u64)sk;
	a.iter_type = BPF_CORE_READ(msg, msg_iter.iter_type);
	a.offset = BPF_CORE_READ(msg, msg_iter.iov_offset);
	if (a.iter_type == ITER_UBUF) {
		a.base = (__u64)BPF_CORE_READ(msg, msg_iter.ubuf);
	} else if (a.iter_type == ITER_IOVEC) {
		a.base = (__u64)BPF_CORE_READ(msg, msg_iter.__iov);
		a.nr_segs = BPF_CORE_READ(msg, msg_iter.nr_segs);
	} else {
		return; /* kernel memory (kvec, bvec: sendfile/splice): not copied */
	}
	__u64 key = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pt_kargs, &key, &a, BPF_ANY))
		count(PT_CTR_ARGS_FULL, 1);
}

static __always_inline void kp_data(long ret, __u32 nr, __u8 dir)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct pt_kargs_t *ap = bpf_map_lookup_elem(&pt_kargs, &key);
	if (!ap)
		return;
	struct pt_kargs_t a = *ap;
	bpf_map_delete_elem(&pt_kargs, &key);
	if (ret <= 0)
		return;
	struct pt_scratch_t *s = scratch_get();
	if (!s)
		return;
	if (sk_fill(s, (struct sock *)a.sk)) {
		fill_common(&s->ev, nr, PT_KIND_DATA);
		s->ev.fd = 0;
		s->ev.ret = ret;
		s->ev.direction = dir;
		if (a.iter_type == ITER_UBUF)
			copy_user(s, a.base + a.offset, ret);
		else
			copy_iov(s, a.base, a.nr_segs, ret);
		finish_data(s);
	}
	scratch_put(s);
}

static __always_inline void kp_sock(struct sock *sk, __u32 nr, __u32 kind, __u8 role)
{
	if (!sk || !targeted())
		return;
	struct pt_scratch_t *s = scratch_get();
	if (!s)
		return;
	if (sk_fill(s, sk)) {
		fill_common(&s->ev, nr, kind);
		s->ev.fd = 0;
		s->ev.ret = 0;
		s->ev.role = role;
		submit(s);
	}
	scratch_put(s);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(pt_kp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kp_save(sk, msg);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(pt_krp_sendmsg, long ret)
{
	kp_data(ret, KP_sendmsg, PT_DIR_EGRESS);
	return 0;
}

SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(pt_kp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kp_save(sk, msg);
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(pt_krp_recvmsg, long ret)
{
	kp_data(ret, KP_recvmsg, PT_DIR_INGRESS);
	return 0;
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(pt_kp_connect, struct sock *sk)
{
	kp_sock(sk, KP_connect, PT_KIND_OPEN, PT_ROLE_CLIENT);
	return 0;
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(pt_krp_accept, struct sock *sk)
{
	kp_sock(sk, KP_accept, PT_KIND_OPEN, PT_ROLE_SERVER);
	return 0;
}

SEC("kprobe/tcp_close")
int BPF_KPROBE(pt_kp_close, struct sock *sk)
{
	kp_sock(sk, KP_close, PT_KIND_CLOSE, PT_ROLE_UNKNOWN);
	return 0;
}

/* TLS plaintext (uprobes on OpenSSL): see tls.bpf.h */
#include "tls.bpf.h"
