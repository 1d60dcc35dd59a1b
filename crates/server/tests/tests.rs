#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests at the level a user works: the real HTTP server in-process, the CLI
//! as a child process. One test binary (modules under `tests/it/`).

mod it;
