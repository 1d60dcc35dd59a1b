//! The operating surface of `serve`: Prometheus metrics (`GET /metrics`), the readiness
//! probe (`GET /readyz`), the request id and access line of every request, and the log
//! format.

pub mod health;
pub mod logging;
pub mod metrics;
pub mod request;
