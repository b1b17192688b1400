//! The `stowage` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = stowage::cli::parse();
    if let Some(code) = stowage::cli::run_without_runtime(&cli) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stowage: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stowage::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stowage: {e}");
            ExitCode::FAILURE
        }
    }
}
