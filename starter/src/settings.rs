//! The processing settings a starter puts in each workflow's input, from `PULSE_*` variables.

use pulse_activities::config::parse;
use pulse_workflows::{ProcessingSettings, RetrySettings, media::SEGMENT_SECS};
use std::time::Duration;

/// Reads queues, retries and the heartbeat timeout from the environment:
/// `PULSE_VIDEO_QUEUE`, `PULSE_LIGHT_QUEUE`, `PULSE_RETRY_INITIAL_SECS`, `PULSE_RETRY_BACKOFF`,
/// `PULSE_RETRY_MAX_ATTEMPTS`, `PULSE_HEARTBEAT_TIMEOUT_SECS`, `PULSE_RETRY_WINDOW_SECS`,
/// `PULSE_CHUNK_SECS`, `PULSE_FAST_START`.
pub fn from_env() -> anyhow::Result<ProcessingSettings> {
    from_lookup(|name| std::env::var(name).ok())
}

/// Reads the settings through `lookup` (a variable name to its value).
pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<ProcessingSettings> {
    let defaults = ProcessingSettings::default();
    let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
        let value: f64 = parse(&lookup, name, default.as_secs_f64())?;
        Duration::try_from_secs_f64(value)
            .map_err(|_| anyhow::anyhow!("{name}={value} is not a valid number of seconds"))
    };
    Ok(ProcessingSettings {
        video_queue: lookup("PULSE_VIDEO_QUEUE").unwrap_or(defaults.video_queue),
        light_queue: lookup("PULSE_LIGHT_QUEUE").unwrap_or(defaults.light_queue),
        retry: RetrySettings {
            initial_interval: secs("PULSE_RETRY_INITIAL_SECS", defaults.retry.initial_interval)?,
            backoff: parse(&lookup, "PULSE_RETRY_BACKOFF", defaults.retry.backoff)?,
            max_attempts: parse(
                &lookup,
                "PULSE_RETRY_MAX_ATTEMPTS",
                defaults.retry.max_attempts,
            )?,
        },
        heartbeat_timeout: secs("PULSE_HEARTBEAT_TIMEOUT_SECS", defaults.heartbeat_timeout)?,
        retry_window: secs("PULSE_RETRY_WINDOW_SECS", defaults.retry_window)?,
        chunk_secs: chunk_secs(parse(&lookup, "PULSE_CHUNK_SECS", defaults.chunk_secs)?)?,
        fast_start: parse(&lookup, "PULSE_FAST_START", defaults.fast_start)?,
    })
}

/// Shorter pieces than this cost more in ffmpeg start-ups and history than they gain.
const MIN_CHUNK_SECS: f64 = 2.0 * SEGMENT_SECS as f64;

fn chunk_secs(secs: f64) -> anyhow::Result<f64> {
    if secs.is_finite() && secs >= MIN_CHUNK_SECS {
        Ok(secs)
    } else {
        anyhow::bail!(
            "PULSE_CHUNK_SECS={secs} must be a number of seconds of at least {MIN_CHUNK_SECS}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let settings = from_lookup(|_| None).unwrap();
        assert_eq!(settings, ProcessingSettings::default());
        assert_eq!(settings.retry.initial_interval, Duration::from_secs(10));
        assert_eq!(settings.retry.backoff, 2.0);
        assert_eq!(settings.video_queue, "pulse-video");
    }

    #[test]
    fn tests_can_shorten_everything() {
        let settings = from_lookup(|name| match name {
            "PULSE_RETRY_INITIAL_SECS" => Some("0.5".into()),
            "PULSE_RETRY_MAX_ATTEMPTS" => Some("2".into()),
            "PULSE_HEARTBEAT_TIMEOUT_SECS" => Some("3".into()),
            "PULSE_LIGHT_QUEUE" => Some("t1-light".into()),
            "PULSE_CHUNK_SECS" => Some("8".into()),
            "PULSE_FAST_START" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.retry.initial_interval, Duration::from_millis(500));
        assert_eq!(settings.retry.max_attempts, 2);
        assert_eq!(settings.heartbeat_timeout, Duration::from_secs(3));
        assert_eq!(settings.light_queue, "t1-light");
        assert_eq!(settings.chunk_secs, 8.0);
        assert!(settings.fast_start);
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        let error =
            from_lookup(|name| (name == "PULSE_HEARTBEAT_TIMEOUT_SECS").then(|| "-1".into()))
                .unwrap_err();
        assert!(
            error.to_string().contains("PULSE_HEARTBEAT_TIMEOUT_SECS"),
            "{error}"
        );
        for nonsense in ["1", "inf", "NaN"] {
            let error = from_lookup(|name| (name == "PULSE_CHUNK_SECS").then(|| nonsense.into()))
                .unwrap_err();
            assert!(error.to_string().contains("PULSE_CHUNK_SECS"), "{error}");
        }
    }
}
