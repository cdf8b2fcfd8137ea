//! Delay before the next attempt of a failed step.

use std::time::Duration;

use rand::Rng;

use crate::template::{BackoffKind, RetryPolicy};

/// Fraction of the computed delay that jitter may remove. Jitter only ever shortens the delay,
/// so `max_backoff_ms` stays a hard upper bound and the un-jittered value is the ceiling.
pub const JITTER_FRACTION: f64 = 0.25;

/// The un-jittered delay after `failed_attempt` (1-based) failed.
pub fn base_delay(policy: &RetryPolicy, failed_attempt: u32) -> Duration {
    let n = u64::from(failed_attempt.max(1));
    let base = policy.backoff_base_ms;
    let ms = match policy.backoff {
        BackoffKind::None => 0,
        BackoffKind::Linear => base.saturating_mul(n),
        BackoffKind::Exponential => {
            let shift = (n - 1).min(62) as u32;
            base.saturating_mul(1u64 << shift)
        }
        BackoffKind::Fibonacci => base.saturating_mul(fibonacci(n)),
    };
    Duration::from_millis(ms.min(policy.max_backoff_ms))
}

/// The delay actually applied: a handler-supplied `retry_after` wins; otherwise the policy's
/// delay minus up to [`JITTER_FRACTION`] of it, so that many steps failing together do not
/// retry in lockstep.
pub fn retry_delay(policy: &RetryPolicy, failed_attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after.min(crate::outcome::MAX_RETRY_AFTER);
    }
    let delay = base_delay(policy, failed_attempt);
    let cut = rand::rng().random_range(0.0..=JITTER_FRACTION);
    delay.mul_f64(1.0 - cut)
}

fn fibonacci(n: u64) -> u64 {
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 1..n {
        let next = a.saturating_add(b);
        a = b;
        b = next;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: BackoffKind, base: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            backoff: kind,
            backoff_base_ms: base,
            max_backoff_ms: max,
            ..RetryPolicy::default()
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn each_kind_grows_as_documented() {
        let seq = |kind| {
            (1..=6)
                .map(|n| ms(base_delay(&policy(kind, 100, 1_000_000), n)))
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(BackoffKind::None), [0, 0, 0, 0, 0, 0]);
        assert_eq!(seq(BackoffKind::Linear), [100, 200, 300, 400, 500, 600]);
        assert_eq!(seq(BackoffKind::Exponential), [100, 200, 400, 800, 1600, 3200]);
        assert_eq!(seq(BackoffKind::Fibonacci), [100, 100, 200, 300, 500, 800]);
    }

    #[test]
    fn delay_is_capped_and_never_overflows() {
        let p = policy(BackoffKind::Exponential, 1_000, 5_000);
        assert_eq!(ms(base_delay(&p, 3)), 4_000);
        assert_eq!(ms(base_delay(&p, 4)), 5_000);
        assert_eq!(ms(base_delay(&p, 100)), 5_000);
        let f = policy(BackoffKind::Fibonacci, u64::MAX, u64::MAX);
        assert_eq!(base_delay(&f, 200), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn jitter_stays_within_its_band_and_varies() {
        let p = policy(BackoffKind::Linear, 1_000, 60_000);
        let samples: Vec<u64> = (0..200).map(|_| ms(retry_delay(&p, 2, None))).collect();
        assert!(samples.iter().all(|&d| (1_500..=2_000).contains(&d)), "{samples:?}");
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 10, "jitter should vary the delay: {distinct:?}");
    }

    #[test]
    fn handler_retry_after_wins() {
        let p = policy(BackoffKind::Exponential, 1_000, 2_000);
        assert_eq!(retry_delay(&p, 1, Some(Duration::from_secs(7))), Duration::from_secs(7));
    }
}
