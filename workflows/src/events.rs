//! The events the frontend receives (SPEC section 4).

use crate::state::AssetStatus;
use serde::{Deserialize, Serialize};

/// A milestone in an asset's processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Work has started: show a "Processing..." spinner.
    Processing,
    /// The thumbnail exists (`url`).
    ThumbnailReady,
    /// The master playlist plays (`url`), in low quality first.
    Playable,
    /// Every variant is done; progress is 100.
    Done,
    /// Processing stopped early: `status` says `partial` (still plays) or `failed`.
    Failed,
}

impl Stage {
    /// Whether this stage ends the asset's event stream.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// One event as sent to the frontend: `{"type": "update", "asset_id", "stage"?, "progress"?,
/// "url"?, "status"?, "error"?, "at"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `update`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The asset the event is about.
    pub asset_id: String,
    /// The milestone reached; absent on pure progress updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Overall percent, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Where the thumbnail or master playlist can be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Final status on `failed`: `partial` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AssetStatus>,
    /// What went wrong, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the event happened, RFC 3339 UTC.
    pub at: String,
}

impl Event {
    /// An event with only the required fields set.
    pub fn update(asset_id: impl Into<String>, at: impl Into<String>) -> Self {
        Self {
            kind: "update".to_owned(),
            asset_id: asset_id.into(),
            stage: None,
            progress: None,
            url: None,
            status: None,
            error: None,
            at: at.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_left_out() {
        let mut event = Event::update("a1", "2026-01-01T00:00:00Z");
        event.progress = Some(12.5);
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"update","asset_id":"a1","progress":12.5,"at":"2026-01-01T00:00:00Z"}"#
        );
        event.stage = Some(Stage::ThumbnailReady);
        assert!(
            serde_json::to_string(&event)
                .unwrap()
                .contains(r#""stage":"thumbnail_ready""#)
        );
    }
}

/// Signing and verifying webhook deliveries.
///
/// Each POST carries `X-Pulse-Timestamp: <unix seconds>` and
/// `X-Pulse-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>`. A
/// receiver recomputes the signature over the raw body it received and rejects a mismatch (a
/// tampered body) or a timestamp too far from its clock (a replayed old event).
pub mod signature {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// Header carrying the signing time.
    pub const TIMESTAMP_HEADER: &str = "X-Pulse-Timestamp";
    /// Header carrying the signature.
    pub const SIGNATURE_HEADER: &str = "X-Pulse-Signature";
    /// How far the signing time may be from the receiver's clock, in seconds.
    pub const TOLERANCE_SECS: u64 = 300;

    /// Why a delivery was rejected.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    pub enum SignatureError {
        /// The timestamp header is not a number of seconds.
        #[error("the timestamp header is not a number of seconds")]
        MalformedTimestamp,
        /// The timestamp is too far from now: a replay, or a badly wrong clock.
        #[error("the event was signed {0} s away from now, more than the tolerance")]
        Stale(u64),
        /// The signature header is not `sha256=<hex>`.
        #[error("the signature header is not sha256=<hex>")]
        MalformedSignature,
        /// The signature does not match the body: tampered, or another secret.
        #[error("the signature does not match the body")]
        Mismatch,
    }

    fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature header value of `body` signed at `timestamp`.
    pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
        let digest = mac(secret, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("sha256={}", hex::encode(digest))
    }

    /// Checks a delivery received at `now` (Unix seconds); the comparison is constant-time.
    pub fn verify(
        secret: &[u8],
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignatureError> {
        let signed_at: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedTimestamp)?;
        let age = now.abs_diff(signed_at);
        if age > TOLERANCE_SECS {
            return Err(SignatureError::Stale(age));
        }
        let expected = signature
            .trim()
            .strip_prefix("sha256=")
            .and_then(|digest| hex::decode(digest).ok())
            .ok_or(SignatureError::MalformedSignature)?;
        mac(secret, timestamp.trim(), body)
            .verify_slice(&expected)
            .map_err(|_| SignatureError::Mismatch)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const SECRET: &[u8] = b"shh";
        const BODY: &[u8] = br#"{"type":"update","asset_id":"a1","at":"2026-01-01T00:00:00Z"}"#;

        #[test]
        fn a_signed_body_verifies() {
            let signature = sign(SECRET, 1_700_000_000, BODY);
            assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
            assert_eq!(
                verify(SECRET, "1700000000", &signature, BODY, 1_700_000_100),
                Ok(())
            );
        }

        #[test]
        fn matches_an_independent_hmac() {
            // printf '1700000000.hello' | openssl dgst -sha256 -hmac shh
            assert_eq!(
                sign(SECRET, 1_700_000_000, b"hello"),
                "sha256=4b63d2acb571f987b4743e596205323c325f70734c177c362bc6e7fd98644c06"
            );
        }

        #[test]
        fn tampering_and_replays_are_rejected() {
            let signature = sign(SECRET, 1_700_000_000, BODY);
            let tampered = BODY
                .to_vec()
                .iter()
                .map(|b| if *b == b'1' { b'2' } else { *b })
                .collect::<Vec<_>>();
            assert_eq!(
                verify(SECRET, "1700000000", &signature, &tampered, 1_700_000_000),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(b"other", "1700000000", &signature, BODY, 1_700_000_000),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(SECRET, "1700000000", &signature, BODY, 1_700_000_301),
                Err(SignatureError::Stale(301))
            );
            assert_eq!(
                verify(SECRET, "yesterday", &signature, BODY, 0),
                Err(SignatureError::MalformedTimestamp)
            );
            assert_eq!(
                verify(SECRET, "1700000000", "md5=00", BODY, 1_700_000_000),
                Err(SignatureError::MalformedSignature)
            );
            // A signature for one timestamp does not cover another.
            assert_eq!(
                verify(SECRET, "1700000001", &signature, BODY, 1_700_000_000),
                Err(SignatureError::Mismatch)
            );
        }
    }
}
