//! # agentsigna
//!
//! The AgentSigna server and command-line tool: the HTTP API ([`http`]), start-up
//! ([`app`]), the commands ([`cli`]), the choice of database ([`database`]) and the
//! procurement demo ([`demo`]).

pub mod app;
pub mod bench;
pub mod cli;
pub mod database;
pub mod demo;
pub mod gate;
pub mod http;
pub mod mcp;
pub mod notify;
pub mod observe;
pub mod openapi;
pub mod router;
pub mod secret;
pub mod state;
pub mod ui;
