//! Checking a store's schema version without changing anything, for a process that
//! must not migrate (a read-only admin command run by an operator, possibly with a
//! newer or older build than the workers').

use iterjob::{Error, Result};

/// What the newest applied migration says about the store, as an error when the
/// schema is not the one this build writes: no tables yet, an older version (run
/// `migrate`), or a newer one (upgrade iterjob). `store` names the store in the
/// message, `newest` is the highest applied version (`None`: no bookkeeping table),
/// `expected` this build's version and `build` the crate and version that checks.
///
/// # Errors
/// [`Error::Config`] for a store without tables or with an older schema;
/// [`Error::Corrupt`] for a newer one.
pub fn check_version(store: &str, newest: Option<i64>, expected: i64, build: &str) -> Result<()> {
    match newest {
        None => Err(Error::Config(format!(
            "{store} has no iterjob tables yet: run `migrate` (or start a worker, which \
             migrates) to create them"
        ))),
        Some(n) if n < expected => Err(Error::Config(format!(
            "{store} has schema version {n}, older than this build's {expected}: run \
             `migrate` (or start a worker of this build, which migrates) first; this command \
             does not change the schema"
        ))),
        Some(n) if n > expected => Err(Error::Corrupt(format!(
            "{store} has schema version {n}, written by a newer iterjob; this iterjob \
             ({build}) understands schema version {expected} at most. Upgrade iterjob"
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mismatch_says_what_to_do() {
        let none = check_version("store x", None, 5, "b 1")
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("no iterjob tables yet") && none.contains("`migrate`"),
            "{none}"
        );
        let old = check_version("store x", Some(3), 5, "b 1")
            .unwrap_err()
            .to_string();
        assert!(
            old.contains("schema version 3, older than this build's 5"),
            "{old}"
        );
        let new = check_version("store x", Some(7), 5, "b 1")
            .unwrap_err()
            .to_string();
        assert!(
            new.contains("newer iterjob") && new.contains("(b 1)"),
            "{new}"
        );
        check_version("store x", Some(5), 5, "b 1").unwrap();
    }
}
