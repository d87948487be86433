//! The `sluice` command, built inside the test crate so integration tests can
//! run it as a real process.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
