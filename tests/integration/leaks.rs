//! The secret never leaves through a side door: every action and failure path is run with
//! trace logging, and stderr, the answers' error text and every file are searched for it.

use crate::store::files_containing;
use crate::support::{keyring_lock, AwsFixture, Helper, Run, BOX_REGION};

const CANARY: &str = "ghp_CANARYsecret0123456789abcdef";
const AWS_SECRETS: &[&str] = &["fixture-secret-access-key", "fixture-session-token"];

fn assert_clean(run: &Run, what: &str) {
    let encoded = aws_smithy_types::base64::encode(CANARY);
    for text in [&run.stderr, &run.stdout] {
        for leak in [CANARY, encoded.as_str()].iter().chain(AWS_SECRETS) {
            // The one place a secret may appear is a successful get's answer.
            let allowed = text == &run.stdout && run.code == Some(0) && *leak == CANARY;
            assert!(
                allowed || !text.contains(leak),
                "{what} leaked {leak}: {run:?}"
            );
        }
    }
}

#[test]
fn no_action_or_failure_leaks_the_secret_at_trace_level() {
    // It ends with cache clear, which empties every store, the shared keyring included.
    let _keyring = keyring_lock();
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.set("SLOTHBOX_LOG", "trace");
    helper.set("AWS_REGION", BOX_REGION);
    helper.set("SLOTHBOX_DEADLINE_SECONDS", "2");
    let host = "leaky.example";
    let store =
        serde_json::json!({"ServerURL": host, "Username": "u", "Secret": CANARY}).to_string();
    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut go = |what: &str, helper: &Helper, args: &[&str], stdin: &str| {
        runs.push((what.to_string(), helper.run(args, stdin)));
    };

    go("store", &helper, &["store"], &store);
    go("get (miss)", &helper, &["get"], host);
    go("get (hit)", &helper, &["get"], host);
    go("list", &helper, &["list"], "unused");
    go("version", &helper, &["version"], "");
    go(
        "store with bad JSON",
        &helper,
        &["store"],
        &store[..store.len() - 3],
    );
    go(
        "store without a host",
        &helper,
        &["store"],
        &store.replace(host, ""),
    );
    helper.set("SLOTHBOX_CACHE", "off");
    for mode in [
        "access_denied",
        "kms_denied",
        "throttle",
        "500",
        "close",
        "expired_token",
    ] {
        aws.fault("AmazonSSM.GetParameter", mode, -1);
        aws.fault("AmazonSSM.PutParameter", mode, -1);
        go(&format!("get with {mode}"), &helper, &["get"], host);
        go(&format!("store with {mode}"), &helper, &["store"], &store);
        aws.reset();
    }
    aws.imds_mode("down");
    go("get with IMDS down", &helper, &["get"], host);
    go("store with IMDS down", &helper, &["store"], &store);
    aws.imds_mode("up");
    go(
        "ecr get",
        &helper,
        &["get"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    );
    helper.set("SLOTHBOX_CACHE", "runtime-dir");
    go("get into the runtime-dir cache", &helper, &["get"], host);
    let cached = files_containing(helper.runtime.path(), CANARY).len();
    go("erase", &helper, &["erase"], host);
    go("cache clear", &helper, &["cache", "clear"], "");

    for (what, run) in &runs {
        assert_clean(run, what);
    }
    let successes = runs.iter().filter(|(_, r)| r.code == Some(0)).count();
    let failures = runs.len() - successes;
    assert!(
        successes >= 7 && failures >= 12,
        "{successes} ok, {failures} failed"
    );
    assert!(
        runs.iter()
            .any(|(_, r)| r.stderr.contains("DEBUG") && r.stderr.contains("PutParameter")),
        "logging wrote nothing about the calls, so this test proved nothing"
    );
    assert!(files_containing(helper.home.path(), CANARY).is_empty());
    // The memory-backed cache is the one place the secret may rest, and erase empties it.
    assert_eq!(
        cached, 1,
        "the cache held no entry, so erase proved nothing"
    );
    assert!(files_containing(helper.runtime.path(), CANARY).is_empty());
}
