//! What the engines hand the matcher: a received frame's bytes, how they start and when they
//! arrived. Defined here, below the engines, so matching needs no I/O crate.

use core::net::Ipv6Addr;

/// How a received frame's bytes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxLayer {
    /// A whole IPv4 packet (raw ICMP sockets deliver the IP header).
    Ipv4,
    /// An ICMPv6 message without its IPv6 header (raw ICMPv6 sockets); the socket tells
    /// the source and hop limit.
    Icmpv6 {
        /// Who sent it.
        src: Ipv6Addr,
        /// Hop limit it arrived with, if reported.
        hop_limit: Option<u8>,
    },
    /// A whole Ethernet frame.
    Ethernet,
    /// No frame (empty data): the kernel's stamp (`ts_ns`) of the moment the device took
    /// the packet sent with this tag (engines whose `TxCaps::kernel_stamps` is set; the tag
    /// is the probe number's low 32 bits).
    TxStamp {
        /// The packet's tag.
        tag: u32,
    },
}

/// One received frame, valid during the callback.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// What they start with.
    pub layer: RxLayer,
    /// Receive time, nanoseconds since the Unix epoch: on the run's stamp clock, or on
    /// CLOCK_REALTIME where `realtime` says so.
    pub ts_ns: u64,
    /// Whether `ts_ns` is a socket's kernel stamp on CLOCK_REALTIME, which the receiver
    /// turns into the stamp clock (watching for steps of the realtime clock); else it is on
    /// the stamp clock already (`asdic_engine::stamp_ns`, the XDP program's stamps).
    pub realtime: bool,
    /// Whether the buffer was too small and the frame was cut.
    pub truncated: bool,
}
