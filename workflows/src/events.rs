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
