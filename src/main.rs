//! The `stowage` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = stowage::cli::parse();
    match stowage::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stowage: {e}");
            ExitCode::FAILURE
        }
    }
}
