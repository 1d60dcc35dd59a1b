fn main() {
    // Flags, then `AGENTSIGNA_*` variables, then `--config FILE`, then defaults.
    let cli = agentsigna::cli::config::parse();
    // The demo narrates on stdout; the server's info lines would only interleave.
    let (default, format) = match &cli.command {
        agentsigna::cli::Command::Serve(a) => ("warn,agentsigna=info", a.run.log_format),
        agentsigna::cli::Command::Gate(a) => ("warn,agentsigna=info", a.run.log_format),
        _ => ("warn", agentsigna::observe::logging::LogFormat::Text),
    };
    agentsigna::observe::logging::init(format, default);
    std::process::exit(agentsigna::cli::run(cli));
}
