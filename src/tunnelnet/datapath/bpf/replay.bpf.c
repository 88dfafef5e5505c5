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
static __always_inline int read_inner_at(struct __sk_buff *skb, __u32 off,
					 struct inner_key *key)
{
	__u8 ip[20];
	__u32 l3len;

	if (bpf_skb_load_bytes(skb, off, key->dst_mac, 14) < 0) /* both MACs and the type */
		return 0;
	if (key->eth_type[0] == 0x81 && key->eth_type[1] == 0x00)
		return 0;
	if (key->eth_type[0] == 0x88 && key->eth_type[1] == 0xa8)
		return 0;
	if (!(key->eth_type[0] == 0x08 && key->eth_type[1] == 0x00))
		return 1;
	if (bpf_skb_load_bytes(skb, off + ETH_HLEN, ip, sizeof(ip)) < 0)
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
		if (bpf_skb_load_bytes(skb, off + ETH_HLEN + l3len, key->l4_src, 4) < 0)
			return 0;
	} else if (ip[9] == IPPROTO_ICMP) {
		if (bpf_skb_load_bytes(skb, off + ETH_HLEN + l3len, &key->l4_src[1], 1) < 0)
			return 0;
		if (bpf_skb_load_bytes(skb, off + ETH_HLEN + l3len + 1, &key->l4_dst[1], 1) < 0)
			return 0;
	}
	return 1;
}

static __always_inline int read_inner(struct __sk_buff *skb, struct inner_key *key)
{
	return read_inner_at(skb, 0, key);
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

/*
 * ---- Tunnels the programs write themselves: GRE and VXLAN (issue #22) -------------------
 * GRE: this kernel has no GRE module (no gretap device to set a tunnel key on), so the
 * programs write Ethernet over GRE (RFC 2784, 1701 type 0x6558 "TEB") with a key (RFC 2890)
 * and neither checksum nor sequence number, byte for byte what the Python path sends
 * (tunnel_tx.py, packet/tunnel.py gre_payload).
 *
 * VXLAN: the collect_md device could send it (bpf_skb_set_tunnel_key), but every packet then
 * crosses that device and, arriving, the UDP stack and the device again: measured slower than
 * Linux's own VXLAN device, where writing the headers here is faster (docs/architecture.md).
 * So the programs write RFC 7348 VXLAN too: UDP to port 4789 from a source port hashed from
 * the inner flow (section 5, 49152-65535; the kernel's flow hash, not the Python path's CRC:
 * one flow keeps one port on either path, not the same one), UDP checksum zero (allowed for
 * IPv4, as the Python path sends single datagrams), flags I, the VNI, reserved bits zero.
 *
 * Both go in an outer IPv4 header as the Python path's sockets get it from the kernel (no
 * options, DF, ID 0, the default TTL). The outer Ethernet header: an IP frame is handed to
 * bpf_redirect_neigh, which routes the outer packet and fills the addresses from the
 * neighbour table (resolving and queueing as the stack does; bpf_fib_lookup would need
 * forwarding on, which a hypervisor need not have). That helper takes IP packets only: a
 * frame of another type (ARP) gets the addresses userspace read from the neighbour table
 * into the entry, or, without them, stays in Python.
 *
 * Out of a VM port: encap_port_plans, looked up only when port_plans has no entry. Into this
 * host: GRE by gre_uplink_ingress on the uplink's tc ingress, which takes exactly the GRE
 * packets the Python path's receive fast path reads (tunnel_rx.py _gre_packet: IPv4 without
 * options, not a fragment, flags K only, type TEB) from a peer and key with an entry,
 * addressed to this host; everything else goes on (TC_ACT_UNSPEC: other filters, then the
 * stack and the Python path's raw socket, with its drops counted by reason as before).
 * VXLAN by underlay_ingress (below), which takes what the collect_md device would take
 * (vxlan_deliver) when it has an entry; the rest goes on to that device as before.
 */
#define ETH_P_TEB_GRE 0x6558
#define IPV4_HLEN 20
#define GRE_HLEN 8      /* flags and type, key */
#define GRE_OUTER_LEN (ETH_HLEN + IPV4_HLEN + GRE_HLEN) /* before the inner Ethernet header */
#define UDP_HLEN 8
#define VXLAN_HLEN 8
#define VXLAN_OUTER_LEN (ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN)
#define VXLAN_UDP_PORT 4789
#define VXLAN_FLAG_I 0x08
#define VXLAN_SOURCE_PORT_MIN 49152
#define VXLAN_SOURCE_PORT_MASK 0x3fff /* 49152-65535 */
#define DEFAULT_TTL 64
#define PACKET_HOST_TYPE 0

enum encap_kind {
	KIND_GRE,
	KIND_VXLAN,
};

struct encap_port_entry {
	__u32 remote_ipv4;   /* host byte order, as the other entries */
	__u32 local_ipv4;    /* our address towards the peer: the outer source */
	__u32 key;           /* the GRE key or the VNI, host byte order */
	__u32 max_frame_len; /* the largest inner frame (Ethernet header included) that fits */
	__u32 uplink_ifindex; /* the route's device towards the peer (userspace reads it) */
	__u8 next_hop_mac[6]; /* for frames that are not IP; all zero: those stay in Python */
	__u8 uplink_mac[6];
	__u8 ttl;            /* the namespace's ip_default_ttl, as the raw socket's (0: 64) */
	__u8 kind;           /* enum encap_kind */
	__u8 pad[2];
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns;
};

struct encap_tunnel_key {
	__u32 key;           /* the GRE key or the VNI, host byte order */
	__u32 remote_ipv4;   /* host byte order */
	__u32 kind;          /* enum encap_kind: a GRE key and a VNI are not the same number */
	struct inner_key inner;
};

struct encap_tunnel_entry {
	__u32 out_ifindex;
	__u32 local_ipv4;    /* the outer destination the packet must have: ours towards the peer */
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns;
};

enum encap_stat {
	ENCAP_STAT_GRE_SENT,
	ENCAP_STAT_PORT_NO_MAC,   /* a non-IP frame whose entry has no next-hop MAC: Python's */
	ENCAP_STAT_GRE_RECEIVED,
	ENCAP_STAT_GRE_PASS,      /* GRE up to the stack (Python's raw socket): not replayable */
	ENCAP_STAT_FAILED,
	ENCAP_STAT_VXLAN_SENT,
	ENCAP_STAT_VXLAN_RECEIVED,
	ENCAP_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct port_key);
	__type(value, struct encap_port_entry);
} encap_port_plans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct encap_tunnel_key);
	__type(value, struct encap_tunnel_entry);
} encap_tunnel_plans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENCAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} encap_stats SEC(".maps");

static __always_inline void encap_count(__u32 which)
{
	__u64 *slot = bpf_map_lookup_elem(&encap_stats, &which);

	if (slot)
		*slot += 1;
}

static __always_inline int is_ip(struct __sk_buff *skb)
{
	return skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6);
}

static __always_inline int has_next_hop_mac(const struct encap_port_entry *entry)
{
	const __u8 *m = entry->next_hop_mac;

	return m[0] | m[1] | m[2] | m[3] | m[4] | m[5];
}

/* The entry for a VM port's frame when the kernel encapsulates it, as port_decision; the
 * same answer in the socket filter and in port_ingress, so that exactly one of them has it. */
static __always_inline struct encap_port_entry *encap_port_decision(struct __sk_buff *skb,
								    int counting)
{
	struct port_key key = {.ifindex = skb->ifindex};
	struct encap_port_entry *entry;

	if (skb->vlan_present)
		return 0;
	if (!read_inner(skb, &key.inner))
		return 0;
	entry = bpf_map_lookup_elem(&encap_port_plans, &key);
	if (!entry)
		return 0;
	if (!is_ip(skb) && (!has_next_hop_mac(entry) || skb->gso_size)) {
		if (counting)
			encap_count(ENCAP_STAT_PORT_NO_MAC);
		return 0;
	}
	if (!fits(skb, entry->max_frame_len)) {
		if (counting)
			count(STAT_PORT_TOO_BIG); /* up to Python: the MTU doctor answers it */
		return 0;
	}
	return entry;
}

static __always_inline __u16 ipv4_checksum(const __u16 *words)
{
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < IPV4_HLEN / 2; i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The outer Ethernet and IPv4 headers, the same for both kinds. */
struct outer_ipv4 {
	__u8 eth[ETH_HLEN];
	__u8 ip[IPV4_HLEN];
} __attribute__((packed));

/* What goes before the VM's own frame, and that frame's Ethernet header again. */
struct gre_headers {
	struct outer_ipv4 outer;
	__u8 gre[GRE_HLEN];
	__u8 inner_eth[ETH_HLEN];
} __attribute__((packed));

struct vxlan_headers {
	struct outer_ipv4 outer;
	__u8 udp[UDP_HLEN];
	__u8 vxlan[VXLAN_HLEN];
	__u8 inner_eth[ETH_HLEN];
} __attribute__((packed));

static __always_inline void write_outer(struct outer_ipv4 *outer,
					const struct encap_port_entry *entry, __u32 ip_len,
					__u8 protocol)
{
	__u32 ip[IPV4_HLEN / 4] = {}; /* aligned, then copied */

	/* IP: bpf_redirect_neigh writes the addresses; else those the entry has */
	__builtin_memcpy(outer->eth, entry->next_hop_mac, 6);
	__builtin_memcpy(&outer->eth[6], entry->uplink_mac, 6);
	outer->eth[12] = 0x08; /* IPv4 */
	outer->eth[13] = 0x00;
	/* version 4, 20 bytes, TOS 0; the length; ID 0, DF (as the Python path's sockets with
	 * IP_PMTUDISC_DO send); TTL, protocol, the checksum below; the addresses */
	ip[0] = bpf_htonl(0x45000000 | (ip_len & 0xffff));
	ip[1] = bpf_htonl(0x00004000);
	ip[2] = bpf_htonl(((__u32)(entry->ttl ? entry->ttl : DEFAULT_TTL) << 24) |
			  ((__u32)protocol << 16));
	ip[3] = bpf_htonl(entry->local_ipv4);
	ip[4] = bpf_htonl(entry->remote_ipv4);
	((__u16 *)ip)[5] = ipv4_checksum((const __u16 *)ip);
	__builtin_memcpy(outer->ip, ip, IPV4_HLEN);
}

/* Room for the tunnel's headers at the frame's head: an IP frame by bpf_skb_adjust_room with
 * the encapsulation flags, so that a TSO super-frame stays whole and is cut later with each
 * segment wrapped (FIXED_GSO: the inner segments keep the VM's MSS, as the Python path's
 * segments do; the MTU check, fits(), is on the inner frame already). The helper refuses
 * anything but IPv4/IPv6: an ARP frame grows at its head instead, never a GSO frame. */
static __always_inline int grow(struct __sk_buff *skb, int ip_frame, __u32 tunnel_len,
				__u64 l4_flag)
{
	if (ip_frame)
		return bpf_skb_adjust_room(skb, IPV4_HLEN + tunnel_len + ETH_HLEN,
					   BPF_ADJ_ROOM_MAC,
					   BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
					   l4_flag | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
					   BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN));
	return bpf_skb_change_head(skb, IPV4_HLEN + tunnel_len + ETH_HLEN, 0);
}

static __always_inline int gre_encap(struct __sk_buff *skb,
				     const struct encap_port_entry *entry, int ip_frame)
{
	struct gre_headers h = {};
	__u32 gre[GRE_HLEN / 4];

	if (bpf_skb_load_bytes(skb, 0, h.inner_eth, ETH_HLEN) < 0)
		return -1;
	if (grow(skb, ip_frame, GRE_HLEN, BPF_F_ADJ_ROOM_ENCAP_L4_GRE) < 0)
		return -1;
	write_outer(&h.outer, entry, skb->len - ETH_HLEN, IPPROTO_GRE);
	gre[0] = bpf_htonl(0x20000000 | ETH_P_TEB_GRE); /* K only; Ethernet inside */
	gre[1] = bpf_htonl(entry->key);
	__builtin_memcpy(h.gre, gre, GRE_HLEN);
	return bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0);
}

static __always_inline int vxlan_encap(struct __sk_buff *skb,
				       const struct encap_port_entry *entry, int ip_frame)
{
	struct vxlan_headers h = {};
	__u32 words[(UDP_HLEN + VXLAN_HLEN) / 4];
	/* the inner flow's hash, before the frame is wrapped: one flow, one source port */
	__u32 hash = bpf_get_hash_recalc(skb);
	__u32 source = VXLAN_SOURCE_PORT_MIN + ((hash ^ (hash >> 16)) & VXLAN_SOURCE_PORT_MASK);

	if (bpf_skb_load_bytes(skb, 0, h.inner_eth, ETH_HLEN) < 0)
		return -1;
	if (grow(skb, ip_frame, UDP_HLEN + VXLAN_HLEN, BPF_F_ADJ_ROOM_ENCAP_L4_UDP) < 0)
		return -1;
	write_outer(&h.outer, entry, skb->len - ETH_HLEN, IPPROTO_UDP);
	/* a GSO super-frame's length here is cut with it: each segment's is set then */
	words[0] = bpf_htonl(source << 16 | VXLAN_UDP_PORT);
	words[1] = bpf_htonl(((skb->len - ETH_HLEN - IPV4_HLEN) & 0xffff) << 16); /* checksum 0 */
	words[2] = bpf_htonl((__u32)VXLAN_FLAG_I << 24);
	words[3] = bpf_htonl((entry->key & 0xffffff) << 8);
	__builtin_memcpy(h.udp, words, UDP_HLEN + VXLAN_HLEN);
	return bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0);
}

/* A VM port's frame into its tunnel, when encap_port_plans has it; TC_ACT_UNSPEC when not. */
static __always_inline int encap_port_ingress(struct __sk_buff *skb, int python_got_it)
{
	struct encap_port_entry *entry = encap_port_decision(skb, 1);
	__u64 packets, length;
	int ip_frame, rc;

	if (!entry)
		return TC_ACT_UNSPEC; /* no entry, or one Python must serve: its socket has it */
	if (python_got_it)
		return TC_ACT_OK; /* its plan went in after the tap: Python forwards this one */
	/* counted as the frame the VM sent, before it grows (and gso_segs is reset) */
	packets = segments(skb);
	length = wire_bytes(skb);
	ip_frame = is_ip(skb);
	if (entry->kind == KIND_VXLAN)
		rc = vxlan_encap(skb, entry, ip_frame);
	else
		rc = gre_encap(skb, entry, ip_frame);
	if (rc < 0) {
		encap_count(ENCAP_STAT_FAILED);
		return TC_ACT_SHOT; /* the socket filter already hid it from Python */
	}
	__sync_fetch_and_add(&entry->packets, packets);
	__sync_fetch_and_add(&entry->bytes, length);
	entry->last_used_ns = bpf_ktime_get_ns();
	count(STAT_PORT_HIT);
	encap_count(entry->kind == KIND_VXLAN ? ENCAP_STAT_VXLAN_SENT : ENCAP_STAT_GRE_SENT);
	if (ip_frame)
		return bpf_redirect_neigh(entry->uplink_ifindex, 0, 0, 0);
	return bpf_redirect(entry->uplink_ifindex, 0);
}

/*
 * A tunnel packet whose entry was found, to its VM port: the inner Ethernet header to the
 * front, then the outer headers and the inner header's old place go (``outer_len``: all that
 * precedes the inner Ethernet header); what stays is the VM's frame. FIXED_GSO: a
 * super-packet (our own kernel path's, or GRO's) keeps its segments' size.
 */
static __always_inline int deliver(struct __sk_buff *skb, struct encap_tunnel_entry *entry,
				   __u32 outer_len, __u32 received_stat)
{
	__u8 inner_eth[ETH_HLEN];
	__u64 packets;
	__u32 headers;

	if (bpf_skb_load_bytes(skb, outer_len, inner_eth, ETH_HLEN) < 0)
		return TC_ACT_UNSPEC;
	if (bpf_skb_store_bytes(skb, 0, inner_eth, ETH_HLEN, 0) < 0)
		goto lost;
	if (bpf_skb_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		goto lost;
	headers = skb->gso_size ? header_len(skb) : 0;
	packets = 1;
	if (headers && skb->len > headers) /* its segments, as offload.Gso counts them */
		packets = (skb->len - headers + skb->gso_size - 1) / skb->gso_size;
	__sync_fetch_and_add(&entry->packets, packets);
	__sync_fetch_and_add(&entry->bytes, skb->len + (packets - 1) * headers);
	entry->last_used_ns = bpf_ktime_get_ns();
	count(STAT_TUNNEL_HIT);
	encap_count(received_stat);
	return bpf_redirect(entry->out_ifindex, 0);
lost:
	encap_count(ENCAP_STAT_FAILED);
	return TC_ACT_SHOT; /* half rewritten: neither the stack's nor the VM's */
}

SEC("tc")
int gre_uplink_ingress(struct __sk_buff *skb)
{
	struct encap_tunnel_key key = {.kind = KIND_GRE};
	struct encap_tunnel_entry *entry;
	__u32 ip32[IPV4_HLEN / 4], gre32[GRE_HLEN / 4];
	__u8 *ip = (__u8 *)ip32;
	int rc;

	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->vlan_present)
		return TC_ACT_UNSPEC; /* not even IPv4: not counted, not ours */
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ip32, IPV4_HLEN) < 0 || ip[9] != IPPROTO_GRE)
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + IPV4_HLEN, gre32, GRE_HLEN) < 0)
		goto pass;
	/*
	 * Anything unusual is the Python path's (it counts refusals by reason): options, a
	 * fragment, a length that is not the frame's, a bad header checksum (the stack drops
	 * it), other GRE flags (checksum, sequence, no key) or type, another host's packet, an
	 * inner frame too short to be one.
	 */
	if (ip[0] != 0x45 || (ip[6] & 0x3f) || ip[7] ||
	    bpf_ntohs(((__u16 *)ip32)[1]) != skb->len - ETH_HLEN ||
	    ipv4_checksum((const __u16 *)ip32) != 0 ||
	    gre32[0] != bpf_htonl(0x20000000 | ETH_P_TEB_GRE) ||
	    skb->pkt_type != PACKET_HOST_TYPE ||
	    skb->len < GRE_OUTER_LEN + ETH_HLEN + IPV4_HLEN)
		goto pass;
	key.key = bpf_ntohl(gre32[1]);
	key.remote_ipv4 = bpf_ntohl(ip32[3]);
	if (!read_inner_at(skb, GRE_OUTER_LEN, &key.inner))
		goto pass;
	entry = bpf_map_lookup_elem(&encap_tunnel_plans, &key);
	if (!entry || entry->local_ipv4 != bpf_ntohl(ip32[4]))
		goto pass;
	rc = deliver(skb, entry, GRE_OUTER_LEN, ENCAP_STAT_GRE_RECEIVED);
	if (rc != TC_ACT_UNSPEC)
		return rc;
pass:
	encap_count(ENCAP_STAT_GRE_PASS);
	return TC_ACT_UNSPEC;
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
 * A VXLAN datagram the collect_md device would take (underlay_ingress checked the IPv4 and
 * UDP lengths, the flags and reserved bits), to its VM port when an entry has it. Only what
 * needs no more judgement than the device and tunnel_ingress would give it: a UDP checksum
 * (the stack would verify it), a bad header checksum, another host's packet or one that is
 * not exactly as long as the frame go on to the stack and the device, as before.
 */
static __always_inline int vxlan_deliver(struct __sk_buff *skb, __u8 *ip, const __u8 *udp,
					 const __u8 *vxlan, __u32 ip_len)
{
	struct encap_tunnel_key key = {.kind = KIND_VXLAN};
	struct encap_tunnel_entry *entry;
	__u32 saddr, daddr;

	if (udp[6] || udp[7] || skb->pkt_type != PACKET_HOST_TYPE || skb->vlan_present ||
	    ETH_HLEN + ip_len != skb->len || ((__u32)udp[4] << 8 | udp[5]) != ip_len - IPV4_HLEN)
		return TC_ACT_UNSPEC;
	key.key = (__u32)vxlan[4] << 16 | (__u32)vxlan[5] << 8 | vxlan[6];
	__builtin_memcpy(&saddr, &ip[12], 4);
	__builtin_memcpy(&daddr, &ip[16], 4);
	key.remote_ipv4 = bpf_ntohl(saddr);
	if (!read_inner_at(skb, VXLAN_OUTER_LEN, &key.inner))
		return TC_ACT_UNSPEC;
	entry = bpf_map_lookup_elem(&encap_tunnel_plans, &key);
	if (!entry || entry->local_ipv4 != bpf_ntohl(daddr))
		return TC_ACT_UNSPEC;
	if (!ipv4_checksum_ok(ip))
		return TC_ACT_UNSPEC;
	return deliver(skb, entry, VXLAN_OUTER_LEN, ENCAP_STAT_VXLAN_RECEIVED);
}
/* ---- end of the self-written tunnels -------------------------------------------------- */

/*
 * The Python path's socket filter and port_ingress take their decisions one after the other
 * (the AF_PACKET tap runs before tc ingress, on the same CPU, for the same frame), and an
 * entry installed between the two would have the frame forwarded twice: by Python, which
 * the filter let have it, and by the kernel. So the filter notes what it decided, per CPU,
 * and port_ingress leaves to Python a frame whose filter let Python have it.
 */
struct tap_verdict {
	__u64 at_ns; /* when the filter decided; a note older than TAP_NOTE_NS is not this frame's */
	__u32 ifindex;
	__u32 len;
	__u32 python_has_it;
	__u32 pad;
};

/*
 * Every frame's filter writes its own note and port_ingress consumes it, so the age limit only
 * guards a frame whose filter never ran (no socket yet) against an old note; it must not be
 * shorter than the tap-to-tc gap itself, which on a 2-vCPU VM exceeded 1 ms often enough that
 * a frame was forwarded twice in a third of the runs of test_lab_kernel_fastpath's burst test.
 */
#define TAP_NOTE_NS 50000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tap_verdict);
} tap_verdicts SEC(".maps");

static __always_inline int tap_note(struct __sk_buff *skb, int python_has_it)
{
	__u32 zero = 0;
	struct tap_verdict *note = bpf_map_lookup_elem(&tap_verdicts, &zero);

	if (note) {
		note->at_ns = bpf_ktime_get_ns();
		note->ifindex = skb->ifindex;
		note->len = skb->len;
		note->python_has_it = python_has_it;
	}
	return python_has_it ? skb->len : 0;
}

/* Whether this CPU's filter just let the Python path have this very frame (the note is used
 * once: the next frame's filter writes its own). */
static __always_inline int python_has_it(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct tap_verdict *note = bpf_map_lookup_elem(&tap_verdicts, &zero);
	int mine;

	if (!note)
		return 0;
	mine = note->python_has_it && note->ifindex == skb->ifindex && note->len == skb->len &&
	       bpf_ktime_get_ns() - note->at_ns < TAP_NOTE_NS;
	note->python_has_it = 0;
	return mine;
}

SEC("tc")
int port_ingress(struct __sk_buff *skb)
{
	struct bpf_tunnel_key tkey = {};
	int python = python_has_it(skb);
	struct port_entry *entry = port_decision(skb, 1);

	if (!entry) {
		int encap = encap_port_ingress(skb, python);

		if (encap != TC_ACT_UNSPEC)
			return encap;
		count(STAT_PORT_MISS);
		return TC_ACT_OK; /* the Python path's socket has it */
	}
	if (python) {
		count(STAT_PORT_MISS);
		return TC_ACT_OK; /* its plan went in after the tap: Python forwards this one */
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

/*
 * The port meter: how many frames without an entry a VM port may hand the Python path a
 * second (issue 21). Python reads, parses and meters (walk_meter.py) every frame it is given,
 * on the one thread that serves every port: a VM flooding random MACs at 68,000 frames/s kept
 * it busy with frames its walk meter then dropped, and every other port's Python-forwarded
 * frames waited. So each port's socket filter holds a token bucket, kept as credit in
 * nanoseconds: time adds credit up to burst_ns, each frame handed up costs cost_ns (both
 * from userspace; cost_ns 0: no meter). A frame over it is kept from Python and counted
 * against its port only; frames with an entry are not metered (the kernel forwards them).
 * Per-CPU races on a bucket may let a few frames more through: the bound is approximate, the
 * isolation is not (a port's bucket is its own).
 */
struct meter_config {
	__u64 cost_ns;  /* credit a frame costs: 1e9 / frames per second; 0: off */
	__u64 burst_ns; /* the most credit saved: burst * cost_ns */
};

struct port_meter {
	__u64 credit_ns;
	__u64 last_ns;  /* CLOCK_MONOTONIC */
	__u64 passed;   /* frames handed up to Python */
	__u64 dropped;  /* frames kept from Python: over the meter */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct meter_config);
} meter_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u32); /* the port's ifindex */
	__type(value, struct port_meter);
} port_meters SEC(".maps");

/*
 * Flows of a VM port that Python knows (its tables answered one of their frames and will
 * answer the next from their cache) but the kernel does not forward (a flood, IPv6 through
 * port security, a rewrite...): never metered, as the walk meter never meters a known flow.
 * Userspace adds one after a walk, so a port adds at most its walk meter's rate; a flood's
 * frames, each of which learns a new MAC, are never added. LRU: the least used make room.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct port_key);
	__type(value, __u8);
} python_flows SEC(".maps");

/* Whether this frame, which has no entry, may go up to Python; takes its credit if so. */
static __always_inline int meter_allows(struct __sk_buff *skb)
{
	__u32 zero = 0, ifindex = skb->ifindex;
	struct meter_config *cfg = bpf_map_lookup_elem(&meter_config, &zero);
	struct port_key known = {.ifindex = skb->ifindex};
	struct port_meter *meter;
	__u64 now, credit;

	if (!cfg || !cfg->cost_ns)
		return 1;
	if (!skb->vlan_present && read_inner(skb, &known.inner) &&
	    bpf_map_lookup_elem(&python_flows, &known))
		return 1;
	now = bpf_ktime_get_ns();
	meter = bpf_map_lookup_elem(&port_meters, &ifindex);
	if (!meter) {
		struct port_meter fresh = {.last_ns = now, .passed = 1};

		/* a new port starts with a full bucket, this frame taken from it */
		fresh.credit_ns = cfg->burst_ns > cfg->cost_ns ? cfg->burst_ns - cfg->cost_ns : 0;
		bpf_map_update_elem(&port_meters, &ifindex, &fresh, BPF_NOEXIST);
		return 1;
	}
	credit = meter->credit_ns + (now > meter->last_ns ? now - meter->last_ns : 0);
	if (credit > cfg->burst_ns)
		credit = cfg->burst_ns;
	meter->last_ns = now;
	if (credit < cfg->cost_ns) {
		meter->credit_ns = credit;
		__sync_fetch_and_add(&meter->dropped, 1);
		return 0;
	}
	meter->credit_ns = credit - cfg->cost_ns;
	__sync_fetch_and_add(&meter->passed, 1);
	return 1;
}

/* The filters' verdict for a frame the kernel does not forward: Python has it unless the
 * port's meter keeps it back. */
static __always_inline int to_python(struct __sk_buff *skb)
{
	return tap_note(skb, meter_allows(skb));
}

SEC("socket")
int port_socket_filter(struct __sk_buff *skb)
{
	if (port_decision(skb, 0) || encap_port_decision(skb, 0))
		return tap_note(skb, 0);
	return to_python(skb);
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
		return tap_note(skb, 0);
	if (port_decision(skb, 0) || encap_port_decision(skb, 0))
		return tap_note(skb, 0);
	return to_python(skb);
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
 * and counts as it would have read it from its socket. What the device would take goes
 * straight to its VM port when encap_tunnel_plans has it (vxlan_deliver). Everything else is
 * not this program's: TC_ACT_UNSPEC, so the next filter (or none) decides.
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
		/* the device takes it, as Python would: straight to the VM port with an entry */
		if (vxlan[0] == VXLAN_FLAG_I && !vxlan[1] && !vxlan[2] && !vxlan[3] && !vxlan[7])
			return vxlan_deliver(skb, ip, udp, vxlan, ip_len);
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
