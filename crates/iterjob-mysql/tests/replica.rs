//! The MySQL/MariaDB replica-lag check against the real test server, which is not a
//! replica: the check cannot measure a lag there, and says so (it throttles, it
//! never reads as healthy). The lag path itself needs a replica, which this
//! machine's single MariaDB is not.

mod common;

use std::time::Duration;

use iterjob::HealthCheck;
use iterjob_mysql::ReplicaLag;

#[tokio::test]
async fn a_server_that_is_not_a_replica_is_named_and_never_healthy() {
    if !common::require_mysql().await {
        return;
    }
    let check = ReplicaLag::new(&common::mysql_url(), Duration::from_secs(2)).expect("url");
    let error = check
        .lag()
        .await
        .expect_err("the test server is no replica");
    let message = error.to_string();
    assert!(
        message.contains("is not a replica") && message.contains("--replica-url"),
        "{message}"
    );
    assert!(
        check.check().await.is_err(),
        "an error throttles, never passes"
    );
    assert!(check.name().starts_with("replica-lag:"), "{}", check.name());
}

#[tokio::test]
async fn an_unreachable_replica_fails_the_check_and_a_bad_url_is_refused() {
    let nowhere =
        ReplicaLag::new("mysql://root@127.0.0.1:1/test", Duration::from_secs(2)).expect("url");
    assert!(nowhere.check().await.is_err());
    assert!(ReplicaLag::new("not a url", Duration::from_secs(2)).is_err());
}
