use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTSIGNA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,agentsigna=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = agentsigna::cli::Cli::parse();
    std::process::exit(agentsigna::cli::run(cli));
}
