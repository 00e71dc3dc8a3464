// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
/*
 * podtrace benchmark floors (not used by the recorder): EMPTY programs on the hooks the
 * recorder can use, so that `bench_recorder` can measure what the hook itself costs a
 * syscall, apart from what podtrace's code adds:
 * - floor_tp_enter / floor_tp_exit: per-syscall tracepoints (attached to
 *   syscalls/sys_enter_write and sys_exit_write by the benchmark);
 * - floor_btf_enter / floor_btf_exit: tp_btf/sys_enter and tp_btf/sys_exit (every syscall);
 * - floor_sock_send / floor_sock_recv: tp_btf/sock_send_length and sock_recv_length (every
 *   socket send and receive of the node).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/syscalls/sys_enter_write")
int floor_tp_enter(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_write")
int floor_tp_exit(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_btf_enter, struct pt_regs *regs, long id)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_btf_exit, struct pt_regs *regs, long ret)
{
	return 0;
}

/* The same hooks with only the recorder's untargeted fast path: the syscall-number test
 * (tp_btf) and the cgroup filter's first step (one helper call + one inlined array
 * lookup), so that the cost of the filter itself is known too. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} floor_slots SEC(".maps");

static __always_inline int floor_targeted(void)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 slot = cg & 4095;
	__u64 *v = bpf_map_lookup_elem(&floor_slots, &slot);
	return v && *v == cg;
}

static __always_inline int floor_followed(__u64 id)
{
	switch (id) {
	case 0: case 1: case 3: case 19: case 20: case 40: case 42: case 43: case 44:
	case 45: case 46: case 47: case 288: case 299: case 307:
		return 1;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int floor_tp_cg_enter(void *ctx)
{
	return floor_targeted();
}

SEC("tracepoint/syscalls/sys_exit_write")
int floor_tp_cg_exit(void *ctx)
{
	return floor_targeted();
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_btf_cg_enter, struct pt_regs *regs, long id)
{
	if (!floor_followed(id))
		return 0;
	return floor_targeted();
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_btf_cg_exit, struct pt_regs *regs, long ret)
{
	if (!floor_followed(regs->orig_ax))
		return 0;
	return floor_targeted();
}

/* The socket tracepoint set's hooks (sock:sock_send_length / sock_recv_length): empty, and
 * with the cgroup filter's fast path. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_sock_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_sock_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_sock_cg_send, struct sock *sk, int ret, int flags)
{
	return floor_targeted();
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_sock_cg_recv, struct sock *sk, int ret, int flags)
{
	return floor_targeted();
}
