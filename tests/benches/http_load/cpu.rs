//! CPU time of this process's threads, by thread name, from Linux's
//! `/proc/self/task/<tid>/schedstat` (nanoseconds on a CPU).
//!
//! Throughput on a shared machine moves with whatever else runs; the CPU
//! time the server thread spends per request moves much less, so the
//! report shows both. Elsewhere than Linux the figures are absent.

use std::fs;
use std::time::Duration;

/// Total CPU time so far of every thread whose name starts with `prefix`
/// (Tokio names its workers and blocking threads alike), or `None` when
/// `/proc` cannot tell.
pub fn threads_cpu_time(prefix: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut found = false;
    for entry in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let task = entry.path();
        // A thread may end between listing and reading: skip it.
        let Ok(name) = fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(schedstat) = fs::read_to_string(task.join("schedstat")) else {
            continue;
        };
        // "<ns on CPU> <ns waiting for a CPU> <timeslices>"
        let on_cpu: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
        total += on_cpu;
        found = true;
    }
    found.then_some(Duration::from_nanos(total))
}
