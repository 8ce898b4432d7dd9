//! [`Session`]: a net-ping layer over asdic's runtime. Each open socket is one runtime
//! pipeline (the sender and receiver threads of the `asdic` command, its probe builder and its
//! matcher) fed by a [`Feed`]: a request hands its try to the feed's injector, the sender
//! builds and sends it, the receiver validates what comes back (payload MAC, also of the probe
//! an ICMP error quotes) and reaps tries older than the timeout. The session's own thread
//! reads the runtime's events and, under the state mutex, turns them into completions: a
//! reply or an error ends the request, a timeout injects the next try or ends it. Callbacks
//! always run after the mutex is released.

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asdic_core::retry::Retry;
use asdic_core::source::{Feed, InjectError, Injector};
use asdic_core::{Event, Outcome};
use asdic_engine::raw::{self, RawOptions};
use asdic_engine::{EngineError, Rx, Tx, TxLayer, now_ns};
use asdic_receiver::rx::RxConfig;
use asdic_runtime::{EngineUsed, Pipeline, StartError, Started, Stopper, Work};
use asdic_sender::tx::SenderConfig;
use asdic_wire::payload::{Key, Numbering};

use crate::error::{Error, PingError};
use crate::options::{Options, OptionsError, Protocol};

/// The two halves of an engine, as [`Session::with_engine`]'s opener returns them.
pub type EngineHalves = (Box<dyn Tx>, Box<dyn Rx>);

/// Opens an engine for the options (the raw-socket engine, io_uring's, or a test double).
type Opener = dyn Fn(&Options) -> Result<EngineHalves, EngineError> + Send + Sync;

/// A request's completion.
type Done = Box<dyn FnOnce(Result<Pong, PingError>) + Send>;

/// Slots of the in-flight table: one per ICMP sequence number, the most tries that can be
/// told apart with a fixed identifier.
const TABLE_SLOTS: usize = 1 << 16;

/// Probes per engine call: requests made together go out together.
const BATCH: usize = 8;

/// The session sends as fast as its requests come: no rate cap of its own.
const UNCAPPED: f64 = 1e9;

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

/// A ping session, as net-ping's `Session`: one address family, one engine (a raw socket by
/// default), any number of requests outstanding at once. `Send + Sync`: share it between threads in an `Arc`.
///
/// See the [crate documentation](crate) for an example.
pub struct Session {
    options: Options,
    open: Box<Opener>,
    socket: Mutex<Option<Arc<Socket>>>,
}

/// One open engine: its runtime pipeline and what is outstanding on it; replaced after a
/// close.
struct Socket {
    retries: u8,
    state: Mutex<State>,
    /// Ends the pipeline.
    stopper: Stopper,
    /// The event thread, which joins the pipeline's threads when they end.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The outstanding requests, and the way to the sender.
struct State {
    /// No more requests: the session closed this socket, or its pipeline ended.
    closed: bool,
    inject: Option<Injector>,
    next_cookie: u32,
    requests: HashMap<u32, Request>,
}

/// An outstanding request, by its cookie (the runtime's handle on it, in its probe stamps).
struct Request {
    target: IpAddr,
    /// When its first try left, once the runtime has said.
    first_sent_ns: Option<u64>,
    /// A reply to the try in flight that came after its timeout, before the timeout was
    /// reported.
    late: Option<Pong>,
    /// The try in flight.
    attempt: u8,
    done: Done,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Callbacks never run under these mutexes, so a poisoned one can only follow a panic of
    // this crate's own code; the data is still consistent between statements.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Session {
    /// Validates the options and opens the raw socket (net-ping's `createSession`); see
    /// [`Session::with_engine`] and [`open_uring`] for io_uring.
    ///
    /// Fails with [`Error::Options`] naming a bad option, or [`Error::Engine`] when the
    /// socket cannot be opened: [`EngineError::Permission`] names CAP_NET_RAW.
    pub fn new(options: Options) -> Result<Session, Error> {
        Session::with_engine(options, open_raw)
    }

    /// Like [`Session::new`], with another engine ([`open_raw`], [`open_uring`] with the
    /// `uring` feature, or your own): `open` is called now and again for the first request
    /// after each [`close`](Session::close). The engine must send bare ICMP messages
    /// ([`TxLayer::Icmp`]), with the TTL set per socket from the options.
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
    /// `pingHost` callback). It runs on the session's event thread, on the thread that
    /// closes the session, or, for errors found before sending (wrong family, a closed
    /// session, too many outstanding), on this thread before this call returns. Keep it
    /// short: it holds up the event thread.
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
    /// ("Socket forcibly closed"), before returning; the session's threads are joined. The
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

    /// The open socket, opening one after a close (or after its pipeline failed).
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

/// Opens the raw-socket engine for the options: [`Session::new`]'s engine.
pub fn open_raw(o: &Options) -> Result<EngineHalves, EngineError> {
    let (tx, rx) = raw::open(&raw_options(o))?;
    Ok((Box::new(tx), Box::new(rx)))
}

/// Opens the io_uring engine for the options (the `uring` feature): the same raw socket,
/// with sends and receives through a ring. `Session::with_engine(options, open_uring)`.
#[cfg(feature = "uring")]
pub fn open_uring(o: &Options) -> Result<EngineHalves, EngineError> {
    use asdic_engine::uring::{self, UringOptions};
    let (tx, rx) = uring::open(&UringOptions {
        socket: raw_options(o),
        ..UringOptions::default()
    })?;
    Ok((Box::new(tx), Box::new(rx)))
}

fn raw_options(o: &Options) -> RawOptions {
    RawOptions {
        v6: o.protocol == Protocol::V6,
        ttl: o.ttl,
        device: None,
        batch: BATCH,
        max_reply: RawOptions::reply_room(o.effective_packet_size()),
        rcvbuf: 4 << 20,
        sndbuf: 1 << 20,
        tx_stamps: true,
    }
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
        let used = EngineUsed {
            name: caps.engine,
            what: "the session's engine",
            why: "as opened".into(),
            detail: String::new(),
        };
        let family = options.protocol.family();
        let mut pipeline = Pipeline::new(family, TABLE_SLOTS, (tx, vec![rx]), used);
        let stopper = pipeline.stopper();
        // Bounded by the requests `start` admits (one try each).
        let (inject, feed) = Feed::unbounded();
        let started = asdic_runtime::start_all(
            std::slice::from_mut(&mut pipeline),
            vec![work(options, feed)],
            &[options.payload_len()],
            &[],
        )
        .map_err(|e| match e {
            StartError::Usage(_) => Error::Options(OptionsError::PacketSize(options.packet_size)),
            StartError::System(e) => Error::Thread(std::io::Error::other(format!("{e:#}"))),
        })?;
        let socket = Arc::new(Socket {
            retries: options.retries,
            state: Mutex::new(State {
                closed: false,
                inject: Some(inject),
                next_cookie: 0,
                requests: HashMap::new(),
            }),
            stopper,
            thread: Mutex::new(None),
        });
        let s = socket.clone();
        let spawned = thread::Builder::new()
            .name(format!("asdic-session-{}", options.protocol.name()))
            .spawn(move || deliver(&s, started));
        match spawned {
            Ok(handle) => *lock(&socket.thread) = Some(handle),
            Err(e) => {
                // Nobody reads the events: end the pipeline (its threads end by themselves).
                socket.stopper.abort();
                lock(&socket.state).inject = None;
                return Err(Error::Thread(e));
            }
        }
        Ok(socket)
    }

    /// Hands the first try of a new request to the sender.
    fn start(&self, target: IpAddr, done: Done) {
        let mut st = lock(&self.state);
        if st.closed {
            drop(st);
            return done(Err(PingError::Closed));
        }
        // One try in flight per request: as many requests as the table has slots.
        if st.requests.len() >= TABLE_SLOTS {
            drop(st);
            return done(Err(PingError::TooManyOutstanding));
        }
        let mut cookie = st.next_cookie;
        while st.requests.contains_key(&cookie) {
            cookie = cookie.wrapping_add(1);
        }
        st.next_cookie = cookie.wrapping_add(1);
        match inject(&st, cookie, target, 0) {
            Ok(()) => {
                st.requests.insert(
                    cookie,
                    Request {
                        target,
                        first_sent_ns: None,
                        late: None,
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

    /// Turns one event of the runtime into a completion, or into the next try.
    fn on_event(
        &self,
        st: &mut State,
        ev: &Event,
        done: &mut Vec<(Done, Result<Pong, PingError>)>,
    ) {
        let Some(req) = st.requests.get_mut(&ev.cookie) else {
            return;
        };
        if req.target != ev.target {
            return;
        }
        if ev.attempt == 0
            && let Some(t) = ev.sent_ns
        {
            req.first_sent_ns.get_or_insert(t);
        }
        let result = match ev.outcome {
            Outcome::Reply { rtt_ns, ttl, .. } => Ok(pong(req, ev, rtt_ns, ttl)),
            // A late reply to an earlier try still answers the request (a retry is out).
            Outcome::Late { rtt_ns } if ev.attempt < req.attempt => Ok(pong(req, ev, rtt_ns, None)),
            // Late for the try in flight: its timeout comes next, and decides.
            Outcome::Late { rtt_ns } => {
                req.late = Some(pong(req, ev, rtt_ns, None));
                return;
            }
            Outcome::Error {
                family,
                icmp_type,
                code,
                from,
                rest,
                gateway,
                ..
            } => Err(PingError::from_icmp(
                family, icmp_type, code, from, rest, gateway,
            )),
            Outcome::SendFailed { errno } => Err(PingError::Send {
                target: req.target,
                error: std::io::Error::from_raw_os_error(errno),
            }),
            Outcome::Timeout if ev.attempt != req.attempt => return,
            // The try timed out but answered late, and another try was due: the answer stands.
            Outcome::Timeout if req.attempt < self.retries && req.late.is_some() => {
                req.late.take().ok_or(PingError::RequestTimedOut)
            }
            Outcome::Timeout if req.attempt < self.retries => {
                let (target, next) = (req.target, req.attempt + 1);
                req.attempt = next;
                match inject(st, ev.cookie, target, next) {
                    Ok(()) => return,
                    Err(e) => Err(e),
                }
            }
            Outcome::Timeout => Err(PingError::RequestTimedOut),
            // Duplicates add nothing.
            _ => return,
        };
        if let Some(req) = st.requests.remove(&ev.cookie) {
            done.push((req.done, result));
        }
    }

    /// Marks the socket closed, lets go of its feed (the sender ends once it has sent what it
    /// holds) and takes every outstanding request.
    fn take_all(&self) -> Vec<Done> {
        let mut st = lock(&self.state);
        st.closed = true;
        st.inject = None;
        st.requests.drain().map(|(_, r)| r.done).collect()
    }

    /// Closes: every outstanding request ends with `Closed`; the pipeline is aborted, and
    /// the event thread (which joins the pipeline's threads) joined if `join`.
    fn shut_down(&self, join: bool) {
        let done = self.take_all();
        self.stopper.abort();
        for d in done {
            d(Err(PingError::Closed));
        }
        let handle = lock(&self.thread).take();
        if let Some(h) = handle.filter(|_| join) {
            // A callback that closes the session runs on the event thread: it ends by itself
            // once the callback returns.
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// The runtime's work for a session's pipeline: tries from `feed`, no rate cap, the session's
/// identifier with keyed sequence numbers, no retries of the runtime's own (the session sends
/// them, per request).
fn work(options: &Options, feed: Feed) -> Work {
    let (key, session, seq_key) = secrets();
    // Timeouts are noticed within a poll; keep it a small part of the timeout.
    let poll = (options.timeout / 8).clamp(Duration::from_millis(1), Duration::from_millis(20));
    Work {
        sender: SenderConfig {
            rate: UNCAPPED,
            batch: BATCH,
            per_call: false,
            ttl: options.ttl,
            numbering: Numbering::Fixed {
                ident: options.session_id,
                key: seq_key,
            },
            session,
            key,
            retries: false,
            flow: None,
        },
        receiver: RxConfig {
            timeout: options.timeout,
            retries: 0,
            poll,
            batch: 64,
            clock_step: None,
        },
        source: Box::new(feed),
        scan: vec![],
        flow_source: None,
    }
}

/// Hands try `attempt` of request `cookie` to the sender.
fn inject(st: &State, cookie: u32, target: IpAddr, attempt: u8) -> Result<(), PingError> {
    let Some(inject) = st.inject.as_ref() else {
        return Err(PingError::Closed);
    };
    let p = Retry {
        cookie,
        target,
        attempt,
        class: 0,
    };
    inject.probe(p).map_err(|e| match e {
        InjectError::Full => PingError::TooManyOutstanding,
        InjectError::Ended => PingError::Closed,
    })
}

/// The reply to `req` that `ev` reports.
fn pong(req: &Request, ev: &Event, rtt_ns: u64, ttl: Option<u8>) -> Pong {
    // A session's tries are tracked: every event carries its send time.
    let sent = ev.sent_ns.unwrap_or_default();
    Pong {
        target: req.target,
        sent: time(req.first_sent_ns.unwrap_or(sent)),
        rcvd: time(sent.saturating_add(rtt_ns)),
        rtt: Duration::from_nanos(rtt_ns),
        ttl,
        attempt: ev.attempt,
    }
}

/// The event thread: the runtime's events → completions. When the pipeline ends (closed, or
/// an engine failure, or a panic in it), its threads are joined and the requests still
/// outstanding end with the failure, or `Closed`.
fn deliver(socket: &Socket, started: Started) {
    let Started {
        handles,
        events,
        recycle,
    } = started;
    let mut done = Vec::new();
    for mut batch in events.iter() {
        {
            let mut st = lock(&socket.state);
            if !st.closed {
                for ev in &batch {
                    socket.on_event(&mut st, ev, &mut done);
                }
            }
        }
        for (d, r) in done.drain(..) {
            d(r);
        }
        batch.clear();
        let _ = recycle.try_send(batch);
    }
    let (_, failure) = asdic_runtime::join_all(handles);
    let error = failure.map(|e| {
        Arc::new(match e.downcast::<EngineError>() {
            Ok(e) => Error::Engine(e),
            Err(e) => Error::Failed(format!("{e:#}")),
        })
    });
    for d in socket.take_all() {
        d(Err(match &error {
            Some(e) => PingError::Engine(e.clone()),
            None => PingError::Closed,
        }));
    }
}

#[cfg(test)]
mod tests;
