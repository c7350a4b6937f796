//! Reading workflow histories exported by `temporal workflow show --output json` or the web UI.
//!
//! Those are proto JSON (camelCase, enum names, int64 as strings), while the SDK's
//! `WorkflowHistory::from_json` reads its own serde format. The Temporal API descriptors let
//! prost-reflect parse proto JSON into the real `History` message.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use temporalio_client::WorkflowHistory;
use temporalio_common::protos::temporal::api::history::v1::History;

const DESCRIPTORS: &[u8] = include_bytes!(env!("TEMPORAL_API_DESCRIPTORS"));

/// Parses a history exported as proto JSON.
pub fn from_cli_json(json: &[u8]) -> anyhow::Result<WorkflowHistory> {
    let pool = DescriptorPool::decode(DESCRIPTORS)?;
    let descriptor = pool
        .get_message_by_name("temporal.api.history.v1.History")
        .ok_or_else(|| anyhow::anyhow!("the descriptors have no History message"))?;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)?;
    deserializer.end()?;
    let history = History::decode(dynamic.encode_to_vec().as_slice())?;
    Ok(history.into())
}
