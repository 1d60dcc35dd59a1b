use clap::Parser;

fn main() {
    let cli = agentsigna::cli::Cli::parse();
    // The demo narrates on stdout; the server's info lines would only interleave.
    let default = match cli.command {
        agentsigna::cli::Command::Serve(_) | agentsigna::cli::Command::Gate(_) => "warn,agentsigna=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTSIGNA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(agentsigna::cli::run(cli));
}
