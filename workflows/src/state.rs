//! The asset's state: what the `status` query answers and `pulse-starter status --json` prints
//! (SPEC section 2). The workflow owns it; nothing else stores processing flags.

use serde::{Deserialize, Serialize};

/// Where an asset is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    /// Started, nothing done yet.
    #[default]
    Queued,
    /// Being probed, thumbnailed or transcoded; not playable yet.
    Processing,
    /// At least one variant is published; more are being made.
    Playable,
    /// Every variant is published and cached for good.
    Done,
    /// Some variants failed for good, at least one plays.
    Partial,
    /// Nothing plays.
    Failed,
}

impl AssetStatus {
    /// Whether processing has stopped.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Partial | Self::Failed)
    }

    /// The exit code of `pulse-starter --wait`: 0 done, 2 partial, 1 failed or anything else.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Done => 0,
            Self::Partial => 2,
            _ => 1,
        }
    }

    /// The status as the JSON text uses it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Playable => "playable",
            Self::Done => "done",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// Where one variant is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantStatus {
    /// Not started.
    #[default]
    Pending,
    /// Being transcoded.
    Running,
    /// Uploaded and listed in the master playlist.
    Done,
    /// Failed for good.
    Failed,
}

/// One variant in [`AssetState::variants`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantState {
    /// Variant name, e.g. `240p`.
    pub name: String,
    /// Where it is.
    pub status: VariantStatus,
}

/// The state of one asset, as SPEC section 2 prints it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetState {
    /// The asset id.
    pub asset_id: String,
    /// Overall status.
    pub status: AssetStatus,
    /// Key of `master.m3u8` once the asset is playable.
    pub master_key: Option<String>,
    /// Key of `thumbnail.webp` once it exists.
    pub thumbnail_key: Option<String>,
    /// Overall percent done, 0 to 100; 100 only when done.
    pub progress: f64,
    /// The ladder, smallest first.
    pub variants: Vec<VariantState>,
    /// Null unless something failed; then a sentence a person can act on.
    pub error: Option<String>,
}

impl AssetState {
    /// A new asset that has not started.
    pub fn queued(asset_id: &str) -> Self {
        Self {
            asset_id: asset_id.to_owned(),
            ..Self::default()
        }
    }

    /// Sets the status of the named variant.
    pub fn set_variant(&mut self, name: &str, status: VariantStatus) {
        if let Some(variant) = self.variants.iter_mut().find(|v| v.name == name) {
            variant.status = status;
        }
    }

    /// Names of the variants in `status`.
    pub fn variants_in(&self, status: VariantStatus) -> impl Iterator<Item = &str> {
        self.variants
            .iter()
            .filter(move |v| v.status == status)
            .map(|v| v.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_spec_shape() {
        let mut state = AssetState::queued("a1");
        state.variants.push(VariantState {
            name: "240p".into(),
            status: VariantStatus::Done,
        });
        state.status = AssetStatus::Playable;
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "asset_id": "a1",
                "status": "playable",
                "master_key": null,
                "thumbnail_key": null,
                "progress": 0.0,
                "variants": [{"name": "240p", "status": "done"}],
                "error": null
            })
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(AssetStatus::Done.exit_code(), 0);
        assert_eq!(AssetStatus::Partial.exit_code(), 2);
        assert_eq!(AssetStatus::Failed.exit_code(), 1);
        assert!(!AssetStatus::Playable.is_finished());
    }
}
