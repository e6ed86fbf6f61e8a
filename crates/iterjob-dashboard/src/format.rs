//! Numbers, times, rates and ETAs as an operator reads them.

use iterjob::store::{Millis, now_millis};
use iterjob::{JobRecord, JobState};
use serde::Serialize;

/// `1234567` → `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in seconds as `3h 05m`, `4m 09s`, `12s`.
pub(crate) fn duration_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Milliseconds since the epoch as `2026-11-27 23:01:02 UTC`.
pub(crate) fn time(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// How long ago (or from now) `ms` is: `5m 02s ago`, `in 30s`.
pub(crate) fn relative(ms: Millis) -> String {
    let now = now_millis();
    if ms <= now {
        format!("{} ago", duration_secs(((now - ms) / 1000) as u64))
    } else {
        format!("in {}", duration_secs(((ms - now) / 1000) as u64))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A rate in items per second, readable: `1,234/s`, `3.5/s`, `0.20/s`.
pub(crate) fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "–".to_string()
    } else if per_sec >= 100.0 {
        format!("{}/s", count(per_sec.round() as u64))
    } else if per_sec >= 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.2}/s")
    }
}

/// A job's progress as shown on every page and sent live.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct ProgressView {
    pub(crate) id: i64,
    pub(crate) state: &'static str,
    /// `running · pause requested` and the like.
    pub(crate) state_text: String,
    pub(crate) items_done: u64,
    /// 0 when unknown: the bar is then indeterminate.
    pub(crate) items_total: u64,
    /// `12,345 / 60,000 (20.6%)`.
    pub(crate) items_text: String,
    pub(crate) rate_text: String,
    pub(crate) eta_text: String,
    /// Buttons that make sense in this state.
    pub(crate) can_pause: bool,
    pub(crate) can_resume: bool,
    pub(crate) can_cancel: bool,
    pub(crate) can_retry: bool,
    /// Finished or paused, and not a partition (deleted with its parent).
    pub(crate) can_delete: bool,
}

impl ProgressView {
    /// The view of `job`, with `rate` items per second if measured (else the
    /// average over the job's running time).
    pub(crate) fn of(job: &JobRecord, measured_rate: Option<f64>) -> Self {
        let average =
            (job.running_ms > 0).then(|| job.items_done as f64 / (job.running_ms as f64 / 1000.0));
        let rate = measured_rate.or(average).filter(|r| r.is_finite());
        let total = job.items_total.unwrap_or(0);
        let items_text = match job.items_total {
            Some(t) if t > 0 => format!(
                "{} / {} ({:.1}%)",
                count(job.items_done),
                count(t),
                (job.items_done as f64 / t as f64 * 100.0).min(100.0)
            ),
            _ => format!("{} items", count(job.items_done)),
        };
        let eta_text = match (job.state, job.items_total, rate) {
            (JobState::Completed, _, _) => "done".to_string(),
            (s, _, _) if s.is_finished() => "–".to_string(),
            (JobState::Running, Some(t), Some(r)) if r > 0.0 && t >= job.items_done => {
                format!(
                    "ETA {}",
                    duration_secs(((t - job.items_done) as f64 / r).ceil() as u64)
                )
            }
            _ => "–".to_string(),
        };
        let rate_text = if job.state == JobState::Running {
            rate.map(self::rate).unwrap_or_else(|| "–".to_string())
        } else {
            average.map(self::rate).unwrap_or_else(|| "–".to_string())
        };
        let mut state_text = job.state.as_str().to_string();
        if job.state == JobState::Running && job.cancel_requested {
            state_text.push_str(" · cancel requested");
        } else if job.state == JobState::Running && job.pause_requested {
            state_text.push_str(" · pause requested");
        }
        ProgressView {
            id: job.id,
            state: job.state.as_str(),
            state_text,
            items_done: job.items_done,
            items_total: total,
            items_text,
            rate_text,
            eta_text,
            can_pause: matches!(
                job.state,
                JobState::Queued | JobState::Retrying | JobState::Running
            ) && !job.pause_requested,
            can_resume: job.state == JobState::Paused
                || (job.state == JobState::Running && job.pause_requested),
            can_cancel: !job.state.is_finished() && !job.cancel_requested,
            can_retry: matches!(job.state, JobState::Failed | JobState::Cancelled),
            can_delete: (job.state.is_finished() || job.state == JobState::Paused)
                && job.parent_id.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(duration_secs(5), "5s");
        assert_eq!(duration_secs(65), "1m 05s");
        assert_eq!(duration_secs(3 * 3600 + 5 * 60), "3h 05m");
        assert_eq!(duration_secs(2 * 86_400 + 3600), "2d 01h");
        assert_eq!(rate(1234.4), "1,234/s");
        assert_eq!(rate(12.34), "12.3/s");
        assert_eq!(rate(0.2), "0.20/s");
        assert_eq!(rate(0.0), "–");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_795_820_462_000), "2026-11-27 23:01:02 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
