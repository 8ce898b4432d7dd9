//! # asdic-session
//!
//! A ping library in the shape of node's net-ping: a [`Session`] with net-ping's
//! [`Options`] (protocol, packet size, retries, session id, timeout, TTL) pings one host per
//! request, any number of requests at once, and each request ends in a [`Pong`] (sent and
//! received times) or a typed [`PingError`]: timed out, destination unreachable (with its
//! code), packet too big (with the MTU), parameter problem (with the pointer), redirect (with
//! the gateway), source quench, time exceeded (with the gateway that dropped it), or closed.
//! [`Session::close`] ends every outstanding request with [`PingError::Closed`] ("Socket
//! forcibly closed"); the session then opens a new socket for the next request.
//!
//! ```no_run
//! use std::time::Duration;
//! use asdic_session::{Options, PingError, Session};
//!
//! let session = Session::new(Options {
//!     timeout: Duration::from_millis(500),
//!     retries: 2,
//!     ..Options::default()
//! })?;
//! match session.ping_host("198.19.0.1".parse()?) {
//!     Ok(p) => println!("{}: {:?} (sent {:?})", p.target, p.rtt, p.sent),
//!     Err(PingError::TimeExceeded { source, .. }) => println!("TTL ran out at {source}"),
//!     Err(e) => println!("error: {e}"),
//! }
//! // Or without blocking, as net-ping's callback:
//! session.ping_host_with("198.19.0.2".parse()?, |r| println!("{r:?}"));
//! session.close(); // the second request, if still outstanding, ends with "Socket forcibly closed"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The runnable example `examples/ping.rs` pings the addresses given on its command line
//! (`cargo run --release -p asdic-session --example ping -- 198.19.0.1 198.19.0.13`).
//!
//! ## How it works
//!
//! A session is a thin layer over `asdic-runtime`, the pipeline the `asdic` command runs: the
//! same sender thread builds every probe, the same receiver thread and matcher validate what
//! comes back and reap tries that timed out, and a session thread turns the runtime's events
//! into completions. It opens asdic's raw-socket engine (needs CAP_NET_RAW); with the `uring`
//! feature, `Session::with_engine(options, open_uring)` sends and receives through io_uring
//! instead. XDP is not offered: it takes an interface's hook for itself and needs five
//! capabilities. By default the crate builds no I/O engine beyond raw sockets: no clang,
//! libbpf or libelf.
//!
//! Every echo request carries `session_id` as its ICMP identifier, its own sequence number
//! (one per try, a keyed permutation of the try's number), and asdic's 32-byte payload stamp
//! with a keyed MAC; the matcher accepts a reply, or an ICMP error quoting a request, only
//! when that MAC verifies. An error whose quote is too short to hold it (RFC 792's 8 bytes)
//! names the try by its sequence alone, 16 bits a blind forger can guess: it is counted as
//! unverified and not taken, and the try waits for its reply or times out. The MAC key is new
//! for every socket, so answers to a closed socket's requests never complete a later request.
//! An idle session sleeps: its threads wake at most every 20 ms.
//!
//! Each try waits `timeout`; then the next try is sent, up to `retries` more, and the
//! request fails with [`PingError::RequestTimedOut`]. 65,536 requests can be outstanding at
//! once (one try each, one per sequence number); beyond that a request fails with
//! [`PingError::TooManyOutstanding`]. A try whose sequence number is still held by a try of
//! 65,536 tries earlier waits for that one to end.
//! The outstanding requests sit in a map under a mutex: this API is for many hosts, not
//! for line-rate scans (the `asdic` command is).
//!
//! ## Differences from net-ping
//!
//! - `packet_size` counts ICMP bytes as net-ping's does, but its minimum is 40 (header and
//!   stamp), not 12; smaller values are raised to it.
//! - An ICMPv4 "fragmentation needed" is a `DestinationUnreachable` (code 4), as in net-ping;
//!   IPv6's Packet Too Big is [`PingError::PacketTooBig`] with the MTU.
//! - Redirects and ICMPv6 Packet Too Big end the request, as net-ping's errors do.
//!
//! ## Testing
//!
//! Replies, timeouts with retries, destination unreachable, time exceeded, IPv6 packet too
//! big, close and reuse run against real sockets on asdic's veth test bed
//! (`tests/session_bed.rs`). Parameter problem, redirect (IPv4 and ICMPv6) and source quench
//! cannot be provoked there; they are covered by unit tests that feed crafted ICMP errors,
//! quoting the session's real probes with their MACs, through a test engine. Note that the
//! raw ICMPv6 socket's filter passes types 1 to 4 only, so live ICMPv6 redirects do not
//! reach a session yet.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]

/// [`PingError`] and [`Error`], and the mapping of ICMP errors onto them.
mod error;
/// [`Options`] with net-ping's defaults, and their validation.
mod options;
/// [`Session`] and [`Pong`]: sending, the receiver thread, close and reuse.
mod session;

pub use error::{Error, PingError};
pub use options::{
    MAX_PACKET_SIZE, MAX_TIMEOUT, MIN_PACKET_SIZE, Options, OptionsError, Protocol,
    default_session_id,
};
#[cfg(feature = "uring")]
pub use session::open_uring;
pub use session::{EngineHalves, Pong, Session, open_raw};

pub use asdic_engine::EngineError;
