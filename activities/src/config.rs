//! Worker-side settings, from `PULSE_*` environment variables.

use crate::{probe::Limits, storage::DEFAULT_BUCKET};
use anyhow::Context;
use pulse_workflows::media::VariantSpec;
use std::{path::PathBuf, str::FromStr};

/// Settings of the activities of one worker process.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityConfig {
    /// Bucket of sources and renditions (`PULSE_BUCKET`, default `pulse-media`).
    pub bucket: String,
    /// Parent of the per-job temp folders (`PULSE_WORK_DIR`, default `$TMPDIR/pulse`).
    pub work_dir: PathBuf,
    /// x264 preset (`PULSE_X264_PRESET`, default `medium`, x264's own default: the smallest files for the time).
    pub x264_preset: String,
    /// Source limits (`PULSE_MAX_DURATION_SECS`, `PULSE_MAX_PIXELS`, `PULSE_MAX_SOURCE_BYTES`).
    pub limits: Limits,
    /// Base URL under which viewers fetch processed objects (`PULSE_PUBLIC_BASE_URL`, default
    /// the bucket's path-style URL at `AWS_ENDPOINT_URL`). Event URLs are built from it.
    pub public_base_url: String,
    /// Where events are POSTed (`PULSE_WEBHOOK_URL`); none means log only.
    pub webhook_url: Option<String>,
    /// Key that signs webhook deliveries (`PULSE_WEBHOOK_SECRET`), required with a URL.
    pub webhook_secret: Option<String>,
    /// Test-only fault switch: variants whose every transcode attempt fails
    /// (`PULSE_FAULT_FAIL_VARIANTS`, comma separated, e.g. `720p`).
    pub failing_variants: Vec<String>,
    /// Test-only: variants encoded no faster than real time, so a fault test can strike while
    /// one is half done (`PULSE_FAULT_REALTIME_VARIANTS`, comma separated).
    pub realtime_variants: Vec<String>,
}

impl ActivityConfig {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable name to its value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Limits::default();
        let bucket = lookup("PULSE_BUCKET").unwrap_or_else(|| DEFAULT_BUCKET.to_owned());
        let public_base_url = match lookup("PULSE_PUBLIC_BASE_URL") {
            Some(url) => url,
            None => {
                let endpoint = lookup("AWS_ENDPOINT_URL")
                    .unwrap_or_else(|| "https://s3.amazonaws.com".to_owned());
                format!("{}/{bucket}", endpoint.trim_end_matches('/'))
            }
        };
        Ok(Self {
            work_dir: lookup("PULSE_WORK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("pulse")),
            x264_preset: lookup("PULSE_X264_PRESET").unwrap_or_else(|| "medium".to_owned()),
            limits: Limits {
                max_duration_secs: parse(
                    &lookup,
                    "PULSE_MAX_DURATION_SECS",
                    defaults.max_duration_secs,
                )?,
                max_pixels: parse(&lookup, "PULSE_MAX_PIXELS", defaults.max_pixels)?,
                max_source_bytes: parse(
                    &lookup,
                    "PULSE_MAX_SOURCE_BYTES",
                    defaults.max_source_bytes,
                )?,
            },
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            webhook_url: lookup("PULSE_WEBHOOK_URL").filter(|url| !url.is_empty()),
            webhook_secret: lookup("PULSE_WEBHOOK_SECRET").filter(|secret| !secret.is_empty()),
            failing_variants: list(lookup("PULSE_FAULT_FAIL_VARIANTS")),
            realtime_variants: list(lookup("PULSE_FAULT_REALTIME_VARIANTS")),
            bucket,
        })
    }

    /// Whether a transcode of `variants` is held to real time (`PULSE_FAULT_REALTIME_VARIANTS`).
    pub fn held_to_real_time(&self, variants: &[VariantSpec]) -> bool {
        variants
            .iter()
            .any(|variant| self.realtime_variants.contains(&variant.name))
    }

    /// The URL a viewer fetches the object at `key` from.
    pub fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base_url)
    }
}

/// A comma-separated list, without blanks.
fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|list| {
            list.split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses the variable `name` if set, else returns `default`.
pub fn parse<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match lookup(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}={text:?} is not a valid value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<ActivityConfig> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ActivityConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bucket, "pulse-media");
        assert_eq!(config.x264_preset, "medium");
        assert_eq!(config.limits, Limits::default());
        assert!(config.failing_variants.is_empty());
        assert_eq!(
            config.public_url("a/b"),
            "https://s3.amazonaws.com/pulse-media/a/b"
        );
    }

    #[test]
    fn reads_every_variable() {
        let config = config(&[
            ("PULSE_BUCKET", "media"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900/"),
            ("PULSE_MAX_DURATION_SECS", "60"),
            ("PULSE_FAULT_FAIL_VARIANTS", "720p, 1080p"),
            ("PULSE_WORK_DIR", "/scratch"),
        ])
        .unwrap();
        assert_eq!(config.public_url("k"), "http://127.0.0.1:3900/media/k");
        assert_eq!(config.limits.max_duration_secs, 60.0);
        assert_eq!(config.failing_variants, vec!["720p", "1080p"]);
        assert_eq!(config.work_dir, PathBuf::from("/scratch"));
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        let error = config(&[("PULSE_MAX_PIXELS", "lots")]).unwrap_err();
        assert!(
            format!("{error:#}").starts_with("PULSE_MAX_PIXELS=\"lots\" is not a valid value"),
            "{error:#}"
        );
    }
}
