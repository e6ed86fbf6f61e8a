//! `iterjob-pace`: the iterjob command line with the rate-limited kind `paced_items`
//! registered, its limit (items per second, over every worker process on the
//! database) taken from `ITERJOB_PACE_RATE`. Works on SQLite and PostgreSQL.

use std::process::ExitCode;

use iterjob_chaos::pace::PacedItems;

fn main() -> ExitCode {
    iterjob_cli::App::new("iterjob-pace")
        .register(PacedItems::from_env())
        .run()
}
