//! The cache: one upstream call per registry per credential lifetime, hits that touch no
//! network, and secrets only in memory-backed places.

use std::sync::Arc;

use crate::store::files_containing;
use crate::support::{keyring_lock, unique, AwsFixture, Helper, Run, BOX_REGION};

fn ssm_config(registry: &str, parameter: &str, cache: &str) -> String {
    format!(
        r#"{{"credentials":[{{"id":"rc_c","type":"token","registry":"{registry}","username":"u","parameter":"{parameter}"}}]{cache}}}"#
    )
}

fn concurrent_gets(helper: &Helper, host: &str, n: usize) -> Vec<Run> {
    let helper = Arc::new(helper);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let helper = Arc::clone(&helper);
                scope.spawn(move || helper.run(&["get"], host))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn fifty_concurrent_cold_gets_make_one_upstream_call_each() {
    let _keyring = keyring_lock();
    let aws = AwsFixture::start();
    let ssm_host = format!("{}.example", unique("flight"));
    let parameter = format!("/slothbox/registry-credentials/{}", unique("flight"));
    aws.put_secret(BOX_REGION, &parameter, "flight-secret");
    let mut helper = Helper::new(&aws);
    // The default store on a box; 50 processes starting at once on 2 cores need time.
    helper.with_keyring().set("SLOTHBOX_DEADLINE_SECONDS", "30");
    helper.write_config(&ssm_config(&ssm_host, &parameter, ""));
    let runs = concurrent_gets(&helper, &ssm_host, 50);
    for run in &runs {
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(
            run.stdout.contains("\"Secret\":\"flight-secret\""),
            "{run:?}"
        );
    }
    let ecr_host = "210987654321.dkr.ecr.eu-west-1.amazonaws.com";
    let runs = concurrent_gets(&helper, ecr_host, 50);
    for run in &runs {
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(
            run.stdout
                .contains("\"Secret\":\"210987654321-auth-token\""),
            "{run:?}"
        );
    }
    let calls = aws.calls();
    assert_eq!(calls.get("AmazonSSM.GetParameter"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
        Some(&1),
        "{calls:?}"
    );
}

#[test]
fn a_cache_hit_needs_no_network_at_all() {
    let _keyring = keyring_lock();
    let aws = AwsFixture::start();
    let host = format!("{}.example", unique("offline"));
    let parameter = "/slothbox/registry-credentials/offline";
    aws.put_secret(BOX_REGION, parameter, "offline-secret");
    let mut helper = Helper::new(&aws);
    helper.with_keyring();
    helper.write_config(&ssm_config(&host, parameter, ""));
    assert_eq!(helper.run(&["get"], &host).code, Some(0));
    let ecr = "310987654321.dkr.ecr.eu-west-1.amazonaws.com";
    assert_eq!(helper.run(&["get"], ecr).code, Some(0));
    // The emulator, the proxy and IMDS are gone: only the cache can answer now.
    drop(aws);
    let run = helper.run(&["get"], &host);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("offline-secret"));
    let run = helper.run(&["get"], ecr);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("310987654321-auth-token"));

    // Turned off for one run, the same get has to reach AWS and cannot.
    let mut off = Helper::new(AwsFixture::shared());
    off.env = helper.env.clone();
    off.set("SLOTHBOX_CACHE", "off");
    off.set("SLOTHBOX_DEADLINE_SECONDS", "2");
    let run = off.run(&["get"], &host);
    assert_eq!(run.code, Some(1), "{run:?}");
}

#[test]
fn expiry_and_ttl_send_the_next_get_upstream() {
    let aws = AwsFixture::start_with(&[("FIXTURE_ECR_TTL", "12")]);
    let host = format!("{}.example", unique("ttl"));
    let parameter = "/slothbox/registry-credentials/ttl";
    aws.put_secret(BOX_REGION, parameter, "ttl-secret");
    let helper = Helper::new(&aws);
    helper.write_config(&ssm_config(
        &host,
        parameter,
        r#","cache":{"ssm_seconds":1}"#,
    ));
    let ecr = "410987654321.dkr.ecr.eu-west-1.amazonaws.com";
    let token = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
    for _ in 0..2 {
        assert_eq!(helper.run(&["get"], &host).code, Some(0));
        assert_eq!(helper.run(&["get"], ecr).code, Some(0));
    }
    // The 12 s token refreshes at half-life; the second get above was a hit.
    assert_eq!(aws.calls().get(token), Some(&1));
    std::thread::sleep(std::time::Duration::from_millis(6_500));
    assert_eq!(helper.run(&["get"], &host).code, Some(0));
    assert_eq!(helper.run(&["get"], ecr).code, Some(0));
    let calls = aws.calls();
    assert_eq!(calls.get(token), Some(&2), "{calls:?}");
    assert!(calls["AmazonSSM.GetParameter"] >= 2, "{calls:?}");
}

#[test]
fn store_invalidates_and_clear_empties() {
    // cache clear empties every store, the shared keyring included.
    let _keyring = keyring_lock();
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.set("AWS_REGION", BOX_REGION);
    let host = format!("{}.example", unique("rotate"));
    let store = |secret: &str| {
        let request = serde_json::json!({"ServerURL": host, "Username": "u", "Secret": secret});
        let run = helper.run(&["store"], &request.to_string());
        assert_eq!(run.code, Some(0), "{run:?}");
    };
    // A long TTL: only invalidation can make the new secret appear.
    helper.write_config(r#"{"credentials":[],"cache":{"ssm_seconds":3600}}"#);
    store("old-secret");
    assert!(helper.run(&["get"], &host).stdout.contains("old-secret"));
    store("new-secret");
    assert!(helper.run(&["get"], &host).stdout.contains("new-secret"));
    assert!(helper.run(&["get"], &host).stdout.contains("new-secret"));
    assert_eq!(aws.calls().get("AmazonSSM.GetParameter"), Some(&2));

    let run = helper.run(&["cache", "clear"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("removed "), "{run:?}");
    assert!(helper.run(&["get"], &host).stdout.contains("new-secret"));
    assert_eq!(aws.calls().get("AmazonSSM.GetParameter"), Some(&3));
}

#[test]
fn runtime_dir_cache_is_private_memory_backed_and_never_in_home() {
    let shm = std::path::Path::new("/dev/shm");
    assert!(
        slothbox::cache::is_memory_backed(shm),
        "/dev/shm is not tmpfs on this machine; the runtime-dir cache test needs it"
    );
    let aws = AwsFixture::start();
    let runtime = tempfile::tempdir_in(shm).unwrap();
    let host = format!("{}.example", unique("tmpfs"));
    let parameter = "/slothbox/registry-credentials/tmpfs";
    aws.put_secret(BOX_REGION, parameter, "tmpfs-secret");
    let mut helper = Helper::new(&aws);
    helper.write_config(&ssm_config(&host, parameter, ""));
    helper.set("SLOTHBOX_CACHE", "runtime-dir");
    helper.set("XDG_RUNTIME_DIR", &runtime.path().display().to_string());
    helper.set("SLOTHBOX_LOG", "debug");
    let run = helper.run(&["get"], &host);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("cache store in use"), "{run:?}");
    assert!(!run.stderr.contains("tmpfs-secret"));
    let cached = files_containing(runtime.path(), "tmpfs-secret");
    assert_eq!(cached.len(), 1, "{cached:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cached[0]), 0o600);
    assert_eq!(mode(cached[0].parent().unwrap()), 0o700);
    assert!(files_containing(helper.home.path(), "tmpfs-secret").is_empty());

    // A corrupt entry is a miss, replaced by the next fetch.
    std::fs::write(&cached[0], b"\x00garbage").unwrap();
    let run = helper.run(&["get"], &host);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(aws.calls().get("AmazonSSM.GetParameter"), Some(&2));

    // A runtime dir on a persistent disk is refused: nothing is written there.
    let disk = helper.home.path().join("run");
    std::fs::create_dir(&disk).unwrap();
    helper.set("XDG_RUNTIME_DIR", &disk.display().to_string());
    let run = helper.run(&["get"], &host);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(files_containing(helper.home.path(), "tmpfs-secret").is_empty());
}

/// Rewrites the one cache file under `dir` with `edit` applied to its JSON.
fn edit_cache_entry(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let files = files_containing(dir, "\"key\"");
    assert_eq!(files.len(), 1, "{files:?}");
    let mut entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    edit(&mut entry);
    std::fs::write(&files[0], entry.to_string()).unwrap();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_valid_cached_ecr_token_is_served_when_refreshing_fails() {
    let aws = AwsFixture::start();
    let runtime = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut helper = Helper::new(&aws);
    helper.write_config(r#"{"credentials":[]}"#);
    helper.set("SLOTHBOX_CACHE", "runtime-dir");
    helper.set("XDG_RUNTIME_DIR", &runtime.path().display().to_string());
    let ecr = "510987654321.dkr.ecr.eu-west-1.amazonaws.com";
    let run = helper.run(&["get"], ecr);
    assert_eq!(run.code, Some(0), "{run:?}");
    // Due for refresh, still valid for an hour; and ECR now refuses.
    edit_cache_entry(runtime.path(), |e| {
        e["fresh_until"] = (unix_now() - 1).into()
    });
    aws.fault(
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        "access_denied",
        -1,
    );
    let run = helper.run(&["get"], ecr);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("510987654321-auth-token"), "{run:?}");
    assert!(
        run.stderr
            .starts_with("warning: refreshing the ECR token failed"),
        "{run:?}"
    );
    assert!(run.stderr.contains("AccessDeniedException"), "{run:?}");
    assert!(!run.stderr.contains("510987654321-auth-token"), "{run:?}");

    // A token about to expire is never served, even then.
    edit_cache_entry(runtime.path(), |e| {
        e["expires_at"] = (unix_now() + 30).into()
    });
    let run = helper.run(&["get"], ecr);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("AccessDeniedException"), "{run:?}");
}

#[test]
fn a_get_racing_store_never_re_caches_the_old_secret() {
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.set("AWS_REGION", BOX_REGION);
    helper.write_config(r#"{"credentials":[],"cache":{"ssm_seconds":3600}}"#);
    let host = format!("{}.example", unique("race"));
    let store = |secret: &str| {
        let request = serde_json::json!({"ServerURL": host, "Username": "u", "Secret": secret});
        let run = helper.run(&["store"], &request.to_string());
        assert_eq!(run.code, Some(0), "{run:?}");
    };
    store("secret-0");
    // Every GetParameter takes half a second, so a get is surely fetching the old secret
    // while the store below runs; without the registry lock it would cache it afterwards.
    aws.fault("AmazonSSM.GetParameter", "delay", -1);
    for round in 1..=3 {
        let new = format!("secret-{round}");
        std::thread::scope(|scope| {
            let racing = scope.spawn(|| helper.run(&["get"], &host));
            std::thread::sleep(std::time::Duration::from_millis(150));
            store(&new);
            let raced = racing.join().unwrap();
            assert_eq!(raced.code, Some(0), "{raced:?}");
        });
        let run = helper.run(&["get"], &host);
        assert!(run.stdout.contains(&new), "round {round}: {run:?}");
    }
}

#[test]
fn a_valid_ecr_token_is_served_when_another_fetch_holds_the_lock_too_long() {
    use std::os::unix::fs::MetadataExt;
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.write_config(r#"{"credentials":[]}"#);
    let ecr = "910987654321.dkr.ecr.eu-west-1.amazonaws.com";
    let run = helper.run(&["get"], ecr);
    assert_eq!(run.code, Some(0), "{run:?}");
    edit_cache_entry(helper.runtime.path(), |e| {
        e["fresh_until"] = (unix_now() - 1).into()
    });
    // Another process is stuck fetching this registry: it holds the lock past our deadline.
    let uid = std::fs::metadata(helper.runtime.path()).unwrap().uid();
    let lock_path = helper
        .runtime
        .path()
        .join(format!("slothbox-{uid}-locks"))
        .join(format!("{ecr}.lock"));
    let held = std::fs::File::open(&lock_path).expect("the first get left its lock file");
    held.lock().unwrap();
    helper.set("SLOTHBOX_DEADLINE_SECONDS", "1");
    let run = helper.run(&["get"], ecr);
    drop(held);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("910987654321-auth-token"), "{run:?}");
    assert!(
        run.stderr
            .contains("another docker-credential-slothbox process"),
        "{run:?}"
    );
    assert_eq!(
        aws.calls()
            .get("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
        Some(&1),
        "the stuck lock was not respected"
    );
}
