//! The machinery behind `cargo xtask`: installing the tools, running the local stack's servers
//! in the background, and the stack of a checkout. The integration tests use it too, to run
//! private servers they can kill.
//!
//! - [`install`]: ffmpeg, the Temporal CLI and Garage, installed once.
//! - [`process`]: background services with pid files and logs.
//! - [`servers`]: a Temporal dev server and a single-node Garage, on any ports.
//! - [`stack`]: the `.pulse/` stack of a checkout.

pub mod install;
pub mod process;
pub mod servers;
pub mod stack;
