//! `iterjob-chaos`: the iterjob command line with the chaos kinds `chaos_items` and
//! `chaos_tx_items` registered (see the crate docs).

use std::process::ExitCode;

use iterjob_chaos::{ChaosItems, ChaosTxItems, database_url_from_args};

fn main() -> ExitCode {
    let url = database_url_from_args(std::env::args().skip(1));
    iterjob_cli::App::new("iterjob-chaos")
        .register(ChaosItems::new(url.clone()))
        .register(ChaosTxItems::new(url))
        .run()
}
