//! The `iterjob` binary: the command line with the built-in demo kind.

fn main() -> std::process::ExitCode {
    iterjob_cli::App::new("iterjob")
        .about("Interruptible, resumable iteration jobs: run `iterjob demo` to see one.")
        .version(env!("CARGO_PKG_VERSION"))
        .with_demo()
        .run()
}
