//! Search attributes: what operators filter assets by in the Temporal UI and CLI, e.g.
//! `temporal workflow list --query "PulseStatus='partial'"`. The workflow keeps them current.
//! They must be registered on the namespace before a workflow uses them: `cargo xtask up` does
//! it for the local stack; the README shows how on a cluster.

use temporalio_common::search_attributes::SearchAttributeKey;

/// The asset id.
pub const ASSET_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("PulseAssetId");
/// The asset status: `queued`, `processing`, `playable`, `done`, `partial` or `failed`.
pub const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("PulseStatus");
/// How many variants are done.
pub const VARIANTS_DONE: SearchAttributeKey<i64> = SearchAttributeKey::int("PulseVariantsDone");

/// Every attribute with its Temporal type, as registration takes them.
pub const REGISTRATION: [(&str, &str); 3] = [
    ("PulseAssetId", "Keyword"),
    ("PulseStatus", "Keyword"),
    ("PulseVariantsDone", "Int"),
];
