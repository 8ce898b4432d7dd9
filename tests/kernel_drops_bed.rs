//! The socket engines' kernel drop count against the bed: a receiver stalled on purpose with
//! a small receive buffer (fault injection) makes the kernel drop replies at the socket; what
//! asdic reports lost (`sk_drops`, read with SO_MEMINFO) plus what it matched must equal what
//! the bed answered, for raw sockets and io_uring alike.

use asdic_tests::{Bed, col_u64, read_parquet, require_bed, scratch, stderr_of};

#[test]
fn a_stalled_socket_receiver_reports_exactly_what_the_kernel_dropped() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("kdsock", &[]);
    for engine in ["raw", "uring"] {
        let answered0 = bed.counter("replied") + bed.counter("rejected");
        let out = scratch(&format!("kdsock-{engine}.parquet"));
        let args = [
            "ping",
            "198.19.0.0/18",
            "--engine",
            engine,
            "--rate",
            "100000",
            "-W",
            "3s",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ];
        let mut c = bed.command_with_faults(
            &args,
            &[
                ("ASDIC_INJECT_RX_STALL_MS", "1500"),
                ("ASDIC_INJECT_RCVBUF", "262144"),
            ],
        );
        let o = c.output().expect("asdic");
        let err = stderr_of(&o);
        if engine == "uring" && err.contains("--engine uring:") && err.contains("not available") {
            eprintln!("io_uring not available here; uring part skipped: {err}");
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{engine}: {err}");
        let (rows, meta) = read_parquet(&out);
        let lost = meta.kernel_lost.unwrap();
        let overflow = meta.kernel_counter("socket_overflow").unwrap();
        assert!(
            lost > 1_000,
            "{engine}: the small buffer overflowed: {lost}\n{err}"
        );
        assert_eq!(lost, overflow, "{engine}: all of it at the socket");
        let matched: u64 = rows
            .iter()
            .map(|r| col_u64(r, "received") + col_u64(r, "errors"))
            .sum();
        let answered = bed.counter("replied") + bed.counter("rejected") - answered0;
        assert_eq!(matched + lost, answered, "{engine}: {err}");
        assert!(
            err.contains(&format!(
                "{lost} lost in the kernel (socket_overflow {lost})"
            )),
            "{err}"
        );
        eprintln!(
            "{engine}: {matched} matched + {lost} dropped at the socket = {answered} answered"
        );
    }
}
