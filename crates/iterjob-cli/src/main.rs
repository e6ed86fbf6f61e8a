//! The `iterjob` binary: the command line over the built-in demo kind.

fn main() -> std::process::ExitCode {
    iterjob_cli::App::new("iterjob").run()
}
