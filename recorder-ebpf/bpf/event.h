/* SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0) */
/*
 * podtrace: the event layout shared between the eBPF programs (podtrace.bpf.c) and user
 * space (recorder-ebpf/src/event.rs mirrors it with #[repr(C)]; a test checks that size
 * and every field offset are identical).
 *
 * Every ring-buffer record is one `struct pt_event` header, followed by `cap_len` payload
 * bytes for PT_KIND_DATA events. The header is padded to a multiple of 8 bytes.
 * Only fixed-width types are used so that the host compiler and clang -target bpf agree.
 */
#ifndef PODTRACE_EVENT_H
#define PODTRACE_EVENT_H

/* Largest payload the programs copy per event (the snaplen can be set lower at load). */
#define PT_MAX_SNAPLEN 16384

/* pt_event.kind */
#define PT_KIND_DATA 1
#define PT_KIND_OPEN 2
#define PT_KIND_CLOSE 3

/* pt_event.direction */
#define PT_DIR_EGRESS 0
#define PT_DIR_INGRESS 1

/* pt_event.role */
#define PT_ROLE_UNKNOWN 0
#define PT_ROLE_CLIENT 1
#define PT_ROLE_SERVER 2

/* pt_event.flags */
#define PT_FLAG_TRUNCATED 1  /* cap_len < ret */
#define PT_FLAG_READ_ERROR 2 /* copying the user buffer failed: payload incomplete */
#define PT_FLAG_GAP 4        /* an earlier event of this socket+direction was dropped */
/* Why cap_len < ret (exactly one of these accompanies PT_FLAG_TRUNCATED): */
#define PT_FLAG_CUT_SNAPLEN 8   /* the snaplen was reached */
#define PT_FLAG_CUT_NOT_USER 16 /* the bytes were not in user memory (sendfile) */
#define PT_FLAG_CUT_IOV_LIMIT 32 /* more iovecs/messages than PT_MAX_IOV (beyond UIO_MAXIOV) */
#define PT_FLAG_CUT_BEYOND 64   /* ret exceeds the buffers passed (e.g. recv with MSG_TRUNC) */
/* (128 is PT_FLAG_TLS_PLAINTEXT, tls.bpf.h) */
#define PT_FLAG_NO_TASK 256 /* emitted outside the socket's process (softirq, timer): pid,
			     * tid and comm are 0; the socket's cgroup is cgroup_id */
/* An open or close of a TCP socket (socket tracepoint set) whose `ret` carries the
 * kernel's read position of the stream instead of a return value: how far the application
 * has read (tcp copied_seq, less the FIN's sequence number once it read the end of the
 * stream; the low 32 bits), so the bytes it read between an open and a close are
 * close.ret - open.ret (mod 2^32). Not on the close of a socket with an upper layer
 * protocol (kernel TLS), whose stream bytes and call bytes differ. Data events keep their
 * size. */
#define PT_FLAG_SEQ 512
/* A close with PT_FLAG_SEQ whose `ret` also carries, in its high 32 bits, the bytes the
 * application wrote to the connection since its open (the difference of tcp write_seq at
 * the open and at the end of the data: the FIN, once queued, not counted; mod 2^32). Set
 * when the socket tracepoint set saw the connection's open. */
#define PT_FLAG_WSEQ 1024
/* (a copy fault is PT_FLAG_READ_ERROR) */

/* Most iovecs per call and messages per sendmmsg/recvmmsg call copied: UIO_MAXIOV, the
 * kernel's own limit, so no call that succeeds is ever cut by this bound. */
#define PT_MAX_IOV 1024

/* pt_event.syscall: the x86_64 syscall number of the traced call (for the socket
 * tracepoint set: of the syscall the socket call ran in, read from the task's registers;
 * connect/accept/close for its opens and closes), or 1000..1004 for the kprobe set
 * (tcp_sendmsg, tcp_recvmsg, tcp_connect, inet_csk_accept, tcp_close). */

/* pt_event.syscall of a socket call made by a kernel thread or an io_uring worker of a
 * targeted cgroup (socket tracepoint set; no user registers: bytes not copied). */
#define PT_NR_KERNEL_THREAD 1010

/* Indexes of the per-CPU counter array `pt_counters`. */
#define PT_CTR_EVENTS 0          /* records written to the ring buffer */
#define PT_CTR_RINGBUF_FULL 1    /* records lost because the ring buffer was full */
#define PT_CTR_TRUNCATED 2       /* data events with cap_len < ret (any reason) */
#define PT_CTR_READ_ERRORS 3     /* failed copies of user memory */
#define PT_CTR_BYTES_CAPTURED 4  /* payload bytes written to the ring buffer */
#define PT_CTR_BYTES_DROPPED 5   /* syscall bytes (ret) of data events lost to a full ring */
#define PT_CTR_ARGS_FULL 6       /* syscalls missed: no per-task slot for the arguments */
#define PT_CTR_SYSCALLS 7        /* targeted socket-candidate syscalls seen at entry */
#define PT_CTR_SCRATCH_BUSY 8    /* events lost: the CPU's scratch slot was in use (preemption) */
/* Truncated data events by reason; their sum is PT_CTR_TRUNCATED. */
#define PT_CTR_TRUNC_SNAPLEN 9     /* payload cut at the snaplen */
#define PT_CTR_TRUNC_READ_ERROR 10 /* payload cut by a failed copy of user memory */
#define PT_CTR_TRUNC_NOT_USER 11   /* bytes not in user memory (sendfile): not copied */
#define PT_CTR_TRUNC_IOV_LIMIT 12  /* iovecs/messages beyond PT_MAX_IOV */
#define PT_CTR_TRUNC_BEYOND 13     /* ret larger than the buffers passed (MSG_TRUNC) */
#define PT_CTR_MAX 14

struct pt_event {
	__u64 ts_ns;     /* bpf_ktime_get_boot_ns() at syscall exit (CLOCK_BOOTTIME) */
	__u64 cgroup_id; /* bpf_get_current_cgroup_id() */
	__u64 sock;      /* kernel `struct sock *` value: the connection key */
	__u32 pid;       /* tgid */
	__u32 tid;
	__u32 kind;      /* PT_KIND_* */
	__u32 syscall;   /* x86_64 syscall number */
	__s64 ret;       /* syscall return value (bytes moved for data events) */
	__u32 cap_len;   /* payload bytes following this header */
	__u32 flags;     /* PT_FLAG_* */
	__u32 fd;
	__u16 family;    /* AF_INET / AF_INET6 */
	__u16 lport;     /* host byte order */
	__u16 rport;     /* host byte order */
	__u8 role;       /* PT_ROLE_* */
	__u8 direction;  /* PT_DIR_* */
	__u32 cpu;
	__u8 laddr[16];  /* IPv4 in the first 4 bytes, network order */
	__u8 raddr[16];
	char comm[16];
};

#endif
