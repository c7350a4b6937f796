//! Content types and cache headers of every object the pipeline writes (SPEC section 5).
//!
//! Objects that never change once written are cached for a year and marked immutable. The master
//! playlist grows while variants finish, so it stays `no-cache` until the asset is done (and
//! forever when it ends partial or failed, so a later fix reaches viewers).

/// One year, in seconds.
const ONE_YEAR: u32 = 31_536_000;

/// The kinds of object Pulse writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// `thumbnail.webp`
    Thumbnail,
    /// A `seg_NNN.ts` media segment.
    Segment,
    /// A variant's `index.m3u8`, written once the variant is complete.
    VariantPlaylist,
    /// A variant's `index.m3u8` while it still grows (fast start).
    GrowingPlaylist,
    /// `master.m3u8` while it can still change.
    GrowingMaster,
    /// `master.m3u8` once every variant is done.
    FinalMaster,
}

impl ObjectKind {
    /// The `Content-Type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Thumbnail => "image/webp",
            Self::Segment => "video/mp2t",
            Self::VariantPlaylist
            | Self::GrowingPlaylist
            | Self::GrowingMaster
            | Self::FinalMaster => "application/vnd.apple.mpegurl",
        }
    }

    /// The `Cache-Control` header.
    pub fn cache_control(self) -> String {
        match self {
            Self::Thumbnail | Self::Segment | Self::VariantPlaylist => {
                format!("public, max-age={ONE_YEAR}, immutable")
            }
            Self::GrowingPlaylist | Self::GrowingMaster => "no-cache".to_owned(),
            Self::FinalMaster => format!("public, max-age={ONE_YEAR}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectKind::*;

    #[test]
    fn immutable_objects_are_cached_for_a_year() {
        for kind in [Thumbnail, Segment, VariantPlaylist] {
            assert_eq!(kind.cache_control(), "public, max-age=31536000, immutable");
        }
    }

    #[test]
    fn the_master_is_not_cached_until_done() {
        assert_eq!(GrowingMaster.cache_control(), "no-cache");
        assert_eq!(GrowingPlaylist.cache_control(), "no-cache");
        assert_eq!(FinalMaster.cache_control(), "public, max-age=31536000");
    }

    #[test]
    fn content_types() {
        assert_eq!(Thumbnail.content_type(), "image/webp");
        assert_eq!(Segment.content_type(), "video/mp2t");
        assert_eq!(FinalMaster.content_type(), "application/vnd.apple.mpegurl");
        assert_eq!(
            VariantPlaylist.content_type(),
            "application/vnd.apple.mpegurl"
        );
    }
}
