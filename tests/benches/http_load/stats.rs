//! From samples to figures: one run's throughput, latency percentiles and
//! CPU use, and the median over repeated runs.

use std::time::Duration;

use crate::load::Sample;

/// One measurement's figures.
#[derive(Clone, Debug)]
pub struct Run {
    /// Responses per second in the measured window.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Server threads' CPU time per response, microseconds.
    pub server_us_per_request: Option<f64>,
    /// Share of the window the server threads were on a CPU (1.0 = one core).
    pub server_busy: Option<f64>,
    /// Share of the window the load generator's threads were on a CPU.
    pub load_busy: Option<f64>,
    /// Redis's CPU time per response (warm-up included), microseconds.
    pub redis_us_per_request: Option<f64>,
}

impl Run {
    /// The figures of `sample`, taken over a window of `measured`, with
    /// the CPU time Redis spent over the whole measurement, if known.
    pub fn of(sample: &Sample, measured: Duration, redis_cpu: Option<Duration>) -> Run {
        let seconds = measured.as_secs_f64();
        let responses = sample.responses as f64;
        Run {
            rps: responses / seconds,
            p50_ms: percentile(&sample.latencies, 50.0) as f64 / 1e6,
            p99_ms: percentile(&sample.latencies, 99.0) as f64 / 1e6,
            server_us_per_request: sample.server_cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / responses),
            server_busy: sample.server_cpu.map(|cpu| cpu.as_secs_f64() / seconds),
            load_busy: sample.load_cpu.map(|cpu| cpu.as_secs_f64() / seconds),
            redis_us_per_request: redis_cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / sample.all_responses.max(1) as f64),
        }
    }
}

/// The median of each figure over several runs of one configuration at one
/// concurrency.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Each figure's own median, so they may come from different runs.
    pub median: Run,
    /// Every run's throughput, in the order measured.
    pub each_rps: Vec<f64>,
}

impl Summary {
    /// Summarises `runs` (at least one).
    pub fn of(runs: &[Run]) -> Summary {
        let optional = |figure: fn(&Run) -> Option<f64>| -> Option<f64> {
            let values: Option<Vec<f64>> = runs.iter().map(figure).collect();
            values.map(median)
        };
        let median = Run {
            rps: median(runs.iter().map(|run| run.rps).collect()),
            p50_ms: median(runs.iter().map(|run| run.p50_ms).collect()),
            p99_ms: median(runs.iter().map(|run| run.p99_ms).collect()),
            server_us_per_request: optional(|run| run.server_us_per_request),
            server_busy: optional(|run| run.server_busy),
            load_busy: optional(|run| run.load_busy),
            redis_us_per_request: optional(|run| run.redis_us_per_request),
        };
        Summary {
            median,
            each_rps: runs.iter().map(|run| run.rps).collect(),
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[u64], percent: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}
