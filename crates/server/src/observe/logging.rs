//! The log output of `serve` and `gate`: human-readable lines or JSON lines on stderr,
//! filtered by `AGENTSIGNA_LOG` (tracing's env-filter syntax). In JSON each line is one
//! object; a line logged while a request is served carries the request's span
//! (`request_id`, `method`, `route`, `case_id`).

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, the request's span in front.
    #[default]
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `target`, `fields` and `span`.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the global subscriber: `AGENTSIGNA_LOG` if set (and valid), else `default`.
pub fn init(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTSIGNA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
