//! [`Session`]: one raw socket at a time, a receiver thread, and the outstanding requests.
//!
//! Sending happens on the caller's thread, under the socket's state mutex: claim the next
//! slot of the in-flight table (probe number `n`, ICMP sequence `n mod 2^16`), patch the
//! template, send. The receiver thread parses what arrives, lets the receiver crate's
//! [`Matcher`] validate it (payload MAC, also of the probe an ICMP error quotes) and resolve
//! the slot, reaps tries older than the timeout, and then, under the same mutex, turns the
//! events into completions: a reply or an error ends the request, a timeout sends the next
//! try or ends it. Callbacks always run after the mutex is released.

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asdic_core::matcher::Matcher;
use asdic_core::table::{InflightTable, ProbeInfo};
use asdic_core::{Event, Outcome};
use asdic_engine::raw::{self, RawOptions};
use asdic_engine::{EngineError, Rx, RxFrame, RxLayer, SendError, Tx, TxBatch, TxLayer, now_ns};
use asdic_wire::inbound::{self, Inbound};
use asdic_wire::payload::{Key, Numbering, Stamp};
use asdic_wire::template::{Layer, ProbeFields, Template};

use crate::error::{Error, PingError};
use crate::options::{Options, OptionsError, Protocol};

/// The two halves of an engine, as [`Session::with_engine`]'s opener returns them.
pub type EngineHalves = (Box<dyn Tx>, Box<dyn Rx>);

/// Opens an engine for the options (the raw-socket engine, or a test double).
type Opener = dyn Fn(&Options) -> Result<EngineHalves, EngineError> + Send + Sync;

/// A request's completion.
type Done = Box<dyn FnOnce(Result<Pong, PingError>) + Send>;

/// Slots of the in-flight table: one per ICMP sequence number, the most tries that can be
/// told apart with a fixed identifier.
const TABLE_SLOTS: usize = 1 << 16;

/// How often a full send queue is retried before the request fails, 1 ms apart.
const BUSY_RETRIES: u32 = 50;

/// A reply: net-ping's `(target, sent, rcvd)` and a little more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    /// The target, as requested.
    pub target: IpAddr,
    /// When the first try of the request was sent.
    pub sent: SystemTime,
    /// When the reply arrived (the kernel's receive timestamp).
    pub rcvd: SystemTime,
    /// Round-trip time of the try that was answered.
    pub rtt: Duration,
    /// TTL / hop limit the reply arrived with, if known.
    pub ttl: Option<u8>,
    /// Which try was answered: 0 for the first, 1 for the first retry, …
    pub attempt: u8,
}

/// A ping session, as net-ping's `Session`: one address family, one raw socket, any number
/// of requests outstanding at once. `Send + Sync`: share it between threads in an `Arc`.
///
/// See the [crate documentation](crate) for an example.
pub struct Session {
    options: Options,
    open: Box<Opener>,
    socket: Mutex<Option<Arc<Socket>>>,
}

/// One open socket (engine) and what is outstanding on it; replaced after a close.
struct Socket {
    protocol: Protocol,
    retries: u8,
    timeout_ns: u64,
    table: Arc<InflightTable>,
    state: Mutex<State>,
    /// Tells the receiver thread to end.
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What sending needs, and the outstanding requests.
struct State {
    /// No more requests: the session closed this socket, or its receiver ended.
    closed: bool,
    tx: Option<Box<dyn Tx>>,
    batch: TxBatch,
    template: Template,
    key: Key,
    session: u32,
    numbering: Numbering,
    ttl: u8,
    next_cookie: u32,
    requests: HashMap<u32, Request>,
}

/// An outstanding request, by its cookie (the probe stamp's cookie).
struct Request {
    target: IpAddr,
    first_sent_ns: u64,
    /// The try in flight.
    attempt: u8,
    done: Done,
}

/// From an ICMP error: the rest-of-header word and a redirect's gateway.
type ErrorExtra = (u32, Option<IpAddr>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Callbacks never run under these mutexes, so a poisoned one can only follow a panic of
    // this crate's own code; the data is still consistent between statements.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Session {
    /// Validates the options and opens the raw socket (net-ping's `createSession`).
    ///
    /// Fails with [`Error::Options`] naming a bad option, or [`Error::Engine`] when the
    /// socket cannot be opened: [`EngineError::Permission`] names CAP_NET_RAW.
    pub fn new(options: Options) -> Result<Session, Error> {
        Session::with_engine(options, open_raw)
    }

    /// Like [`Session::new`], with another engine: `open` is called now and again for the
    /// first request after each [`close`](Session::close). The engine must send bare ICMP
    /// messages ([`TxLayer::Icmp`]), with the TTL set per socket from the options.
    pub fn with_engine(
        options: Options,
        open: impl Fn(&Options) -> Result<EngineHalves, EngineError> + Send + Sync + 'static,
    ) -> Result<Session, Error> {
        options.validate()?;
        let socket = Socket::open(&options, &open)?;
        Ok(Session {
            options,
            open: Box::new(open),
            socket: Mutex::new(Some(socket)),
        })
    }

    /// The session's options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Pings `target` and waits for the outcome (net-ping's `pingHost`, blocking): the
    /// reply, or why there was none. Takes at most `timeout × (retries + 1)` plus a few
    /// milliseconds, unless the session is closed first ([`PingError::Closed`]).
    ///
    /// Do not call it from a [`ping_host_with`](Session::ping_host_with) callback: those run
    /// on the thread that would deliver the answer.
    pub fn ping_host(&self, target: IpAddr) -> Result<Pong, PingError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.ping_host_with(target, move |r| {
            // The receiver only goes away if the waiting thread does; nothing to tell then.
            let _ = tx.send(r);
        });
        // Every request's callback runs exactly once; a dropped one means a panic in it.
        rx.recv().unwrap_or(Err(PingError::Closed))
    }

    /// Pings `target` and returns at once; `done` is called once with the outcome (net-ping's
    /// `pingHost` callback). It runs on the session's receiver thread, on the thread that
    /// closes the session, or, for errors found before sending (wrong family, no route, a
    /// closed session), on this thread before this call returns. Keep it short: it holds up
    /// the receiver thread.
    pub fn ping_host_with<F>(&self, target: IpAddr, done: F)
    where
        F: FnOnce(Result<Pong, PingError>) + Send + 'static,
    {
        if target.is_ipv4() != (self.options.protocol == Protocol::V4) {
            return done(Err(PingError::WrongFamily {
                target,
                protocol: self.options.protocol,
            }));
        }
        match self.current() {
            Ok(socket) => socket.start(target, Box::new(done)),
            Err(e) => done(Err(e)),
        }
    }

    /// Closes the raw socket and ends every outstanding request with [`PingError::Closed`]
    /// ("Socket forcibly closed"), before returning; the receiver thread is joined. The
    /// session stays usable: the next request opens a new socket.
    pub fn close(&self) {
        let socket = lock(&self.socket).take();
        if let Some(s) = socket {
            s.shut_down(true);
        }
    }

    /// Requests outstanding now.
    pub fn outstanding(&self) -> usize {
        let socket = lock(&self.socket).clone();
        socket.map_or(0, |s| lock(&s.state).requests.len())
    }

    /// The open socket, opening one after a close (or after the receiver failed).
    fn current(&self) -> Result<Arc<Socket>, PingError> {
        let mut current = lock(&self.socket);
        if let Some(s) = current.as_ref()
            && !lock(&s.state).closed
        {
            return Ok(s.clone());
        }
        if let Some(old) = current.take() {
            // Its receiver has ended or is ending; joining it here could wait for a callback
            // that waits for this mutex.
            old.shut_down(false);
        }
        let s =
            Socket::open(&self.options, &*self.open).map_err(|e| PingError::Engine(Arc::new(e)))?;
        *current = Some(s.clone());
        Ok(s)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("options", &self.options)
            .field("outstanding", &self.outstanding())
            .finish_non_exhaustive()
    }
}

/// Opens the raw-socket engine for the options.
fn open_raw(o: &Options) -> Result<EngineHalves, EngineError> {
    let (tx, rx) = raw::open(&RawOptions {
        v6: o.protocol == Protocol::V6,
        ttl: o.ttl,
        device: None,
        batch: 8,
        // A reply is as large as the request; leave room for IP headers and options.
        max_reply: (o.effective_packet_size() + 128).max(2048),
        rcvbuf: 4 << 20,
        sndbuf: 1 << 20,
    })?;
    Ok((Box::new(tx), Box::new(rx)))
}

/// A fresh MAC key and stamp session id per socket: replies to an earlier socket's probes
/// cannot validate against a later one's table.
fn secrets() -> (Key, u32, u32) {
    let mut b = [0u8; 24];
    if getrandom::fill(&mut b).is_err() {
        // No OS entropy source at all: fall back to the clock, which still tells sockets
        // apart (the MAC then guards against mistakes, not attackers).
        let t = now_ns().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % 8] ^ (i as u8).wrapping_mul(0x9d);
        }
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let session = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    let seq_key = u32::from_le_bytes([b[20], b[21], b[22], b[23]]);
    (Key::new(word(0), word(8)), session, seq_key)
}

impl Socket {
    fn open(options: &Options, open: &Opener) -> Result<Arc<Socket>, Error> {
        let (tx, rx) = open(options)?;
        let caps = tx.caps();
        if caps.layer != TxLayer::Icmp {
            return Err(Error::UnsupportedEngine(caps.engine));
        }
        let bad_size = || Error::Options(OptionsError::PacketSize(options.packet_size));
        let template = Template::new(
            options.protocol.family(),
            Layer::Icmp,
            options.payload_len(),
        )
        .map_err(|_| bad_size())?;
        if template.len() > caps.max_packet {
            return Err(bad_size());
        }
        let mut batch = TxBatch::new(1, template.len());
        let slot = batch.slot_mut(0).ok_or_else(bad_size)?;
        template.prepare(slot).map_err(|_| bad_size())?;
        let (key, session, seq_key) = secrets();
        let numbering = Numbering::Fixed {
            ident: options.session_id,
            key: seq_key,
        };
        let table = Arc::new(InflightTable::new(TABLE_SLOTS));
        let matcher = Matcher::new(table.clone(), key, session, numbering);
        let socket = Arc::new(Socket {
            protocol: options.protocol,
            retries: options.retries,
            timeout_ns: u64::try_from(options.timeout.as_nanos()).unwrap_or(u64::MAX),
            table,
            state: Mutex::new(State {
                closed: false,
                tx: Some(tx),
                batch,
                template,
                key,
                session,
                numbering,
                ttl: options.ttl,
                next_cookie: 0,
                requests: HashMap::new(),
            }),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        // Timeouts are noticed within a poll; keep it a small part of the timeout.
        let poll = (options.timeout / 8).clamp(Duration::from_millis(1), Duration::from_millis(20));
        let s = socket.clone();
        let handle = thread::Builder::new()
            .name(format!("asdic-session-{}", options.protocol.name()))
            .spawn(move || receive(&s, rx, matcher, poll))
            .map_err(Error::Thread)?;
        *lock(&socket.thread) = Some(handle);
        Ok(socket)
    }

    /// Sends the first try of a new request.
    fn start(&self, target: IpAddr, done: Done) {
        let mut st = lock(&self.state);
        if st.closed {
            drop(st);
            return done(Err(PingError::Closed));
        }
        let mut cookie = st.next_cookie;
        while st.requests.contains_key(&cookie) {
            cookie = cookie.wrapping_add(1);
        }
        st.next_cookie = cookie.wrapping_add(1);
        match self.send_try(&mut st, cookie, target, 0) {
            Ok(t) => {
                st.requests.insert(
                    cookie,
                    Request {
                        target,
                        first_sent_ns: t,
                        attempt: 0,
                        done,
                    },
                );
            }
            Err(e) => {
                drop(st);
                done(Err(e));
            }
        }
    }

    /// Claims the next probe number and sends try `attempt` of request `cookie`; returns its
    /// send time. A probe that could not be sent is marked so in the table.
    fn send_try(
        &self,
        st: &mut State,
        cookie: u32,
        target: IpAddr,
        attempt: u8,
    ) -> Result<u64, PingError> {
        // The state mutex makes this thread the table's single producer.
        let n = self.table.claimed();
        if !self.table.can_claim(n) {
            return Err(PingError::TooManyOutstanding);
        }
        let State {
            tx,
            batch,
            template,
            key,
            session,
            numbering,
            ttl,
            ..
        } = st;
        let Some(tx) = tx.as_mut() else {
            return Err(PingError::Closed);
        };
        let (ident, seq) = numbering.ident_seq(n);
        let t = now_ns();
        let stamp = Stamp {
            session: *session,
            n,
            cookie,
            t_send_ns: t,
        };
        let fields = ProbeFields::new(key, target, *ttl, ident, seq, stamp);
        batch.clear();
        // The batch has one slot of exactly the template's length, and it was just emptied.
        let Some(buf) = batch.push(target, template.len()) else {
            return Err(PingError::TooManyOutstanding);
        };
        if template.patch(buf, &fields).is_err() {
            return Err(PingError::WrongFamily {
                target,
                protocol: self.protocol,
            });
        }
        let info = ProbeInfo {
            n,
            target,
            cookie,
            t_send_ns: t,
            attempt,
            class: 0,
        };
        if !self.table.claim(&info) {
            return Err(PingError::TooManyOutstanding);
        }
        let mut busy = 0;
        loop {
            let error = match tx.send(batch, 0) {
                Ok(sent) if sent > 0 => return Ok(t),
                Ok(_) | Err(SendError::Busy { .. }) if busy < BUSY_RETRIES => {
                    busy += 1;
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Ok(_) | Err(SendError::Busy { .. }) => PingError::Send {
                    target,
                    error: std::io::Error::from(std::io::ErrorKind::WouldBlock),
                },
                Err(SendError::Packet { error, .. }) => PingError::Send { target, error },
                Err(SendError::Fatal(e)) => PingError::Engine(Arc::new(Error::Engine(e))),
            };
            let errno = match &error {
                PingError::Send { error, .. } => error.raw_os_error().unwrap_or(0),
                _ => 0,
            };
            // The reaper retires it; the request is completed by the caller.
            self.table.send_failed(n, errno);
            return Err(error);
        }
    }

    /// Turns one matched event into a completion, or into the next try.
    fn on_event(
        &self,
        st: &mut State,
        ev: Event,
        extra: ErrorExtra,
        done: &mut Vec<(Done, Result<Pong, PingError>)>,
    ) {
        let Some(req) = st.requests.get(&ev.cookie) else {
            return;
        };
        if req.target != ev.target {
            return;
        }
        let result = match ev.outcome {
            Outcome::Reply { rtt_ns, ttl, .. } => Ok(pong(req, &ev, rtt_ns, ttl)),
            // A late reply to an earlier try still answers the request.
            Outcome::Late { rtt_ns } => Ok(pong(req, &ev, rtt_ns, None)),
            Outcome::Error {
                family,
                icmp_type,
                code,
                from,
                ..
            } => Err(PingError::from_icmp(
                family, icmp_type, code, from, extra.0, extra.1,
            )),
            Outcome::Timeout if ev.attempt != req.attempt => return,
            Outcome::Timeout if req.attempt < self.retries => {
                let (target, next) = (req.target, req.attempt + 1);
                match self.send_try(st, ev.cookie, target, next) {
                    Ok(_) => {
                        if let Some(req) = st.requests.get_mut(&ev.cookie) {
                            req.attempt = next;
                        }
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Outcome::Timeout => Err(PingError::RequestTimedOut),
            // Sends fail synchronously (the caller completes those); duplicates add nothing.
            _ => return,
        };
        if let Some(req) = st.requests.remove(&ev.cookie) {
            done.push((req.done, result));
        }
    }

    /// Marks the socket closed, releases its send half and takes every outstanding request.
    fn take_all(&self) -> Vec<Done> {
        let mut st = lock(&self.state);
        st.closed = true;
        st.tx = None;
        st.requests.drain().map(|(_, r)| r.done).collect()
    }

    /// Closes: every outstanding request ends with `Closed`; the receiver thread is told to
    /// stop, and joined if `join`.
    fn shut_down(&self, join: bool) {
        let done = self.take_all();
        // Release: the thread sees `closed` (set above, under the mutex) once it sees this.
        self.stop.store(true, Ordering::Release);
        for d in done {
            d(Err(PingError::Closed));
        }
        let handle = lock(&self.thread).take();
        if let Some(h) = handle.filter(|_| join) {
            // A callback that closes the session runs on the receiver thread: it ends by
            // itself once the callback returns.
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// The reply to `req` that `ev` reports.
fn pong(req: &Request, ev: &Event, rtt_ns: u64, ttl: Option<u8>) -> Pong {
    Pong {
        target: req.target,
        sent: time(req.first_sent_ns),
        rcvd: time(ev.t_send_ns.saturating_add(rtt_ns)),
        rtt: Duration::from_nanos(rtt_ns),
        ttl,
        attempt: ev.attempt,
    }
}

/// Ends the outstanding requests of a socket whose receiver thread stops for any reason
/// (closed, engine failure, panic).
struct FailOnExit<'a> {
    socket: &'a Socket,
    error: Option<EngineError>,
}

impl Drop for FailOnExit<'_> {
    fn drop(&mut self) {
        let done = self.socket.take_all();
        let error = self.error.take().map(|e| Arc::new(Error::Engine(e)));
        for d in done {
            d(Err(match &error {
                Some(e) => PingError::Engine(e.clone()),
                None => PingError::Closed,
            }));
        }
    }
}

/// The receiver thread: frames → matcher → events; the reaper; completions.
fn receive(socket: &Socket, mut rx: Box<dyn Rx>, mut matcher: Matcher, poll: Duration) {
    let mut guard = FailOnExit {
        socket,
        error: None,
    };
    let mut events: Vec<(Event, ErrorExtra)> = Vec::new();
    let mut done = Vec::new();
    // Acquire: pairs with the release store in `shut_down`.
    while !socket.stop.load(Ordering::Acquire) {
        let got = rx.recv(poll, &mut |f| on_frame(&mut matcher, &f, &mut events));
        if let Err(e) = got {
            guard.error = Some(e);
            return;
        }
        matcher.reap(now_ns(), socket.timeout_ns, &mut |ev, _| {
            events.push((ev, (0, None)));
        });
        if events.is_empty() {
            continue;
        }
        {
            let mut st = lock(&socket.state);
            if st.closed {
                return;
            }
            for (ev, extra) in events.drain(..) {
                socket.on_event(&mut st, ev, extra, &mut done);
            }
        }
        for (d, r) in done.drain(..) {
            d(r);
        }
    }
}

/// Parses a frame and lets the matcher validate and resolve it; keeps what an ICMP error
/// carries beyond the matcher's event (MTU, pointer, gateway).
fn on_frame(matcher: &mut Matcher, f: &RxFrame<'_>, events: &mut Vec<(Event, ErrorExtra)>) {
    if f.truncated {
        return;
    }
    let parsed = match f.layer {
        RxLayer::Ipv4 => inbound::parse_ipv4(f.data),
        RxLayer::Icmpv6 { src, hop_limit } => inbound::parse_icmpv6(f.data, src, hop_limit),
        RxLayer::Ethernet => inbound::parse_ethernet(f.data),
    };
    let Ok(msg) = parsed else {
        return;
    };
    let extra = match &msg {
        Inbound::Error(e) => (e.rest, e.gateway),
        _ => (0, None),
    };
    matcher.on_inbound(&msg, f.ts_ns, &mut |ev| events.push((ev, extra)));
}

#[cfg(test)]
mod tests;
