//! Connecting to Temporal the standard way (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, or a
//! Temporal CLI config profile), shared by workers and starters.

use anyhow::Context;
use temporalio_client::{
    Client, ClientOptions, Connection, envconfig::LoadClientConfigProfileOptions,
};

/// A client of the Temporal service the environment names.
pub async fn temporal_client() -> anyhow::Result<Client> {
    let (connection_options, client_options) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default()).map_err(|error| {
            anyhow::anyhow!("reading the Temporal connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE): {error:?}")
        })?;
    let address = connection_options.target.to_string();
    let connection = Connection::connect(connection_options)
        .await
        .with_context(|| {
            format!("cannot reach Temporal at {address}; is the server running (cargo xtask up)?")
        })?;
    Ok(Client::new(connection, client_options)?)
}
