//! Pings every address on the command line at once, as net-ping's example does, prints each
//! outcome as it arrives, then closes the sessions.
//!
//! ```text
//! ping [-t TTL] [-s PACKET_SIZE] [-r RETRIES] [-w TIMEOUT_MS] [-i SESSION_ID] ADDRESS...
//! ```
//!
//! IPv4 and IPv6 addresses may be mixed: one session per family, as net-ping requires.
//! Exit status 0 when every address answered, 1 when some did not, 2 for bad arguments,
//! 4 when a session could not open (e.g. without CAP_NET_RAW).

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, UNIX_EPOCH};

use asdic_session::{Options, Pong, Protocol, Session};

fn usage(why: &str) -> ExitCode {
    eprintln!("ping: {why}");
    eprintln!(
        "usage: ping [-t TTL] [-s PACKET_SIZE] [-r RETRIES] [-w TIMEOUT_MS] [-i SESSION_ID] \
         ADDRESS..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut options = Options::default();
    let mut targets: Vec<IpAddr> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if let Some(flag) = a.strip_prefix('-').filter(|f| f.len() == 1) {
            let Some(value) = args.next() else {
                return usage(&format!("-{flag} needs a value"));
            };
            let bad = || usage(&format!("-{flag}: bad value {value:?}"));
            match flag {
                "t" => match value.parse() {
                    Ok(v) => options.ttl = v,
                    Err(_) => return bad(),
                },
                "s" => match value.parse() {
                    Ok(v) => options.packet_size = v,
                    Err(_) => return bad(),
                },
                "r" => match value.parse() {
                    Ok(v) => options.retries = v,
                    Err(_) => return bad(),
                },
                "w" => match value.parse() {
                    Ok(v) => options.timeout = Duration::from_millis(v),
                    Err(_) => return bad(),
                },
                "i" => match value.parse() {
                    Ok(v) => options.session_id = v,
                    Err(_) => return bad(),
                },
                _ => return usage(&format!("unknown flag -{flag}")),
            }
        } else {
            match a.parse() {
                Ok(t) => targets.push(t),
                Err(_) => return usage(&format!("not an IP address: {a}")),
            }
        }
    }
    if targets.is_empty() {
        return usage("no address given");
    }

    // One session per family in use.
    let mut sessions = Vec::new();
    for protocol in [Protocol::V4, Protocol::V6] {
        if !targets
            .iter()
            .any(|t| t.is_ipv4() == (protocol == Protocol::V4))
        {
            continue;
        }
        let o = Options {
            protocol,
            ..options.clone()
        };
        match Session::new(o) {
            Ok(s) => sessions.push(s),
            Err(e @ asdic_session::Error::Options(_)) => return usage(&e.to_string()),
            Err(e) => {
                eprintln!("ping: {e}");
                return ExitCode::from(4);
            }
        }
    }

    let (tx, rx) = mpsc::channel();
    for &target in &targets {
        let session = sessions
            .iter()
            .find(|s| target.is_ipv4() == (s.options().protocol == Protocol::V4))
            .expect("a session was opened for every family in use");
        let tx = tx.clone();
        session.ping_host_with(target, move |r| {
            // The loop below waits for every result; it is still there.
            let _ = tx.send((target, r));
        });
    }
    drop(tx);

    let mut alive = 0;
    for (target, result) in rx.iter().take(targets.len()) {
        match result {
            Ok(p) => {
                alive += 1;
                println!("{}", describe(&p));
            }
            Err(e) => println!("{target}: {e}"),
        }
    }
    for s in &sessions {
        s.close();
    }
    if alive == targets.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn describe(p: &Pong) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let since = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ttl = p.ttl.map_or(String::from("?"), |t| t.to_string());
    format!(
        "{}: Alive (rtt {:.3} ms, ttl {ttl}, try {}, sent {:.6}, rcvd {:.6})",
        p.target,
        ms(p.rtt),
        p.attempt + 1,
        since(p.sent).as_secs_f64(),
        since(p.rcvd).as_secs_f64(),
    )
}
