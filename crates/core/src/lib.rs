//! # agentsigna-core
//!
//! The domain of AgentSigna: cases and their seven-step loop ([`engine`]), the Cedar
//! policy ([`policy`]), trust ([`trust`]), money ([`money`]), signing keys ([`keys`]),
//! the organization file ([`org`]) and the [`Store`](store::Store) trait that storage
//! backends implement.
//!
//! Architecture invariant: this crate knows nothing about HTTP or SQL. Every state change
//! is decided against one snapshot and committed as one [`store::WriteSet`] together with
//! the ledger entries that record it, so a case and its ledger can never disagree.

pub mod access;
pub mod engine;
pub mod error;
pub mod ids;
pub mod keys;
pub mod model;
pub mod money;
pub mod org;
pub mod policy;
pub mod schema;
pub mod signing;
pub mod store;
pub mod sync;
pub mod text;
pub mod trust;

pub use agentsigna_verify::clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
