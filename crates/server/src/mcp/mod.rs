//! Agents on MCP: `agentsigna mcp` ([`server`]), an MCP server through which an agent asks
//! for authority, and `agentsigna mcp-gate` ([`gate`]), the enforcement point in front of
//! an MCP server whose tool calls need a passport. Both speak MCP with the official Rust
//! SDK (`rmcp`) and reach AgentSigna only through its HTTP API ([`client`]).
//!
//! - [`tools_file`]: the gate's TOML tools file and how a call becomes an action request
//!   (idempotency keys hash the arguments' RFC 8785 form, from `agentsigna-verify`).
//! - [`upstream`]: the MCP server behind the gate (child process or streamable HTTP).
//! - [`listen`]: the gate over streamable HTTP, one agent key per request.
//! - [`wait`]: waiting for a human decision with progress notifications;
//!   [`summary`]: tool results and their one-paragraph summaries.

pub mod client;
pub mod gate;
pub mod listen;
pub mod server;
pub mod summary;
pub mod tools_file;
pub mod upstream;
pub mod wait;

/// A secret from the environment (never a flag: flags show in process lists).
fn env_secret(name: &str, what: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => anyhow::bail!("{name} must hold {what}"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
