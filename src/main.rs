use std::process::ExitCode;

fn main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = slothbox::config::Environment::from_process();
    slothbox::cli::run(
        &args,
        &env,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        std::io::stderr().lock(),
    )
}

/// Silent unless `SLOTHBOX_LOG` is set (an env-filter such as `debug`); always to stderr,
/// since stdout belongs to the protocol.
///
/// Other crates are held at debug whatever the filter says: at trace the AWS SDK prints
/// response bodies, and an ECR token is not marked sensitive in its model.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    let Ok(filter) = std::env::var("SLOTHBOX_LOG") else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let no_foreign_trace = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("slothbox") || *meta.level() <= tracing::Level::DEBUG
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter)
        .with_filter(no_foreign_trace);
    tracing_subscriber::registry().with(layer).init();
}
