//! Test harness of the Pulse integration tests: the real local stack (Temporal dev server and
//! Garage started by `cargo xtask up`), real `pulse-worker` processes, clips generated with
//! ffmpeg's lavfi sources, and checks of what ends up in the bucket.
//!
//! Every test gets its own task queues and its own worker process, so tests can run in parallel,
//! inject faults and kill workers without disturbing each other. Nothing is mocked: a missing
//! tool or an unreachable server fails the test with a message that says what to do.
//!
//! - [`stack`]: connecting to the stack and the per-test [`stack::TestEnv`].
//! - [`api`]: a real `pulse-starter serve` and workers feeding it events.
//! - [`worker`]: spawning and killing `pulse-worker`.
//! - [`media`]: generating clips and probing files.
//! - [`bucket`]: listing, inspecting and downloading objects.
//! - [`playback`]: checking that published variants play, frame by frame.
//! - [`history`]: reading histories exported by the Temporal CLI, for replay tests.
//! - [`webhook`]: a real webhook receiver that records deliveries.
//! - [`servers`]: private Temporal and Garage servers that fault tests can kill.
//! - [`bench`](mod@bench): `cargo xtask bench`, Pulse against plain ffmpeg (binary `pulse-bench`).

pub mod api;
pub mod bench;
pub mod bucket;
pub mod history;
pub mod media;
pub mod playback;
pub mod servers;
pub mod stack;
pub mod webhook;
pub mod worker;
