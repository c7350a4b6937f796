//! Connecting to Temporal the standard way (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, or a
//! Temporal CLI config profile), shared by workers and starters.

use anyhow::Context;
use std::str::FromStr;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url,
    envconfig::LoadClientConfigProfileOptions,
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

/// A client of the Temporal service at `address` (`host:port`), namespace `default`.
pub async fn temporal_client_at(address: &str) -> anyhow::Result<Client> {
    let url = Url::from_str(&format!("http://{address}"))
        .with_context(|| format!("{address} is not host:port"))?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .with_context(|| format!("cannot reach Temporal at {address}"))?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default").build(),
    )?)
}
