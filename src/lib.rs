//! streamingt2v: StreamingT2V long text-to-video generation on ONNX Runtime.
//!
//! Layers, bottom up:
//! - [`sampling`] and [`plan`]: pure numerics (schedulers, guidance, noise, chunk plans,
//!   randomized blending), no ONNX Runtime.
//! - [`runtime`]: locating and loading ONNX Runtime, execution providers, sessions.
//! - [`manifest`] and [`models`]: the model set on disk and typed graph wrappers.
//! - [`pipeline`]: the three stages composed, with progress events and cancellation.
//! - [`video`]: frame sinks and sources (MP4, GIF, PNG directories).
//! - [`engine`]: one opened model set running validated requests; every shell (the `st2v`
//!   command line, the server, the benchmark) runs its jobs through it.
//! - [`eval`]: `st2v eval`'s quality metrics (CLIP score, SCuts, MAWE, seams, drift).
//! - [`bench`](mod@bench): `st2v bench`'s measurements and report over the engine.
//! - [`server`]: `st2v serve`, the HTTP server over the engine (job queue, workers, SSE).
//!
//! The `st2v` binary is a thin shell over this library.

pub mod bench;
pub mod engine;
pub mod eval;
pub mod manifest;
pub mod models;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod runtime;
pub mod sampling;
pub mod server;
pub mod tokenizer;
pub mod video;
