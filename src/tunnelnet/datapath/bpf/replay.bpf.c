// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * tunnelnet's kernel replay: fixed programs that repeat, for every later packet of a flow,
 * a decision the Python switch already took (issue #22). They decide nothing themselves: an
 * entry exists only because userspace put it there, and anything without an entry goes the
 * way it went before (a VM port's frame to the Python path's socket; a tunnel frame, whose
 * UDP port the collect_md device owns, to userspace as a perf event sample).
 *
 * Compiled ahead of time by `make bpf` (clang -target bpf); loaded by
 * tunnelnet.datapath.kernel_loader through libbpf. The structures below are mirrored, field
 * for field, by kernel_maps.py: change both or neither.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_ENTRIES 65536

/*
 * What a plan may depend on in the frame itself: Ethernet addresses and type and, for IPv4
 * that is not a fragment, the addresses, protocol and the first two 16-bit words of TCP/UDP
 * (ports) or ICMP (type, code: as the flow key's tp_src/tp_dst hold them). Multi-byte fields
 * are the frame's own bytes (network order). Userspace installs a plan only when nothing the
 * tables looked at lies outside these fields (kernel_replayable.py), so that every frame with
 * the same key would have had the same fate in Python.
 */
struct inner_key {
	__u8 dst_mac[6];
	__u8 src_mac[6];
	__u8 eth_type[2];
	__u8 ip_proto;
	__u8 pad;
	__u8 ip_src[4];
	__u8 ip_dst[4];
	__u8 l4_src[2];
	__u8 l4_dst[2];
};

/* A VM port's frame: which port it came in by and what it is. Untagged frames only. */
struct port_key {
	__u32 ifindex;
	struct inner_key inner;
};

struct port_entry {
	__u32 remote_ipv4;   /* host byte order, as bpf_skb_set_tunnel_key wants it; 0: a VM port */
	__u32 vni;
	__u32 tunnel_ifindex; /* the collect_md VXLAN device, or the VM port (remote_ipv4 0) */
	__u32 max_frame_len; /* the largest inner frame (Ethernet header included) that fits */
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns;  /* CLOCK_MONOTONIC */
};

/* A frame out of the collect_md VXLAN device: the peer must be known, as in tunnel_rx.py. */
struct tunnel_key {
	__u32 vni;
	__u32 remote_ipv4;   /* host byte order */
	struct inner_key inner;
};

struct tunnel_entry {
	__u32 out_ifindex;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns;
};

/*
 * A tunnel frame without a plan, handed up to userspace (the collect_md device owns UDP 4789,
 * so the Python path's VXLAN socket never sees it): this header, then the inner frame.
 */
struct upcall_meta {
	__u32 vni;
	__u32 remote_ipv4;   /* host byte order */
	__u32 frame_len;
	__u32 gso_size;      /* a GRO super-frame's segment size (0: an ordinary frame) */
};

/* a perf record's size is 16 bits: header, sample size, our header and the frame fit in it */
#define UPCALL_MAX_FRAME (0xffff - 64)

enum stat {
	STAT_PORT_HIT,
	STAT_PORT_MISS,
	STAT_PORT_TOO_BIG,
	STAT_TUNNEL_HIT,
	STAT_TUNNEL_MISS,
	STAT_TUNNEL_UPCALL,
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct port_key);
	__type(value, struct port_entry);
} port_plans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct tunnel_key);
	__type(value, struct tunnel_entry);
} tunnel_plans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} upcalls SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *slot = bpf_map_lookup_elem(&stats, &which);

	if (slot)
		*slot += 1; /* per-CPU: no other CPU writes this slot */
}

/*
 * The length of a GSO super-frame's headers (Ethernet, IPv4/IPv6, TCP/UDP), repeated in each
 * segment it will be cut into; 0 for a layout we do not parse.
 */
static __always_inline __u32 header_len(struct __sk_buff *skb)
{
	__u16 proto;
	__u8 byte, l4proto;
	__u32 l3len, l4len;

	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
		return 0;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &byte, 1) < 0)
			return 0;
		l3len = (byte & 0x0f) * 4;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 9, &l4proto, 1) < 0)
			return 0;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		l3len = 40;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &l4proto, 1) < 0)
			return 0;
	} else {
		return 0;
	}
	if (l4proto == IPPROTO_TCP) {
		if (l3len > 60 || bpf_skb_load_bytes(skb, ETH_HLEN + l3len + 12, &byte, 1) < 0)
			return 0;
		l4len = (byte >> 4) * 4;
	} else if (l4proto == IPPROTO_UDP) {
		l4len = 8;
	} else {
		return 0;
	}
	return ETH_HLEN + l3len + l4len;
}

/*
 * Whether the frame, or each segment a GSO super-frame will be cut into, fits the tunnel.
 * One that does not must reach Python, whose MTU doctor answers it (a redirect would lose
 * it without a word). Unknown layouts count as not fitting: Python then decides.
 */
static __always_inline int fits(struct __sk_buff *skb, __u32 max_frame_len)
{
	__u32 headers;

	if (skb->len <= max_frame_len)
		return 1;
	if (!skb->gso_size)
		return 0;
	headers = header_len(skb);
	return headers && headers + skb->gso_size <= max_frame_len;
}

/*
 * Bytes as the Python path counts them (offload.Gso.wire_bytes): a super-frame's segments
 * each carry the headers again, so flow byte counters are the same on either path.
 */
static __always_inline __u64 wire_bytes(struct __sk_buff *skb)
{
	__u32 segs = skb->gso_segs;

	if (segs > 1)
		return skb->len + (__u64)(segs - 1) * header_len(skb);
	return skb->len;
}

/*
 * The frame's inner_key; 0 when the frame is not one the kernel takes (too short, tagged,
 * an IPv4 fragment, a malformed IPv4 header): Python then decides.
 */
static __always_inline int read_inner(struct __sk_buff *skb, struct inner_key *key)
{
	__u8 ip[20];
	__u32 l3len;

	if (bpf_skb_load_bytes(skb, 0, key->dst_mac, 14) < 0) /* both MACs and the type */
		return 0;
	if (key->eth_type[0] == 0x81 && key->eth_type[1] == 0x00)
		return 0;
	if (key->eth_type[0] == 0x88 && key->eth_type[1] == 0xa8)
		return 0;
	if (!(key->eth_type[0] == 0x08 && key->eth_type[1] == 0x00))
		return 1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(ip)) < 0)
		return 0;
	if ((ip[0] >> 4) != 4 || (ip[0] & 0x0f) < 5)
		return 0;
	if ((ip[6] & 0x3f) || ip[7]) /* MF or an offset: a fragment */
		return 0;
	l3len = (ip[0] & 0x0f) * 4;
	key->ip_proto = ip[9];
	__builtin_memcpy(key->ip_src, &ip[12], 4);
	__builtin_memcpy(key->ip_dst, &ip[16], 4);
	if (ip[9] == IPPROTO_TCP || ip[9] == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + l3len, key->l4_src, 4) < 0)
			return 0;
	} else if (ip[9] == IPPROTO_ICMP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + l3len, &key->l4_src[1], 1) < 0)
			return 0;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + l3len + 1, &key->l4_dst[1], 1) < 0)
			return 0;
	}
	return 1;
}

/*
 * The one decision both the tc program and the socket filter take, so that the Python path's
 * socket skips exactly the frames the kernel forwards (its AF_PACKET tap sees a frame before
 * tc ingress redirects it). NULL: the frame is not the kernel's.
 */
static __always_inline struct port_entry *port_decision(struct __sk_buff *skb, int counting)
{
	struct port_key key = {.ifindex = skb->ifindex};
	struct port_entry *entry;

	if (skb->vlan_present)
		return 0;
	if (!read_inner(skb, &key.inner))
		return 0;
	entry = bpf_map_lookup_elem(&port_plans, &key);
	if (!entry)
		return 0;
	if (!fits(skb, entry->max_frame_len)) {
		if (counting)
			count(STAT_PORT_TOO_BIG); /* up to Python: the MTU doctor answers it */
		return 0;
	}
	return entry;
}

static __always_inline __u64 segments(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

SEC("tc")
int port_ingress(struct __sk_buff *skb)
{
	struct bpf_tunnel_key tkey = {};
	struct port_entry *entry = port_decision(skb, 1);

	if (!entry) {
		count(STAT_PORT_MISS);
		return TC_ACT_OK; /* the Python path's socket has it */
	}
	if (!entry->remote_ipv4) {
		/* a VM port of this host: the frame leaves as it came */
		__sync_fetch_and_add(&entry->packets, segments(skb));
		__sync_fetch_and_add(&entry->bytes, wire_bytes(skb));
		entry->last_used_ns = bpf_ktime_get_ns();
		count(STAT_PORT_HIT);
		return bpf_redirect(entry->tunnel_ifindex, 0);
	}
	tkey.remote_ipv4 = entry->remote_ipv4;
	tkey.tunnel_id = entry->vni;
	tkey.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &tkey, sizeof(tkey), BPF_F_ZERO_CSUM_TX) < 0) {
		count(STAT_PORT_MISS);
		return TC_ACT_SHOT; /* the socket filter already hid it from Python */
	}
	__sync_fetch_and_add(&entry->packets, segments(skb));
	__sync_fetch_and_add(&entry->bytes, wire_bytes(skb));
	entry->last_used_ns = bpf_ktime_get_ns();
	count(STAT_PORT_HIT);
	return bpf_redirect(entry->tunnel_ifindex, 0);
}

SEC("socket")
int port_socket_filter(struct __sk_buff *skb)
{
	return port_decision(skb, 0) ? 0 : skb->len;
}

/*
 * The same for a system port's untagged socket, which a second socket reads tagged frames
 * beside (tagsplit.py): this program replaces that socket's classic filter, so it also keeps
 * out the frames the kernel holds a VLAN tag for, as the classic one did.
 */
SEC("socket")
int port_socket_filter_untagged(struct __sk_buff *skb)
{
	if (skb->vlan_present)
		return 0;
	return port_decision(skb, 0) ? 0 : skb->len;
}

/*
 * Not inlined on purpose: a function taking the header keeps struct upcall_meta in the
 * object's BTF, against which the Python mirror is tested.
 */
static __noinline int send_upcall(struct __sk_buff *skb, struct upcall_meta *meta)
{
	/* the frame's bytes follow the header: the helper copies them from the skb */
	__u64 flags = BPF_F_CURRENT_CPU | ((__u64)meta->frame_len << 32);

	return bpf_perf_event_output(skb, &upcalls, flags, meta, sizeof(*meta));
}

SEC("tc")
int tunnel_ingress(struct __sk_buff *skb)
{
	struct bpf_tunnel_key tkey = {};
	struct tunnel_key key = {};
	struct tunnel_entry *entry;

	if (bpf_skb_get_tunnel_key(skb, &tkey, sizeof(tkey), 0) < 0)
		goto miss;
	key.vni = tkey.tunnel_id;
	key.remote_ipv4 = tkey.remote_ipv4;
	if (skb->vlan_present || !read_inner(skb, &key.inner))
		goto upcall; /* not the kernel's: Python decides */
	entry = bpf_map_lookup_elem(&tunnel_plans, &key);
	if (!entry)
		goto upcall;
	__sync_fetch_and_add(&entry->packets, segments(skb));
	__sync_fetch_and_add(&entry->bytes, wire_bytes(skb));
	entry->last_used_ns = bpf_ktime_get_ns();
	count(STAT_TUNNEL_HIT);
	return bpf_redirect(entry->out_ifindex, 0);
upcall:
	if (skb->len <= UPCALL_MAX_FRAME) {
		struct upcall_meta meta = {
			.vni = key.vni, .remote_ipv4 = key.remote_ipv4, .frame_len = skb->len,
			/* GRO on the underlay may have merged TCP segments: Python must cut them */
			.gso_size = skb->gso_segs > 1 ? skb->gso_size : 0,
		};

		if (send_upcall(skb, &meta) == 0)
			count(STAT_TUNNEL_UPCALL);
	}
miss:
	/*
	 * Dropped here whether or not it went up: never TC_ACT_OK, the device has no bridge
	 * behind it, and a frame passed up its stack could reach the hypervisor's own addresses
	 * from a tenant network.
	 */
	count(STAT_TUNNEL_MISS);
	return TC_ACT_SHOT;
}

/*
 * VXLAN the collect_md device would drop unseen, handed up whole: Linux's vxlan driver drops
 * a datagram whose I flag is clear or whose reserved bits are set (it diverges from RFC 7348,
 * which says to ignore them), and one too short for a VXLAN and an Ethernet header, before
 * tunnel_ingress could see it. The Python path ignores reserved bits and counts the others by
 * reason; with the device owning UDP 4789 that judgement would be lost. So on tc ingress of
 * the interfaces that carry the underlay, a UDP 4789 datagram to a local address that is not
 * plainly what the device takes (flags exactly I, reserved bits zero, room for the inner
 * Ethernet header) goes up to Python as the packet it is, and Python's VXLAN parser decides
 * and counts as it would have read it from its socket. Everything else is not this program's:
 * TC_ACT_UNSPEC, so the next filter (or none) decides.
 */
struct datagram_meta {
	__u32 remote_ipv4;   /* host byte order */
	__u32 payload_offset; /* where the UDP payload starts in the packet that follows */
	__u32 payload_len;   /* its length, as the UDP header gives it */
	__u32 packet_len;    /* bytes of the packet that follow (Ethernet header first) */
};

enum underlay_stat {
	UNDERLAY_HANDED_UP,
	UNDERLAY_NOT_HANDED_UP, /* too big for a perf record, or its ring was full */
	UNDERLAY_STAT_MAX,
};

#define VXLAN_UDP_PORT 4789
#define VXLAN_HLEN 8
#define VXLAN_FLAG_I 0x08

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);  /* a local IPv4 address, network byte order */
	__type(value, __u8);
} local_ipv4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UNDERLAY_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} underlay_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} datagram_upcalls SEC(".maps");

static __always_inline void count_underlay(__u32 which)
{
	__u64 *slot = bpf_map_lookup_elem(&underlay_stats, &which);

	if (slot)
		*slot += 1;
}

/* Whether the 20-byte IPv4 header's checksum holds (ip_rcv drops it otherwise). */
static __always_inline int ipv4_checksum_ok(__u8 *ip)
{
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)ip, 20, 0);
	__u32 folded;

	if (sum < 0)
		return 0;
	folded = (__u32)sum;
	folded = (folded & 0xffff) + (folded >> 16);
	folded = (folded & 0xffff) + (folded >> 16);
	return folded == 0xffff;
}

/*
 * Not inlined on purpose, as send_upcall: keeps struct datagram_meta in the object's BTF.
 */
static __noinline int send_datagram(struct __sk_buff *skb, struct datagram_meta *meta)
{
	__u64 flags = BPF_F_CURRENT_CPU | ((__u64)meta->packet_len << 32);

	return bpf_perf_event_output(skb, &datagram_upcalls, flags, meta, sizeof(*meta));
}

SEC("tc")
int underlay_ingress(struct __sk_buff *skb)
{
	__u8 ip[20], udp[8], vxlan[VXLAN_HLEN];
	__u32 daddr, ip_len, udp_len, payload;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(ip)) < 0)
		return TC_ACT_UNSPEC;
	/* options or a fragment: rare on a tunnel; the stack reassembles, the device judges */
	if (ip[0] != 0x45 || ip[9] != IPPROTO_UDP || (ip[6] & 0x3f) || ip[7])
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 20, udp, sizeof(udp)) < 0)
		return TC_ACT_UNSPEC;
	if (udp[2] != (VXLAN_UDP_PORT >> 8) || udp[3] != (VXLAN_UDP_PORT & 0xff))
		return TC_ACT_UNSPEC;
	ip_len = (__u32)ip[2] << 8 | ip[3];
	udp_len = (__u32)udp[4] << 8 | udp[5];
	/* what the stack itself would drop before UDP delivery stays the stack's */
	if (udp_len < 8 || ip_len < 20 + udp_len || ETH_HLEN + ip_len > skb->len)
		return TC_ACT_UNSPEC;
	payload = udp_len - 8;
	if (payload >= VXLAN_HLEN + ETH_HLEN) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 28, vxlan, sizeof(vxlan)) < 0)
			return TC_ACT_UNSPEC;
		if (vxlan[0] == VXLAN_FLAG_I && !vxlan[1] && !vxlan[2] && !vxlan[3] && !vxlan[7])
			return TC_ACT_UNSPEC; /* the device takes it, as Python would */
	}
	if (skb->gso_segs > 1)
		return TC_ACT_UNSPEC; /* a GRO merge is of datagrams the device took apart */
	__builtin_memcpy(&daddr, &ip[16], 4);
	if (!bpf_map_lookup_elem(&local_ipv4, &daddr))
		return TC_ACT_UNSPEC; /* passing through, or broadcast: not ours to judge */
	if (!ipv4_checksum_ok(ip))
		return TC_ACT_UNSPEC;
	{
		__u32 saddr;
		struct datagram_meta meta = {
			.payload_offset = ETH_HLEN + 28, .payload_len = payload,
			.packet_len = ETH_HLEN + ip_len,
		};

		__builtin_memcpy(&saddr, &ip[12], 4);
		meta.remote_ipv4 = bpf_ntohl(saddr);
		if (meta.packet_len <= UPCALL_MAX_FRAME && send_datagram(skb, &meta) == 0)
			count_underlay(UNDERLAY_HANDED_UP);
		else
			count_underlay(UNDERLAY_NOT_HANDED_UP);
	}
	/* the device would drop it: Python has it, nothing else does */
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
