//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files of
//! `migrations/`, but only a build script can tell cargo to watch the directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
