//! Connecting: a clear error without a server, the password kept out of it.

use hearth_redis::{Redis, RedisError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_a_clear_error_without_the_password() {
    let err = Redis::connect("redis://:s3cret@127.0.0.1:1/", "hearth-test:")
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot use Redis at redis://***@127.0.0.1:1/"),
        "{message}"
    );
    assert!(!message.contains("s3cret"));
    let err = Redis::connect("http://127.0.0.1:6379/", "hearth-test:")
        .await
        .unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err:?}");
}
