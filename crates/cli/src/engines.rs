//! The engine flags as the runtime takes them, and the faults the hooked test build injects
//! (the engines themselves, auto's fallback and the engine line are `asdic_runtime::engines`).

use asdic_runtime::Faults;
pub use asdic_runtime::engines::{
    EngineOptions, Opener, RunHints, engine_line, engine_names, stamp_points,
};

/// Faults the bed tests inject through the environment (what a crash leaves behind, what a
/// stalled receiver costs), in the hooked test build only (`--features testing`): the
/// release binary, which may carry file capabilities, reads no such variable.
#[cfg(feature = "testing")]
pub fn injected_faults() -> Faults {
    let ms = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| std::time::Duration::from_millis(ms.min(10_000)))
    };
    Faults {
        rx_panic_after: std::env::var_os("ASDIC_INJECT_PANIC")
            .filter(|v| v == "rx")
            .map(|_| std::time::Duration::from_millis(300)),
        rx_stall: ms("ASDIC_INJECT_RX_STALL_MS"),
        // "AFTER_MS:STEP_MS": the realtime clock pretends to step by STEP_MS (signed).
        clock_step: std::env::var("ASDIC_INJECT_CLOCK_STEP").ok().and_then(|v| {
            let (after, by) = v.split_once(':')?;
            let after = std::time::Duration::from_millis(after.parse::<u64>().ok()?.min(10_000));
            Some((after, by.parse::<i64>().ok()?.saturating_mul(1_000_000)))
        }),
    }
}

#[cfg(not(feature = "testing"))]
pub fn injected_faults() -> Faults {
    Faults::default()
}

/// The sockets' receive buffer for the test that checks their drop count against the bed (a
/// small buffer overflows while the receiver is stalled): hooked test build only.
#[cfg(feature = "testing")]
pub fn injected_rcvbuf() -> Option<usize> {
    std::env::var("ASDIC_INJECT_RCVBUF")
        .ok()
        .and_then(|v| v.parse().ok())
}

#[cfg(not(feature = "testing"))]
pub fn injected_rcvbuf() -> Option<usize> {
    None
}
