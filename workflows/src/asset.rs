//! Asset identity and where an asset's objects live in the bucket (SPEC sections 2 and 5).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest asset id accepted, in characters.
pub const MAX_ASSET_ID_LEN: usize = 64;

/// A validated asset id: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// Asset ids end up in S3 keys and Temporal workflow ids, so anything else is refused before any
/// work starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetId(String);

/// Why a string is not a valid [`AssetId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAssetId {
    /// The id is empty.
    #[error("asset id is empty; use 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    Empty,
    /// The id is longer than [`MAX_ASSET_ID_LEN`].
    #[error("asset id is {0} characters long; the limit is 64")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9_-]`.
    #[error("asset id contains {0:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadCharacter(char),
}

impl AssetId {
    /// Validates `id` as an asset id.
    pub fn parse(id: &str) -> Result<Self, InvalidAssetId> {
        let length = id.chars().count();
        if length == 0 {
            return Err(InvalidAssetId::Empty);
        }
        if length > MAX_ASSET_ID_LEN {
            return Err(InvalidAssetId::TooLong(length));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(InvalidAssetId::BadCharacter(bad));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Temporal workflow id of this asset's one run: `video-{asset_id}`.
    pub fn workflow_id(&self) -> String {
        format!("video-{}", self.0)
    }

    /// Where this asset's objects live.
    pub fn keys(&self) -> AssetKeys {
        AssetKeys {
            asset_id: self.clone(),
        }
    }
}

impl TryFrom<String> for AssetId {
    type Error = InvalidAssetId;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::parse(&id)
    }
}

impl From<AssetId> for String {
    fn from(id: AssetId) -> Self {
        id.0
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The storage layout of one asset (SPEC section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetKeys {
    asset_id: AssetId,
}

impl AssetKeys {
    /// Where `pulse-starter process` uploads the source: `uploads/{id}/source`.
    pub fn upload(&self) -> String {
        format!("uploads/{}/source", self.asset_id)
    }

    /// Every processed object of the asset starts with this prefix.
    pub fn processed_prefix(&self) -> String {
        format!("processed/{}/", self.asset_id)
    }

    /// `processed/{id}/thumbnail.webp`
    pub fn thumbnail(&self) -> String {
        format!("processed/{}/thumbnail.webp", self.asset_id)
    }

    /// `processed/{id}/hls/master.m3u8`
    pub fn master(&self) -> String {
        format!("processed/{}/hls/master.m3u8", self.asset_id)
    }

    /// The folder of one variant: `processed/{id}/hls/{variant}/`.
    pub fn variant_prefix(&self, variant: &str) -> String {
        format!("processed/{}/hls/{variant}/", self.asset_id)
    }

    /// A variant's playlist: `processed/{id}/hls/{variant}/index.m3u8`.
    pub fn variant_playlist(&self, variant: &str) -> String {
        format!("{}index.m3u8", self.variant_prefix(variant))
    }

    /// A variant's segment `index`: `processed/{id}/hls/{variant}/seg_000.ts`.
    pub fn segment(&self, variant: &str, index: u32) -> String {
        format!(
            "{}{}",
            self.variant_prefix(variant),
            segment_file_name(index)
        )
    }
}

/// The file name of segment `index`: `seg_000.ts`, `seg_001.ts`, ... (at least three digits).
pub fn segment_file_name(index: u32) -> String {
    format!("seg_{index:03}.ts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        let id = AssetId::parse("Clip_01-a").unwrap();
        assert_eq!(id.workflow_id(), "video-Clip_01-a");
        assert!(AssetId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        assert_eq!(AssetId::parse(""), Err(InvalidAssetId::Empty));
        assert_eq!(
            AssetId::parse(&"a".repeat(65)),
            Err(InvalidAssetId::TooLong(65))
        );
        assert_eq!(
            AssetId::parse("../etc"),
            Err(InvalidAssetId::BadCharacter('.'))
        );
        assert_eq!(
            AssetId::parse("a b"),
            Err(InvalidAssetId::BadCharacter(' '))
        );
        assert_eq!(AssetId::parse("é"), Err(InvalidAssetId::BadCharacter('é')));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<AssetId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<AssetId>("\"not/ok\"").is_err());
    }

    #[test]
    fn keys_follow_the_spec_layout() {
        let keys = AssetId::parse("a1").unwrap().keys();
        assert_eq!(keys.upload(), "uploads/a1/source");
        assert_eq!(keys.thumbnail(), "processed/a1/thumbnail.webp");
        assert_eq!(keys.master(), "processed/a1/hls/master.m3u8");
        assert_eq!(
            keys.variant_playlist("240p"),
            "processed/a1/hls/240p/index.m3u8"
        );
        assert_eq!(keys.segment("240p", 7), "processed/a1/hls/240p/seg_007.ts");
        assert_eq!(
            keys.segment("240p", 1234),
            "processed/a1/hls/240p/seg_1234.ts"
        );
    }
}
