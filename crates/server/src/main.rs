/// mimalloc instead of glibc's allocator: a request allocates and frees many small values
/// on whichever thread runs it, where glibc's arenas spent about a tenth of the CPU
/// (BENCHMARKS.md, "The load generator's clock, CPU per request and the allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
