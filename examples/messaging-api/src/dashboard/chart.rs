//! The usage chart: one key's requests and 429s per day as an SVG bar
//! chart, drawn on the server (presentation attributes only, no style or
//! script, so the Content Security Policy holds).

use std::fmt::Write;

use super::html::esc;
use crate::routes::usage::DayUsage;

const WIDTH: usize = 720;
const HEIGHT: usize = 180;
const AXIS: usize = 24;

/// A bar per day (oldest first): the day's requests in blue, the part the
/// rate limit refused (429) in red over it; each bar's `<title>` states
/// its numbers, and the chart's label sums them up.
pub fn bars(title: &str, days: &[DayUsage]) -> String {
    let max = days.iter().map(|day| day.requests).max().unwrap_or(0).max(1);
    let total: u64 = days.iter().map(|day| day.requests).sum();
    let limited: u64 = days.iter().map(|day| day.rate_limited).sum();
    let label = format!(
        "{title}: {total} requests and {limited} refused with 429 over the last {} days",
        days.len()
    );
    let slot = WIDTH / days.len().max(1);
    let bar = slot.saturating_sub(4).max(1);
    let plot = (HEIGHT - AXIS) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>\
         <line x1=\"0\" y1=\"{y}\" x2=\"{WIDTH}\" y2=\"{y}\" stroke=\"#888\" stroke-width=\"1\"/>",
        esc(&label),
        esc(&label),
        y = HEIGHT - AXIS
    );
    for (index, day) in days.iter().enumerate() {
        let x = index * slot + 2;
        let height = (day.requests as f64 / max as f64 * plot).round();
        let refused = (day.rate_limited.min(day.requests) as f64 / max as f64 * plot).round();
        let top = plot - height;
        let _ = write!(
            svg,
            "<g><title>{}: {} requests, {} refused (429)</title>\
             <rect x=\"{x}\" y=\"{top}\" width=\"{bar}\" height=\"{height}\" fill=\"#2f6fde\"/>\
             <rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{refused}\" fill=\"#d23a3a\"/></g>",
            esc(&day.date),
            day.requests,
            day.rate_limited,
            plot - refused
        );
    }
    // The first and last dates under the axis.
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            svg,
            "<text x=\"2\" y=\"{y}\" font-size=\"12\" fill=\"#444\">{}</text>\
             <text x=\"{WIDTH}\" y=\"{y}\" font-size=\"12\" fill=\"#444\" text-anchor=\"end\">{}</text>",
            esc(&first.date),
            esc(&last.date),
            y = HEIGHT - 6
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, requests: u64, rate_limited: u64) -> DayUsage {
        DayUsage {
            date: date.into(),
            requests,
            rate_limited,
        }
    }

    #[test]
    fn one_bar_pair_per_day_scaled_to_the_busiest_day() {
        let svg = bars("<key>", &[day("2026-12-01", 10, 0), day("2026-12-02", 5, 5)]);
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("aria-label=\"&lt;key&gt;: 15 requests and 5 refused with 429 over the last 2 days\""));
        assert!(svg.contains("<title>2026-12-02: 5 requests, 5 refused (429)</title>"));
        // The busiest day fills the plot (156 px); the other is half of it, all refused.
        assert!(svg.contains("y=\"0\" width=\"356\" height=\"156\""), "{svg}");
        assert!(
            svg.contains("y=\"78\" width=\"356\" height=\"78\" fill=\"#2f6fde\""),
            "{svg}"
        );
        assert!(!svg.contains("<key>"));
    }

    #[test]
    fn an_idle_key_draws_empty_bars() {
        let svg = bars("idle", &[day("2026-12-01", 0, 0)]);
        assert!(svg.contains("height=\"0\""));
    }
}
