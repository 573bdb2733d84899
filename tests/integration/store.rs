use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{AwsFixture, Helper, BOX_REGION, NOT_FOUND};

fn store_request(server: &str, username: &str, secret: &str) -> String {
    serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret}).to_string()
}

fn ssm_value(aws: &AwsFixture, name: &str) -> Option<String> {
    let (rt, ssm) = aws.ssm(BOX_REGION);
    rt.block_on(ssm.get_parameter().name(name).with_decryption(true).send())
        .ok()
        .and_then(|a| a.parameter?.value)
}

/// Every file under `root` whose bytes contain `needle`.
pub fn files_containing(root: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[test]
fn store_get_rotate_erase_round_trip() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.set("AWS_REGION", BOX_REGION);
    let server = "registry.roundtrip.example:5000";
    let parameter = "/slothbox/registry-credentials/registry.roundtrip.example_5000";

    let run = helper.run(&["store"], &store_request(server, "deploy", "first-secret"));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(ssm_value(aws, parameter).as_deref(), Some("first-secret"));
    let run = helper.run(&["get"], server);
    assert_eq!(
        run.stdout,
        format!(
            "{{\"ServerURL\":\"{server}\",\"Username\":\"deploy\",\"Secret\":\"first-secret\"}}\n"
        )
    );
    let run = helper.run(&["list"], "unused");
    assert_eq!(run.stdout, format!("{{\"{server}\":\"deploy\"}}\n"));

    // Rotation: the next get returns the new secret.
    let run = helper.run(
        &["store"],
        &store_request(server, "deploy", "second-secret"),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let run = helper.run(&["get"], server);
    assert!(
        run.stdout.contains("\"Secret\":\"second-secret\""),
        "{run:?}"
    );

    // The file records the registry, never the secret.
    assert!(files_containing(helper.home.path(), "first-secret").is_empty());
    assert!(files_containing(helper.home.path(), "second-secret").is_empty());

    let run = helper.run(&["erase"], server);
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{run:?}");
    assert_eq!(ssm_value(aws, parameter), None, "parameter survived erase");
    let run = helper.run(&["get"], server);
    assert_eq!((run.code, run.stdout.as_str()), (Some(1), NOT_FOUND));
    // docker erases twice; the second finds nothing and is still fine.
    let run = helper.run(&["erase"], server);
    assert_eq!(run.code, Some(0), "{run:?}");
}

#[test]
fn identity_tokens_round_trip_as_docker_expects() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.set("AWS_REGION", BOX_REGION);
    // docker escapes <token> as \u003ctoken\u003e.
    let input =
        r#"{"ServerURL":"idtoken.example","Username":"\u003ctoken\u003e","Secret":"refresh-abc"}"#;
    let run = helper.run(&["store"], input);
    assert_eq!(run.code, Some(0), "{run:?}");
    let run = helper.run(&["get"], "idtoken.example");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["Username"], "<token>");
    assert_eq!(answer["Secret"], "refresh-abc");
}

#[test]
fn ecr_store_and_erase_succeed_without_writing() {
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let run = helper.run(&["store"], &store_request(host, "AWS", "ecr-password"));
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{run:?}");
    assert!(!helper.config_path().exists());
    let parameter = format!("/slothbox/registry-credentials/{}", host.replace(':', "_"));
    assert_eq!(ssm_value(aws, &parameter), None, "ECR store wrote to SSM");
    assert!(files_containing(helper.home.path(), "ecr-password").is_empty());
    let run = helper.run(&["erase"], host);
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{run:?}");
}

#[test]
fn bad_store_input_gets_its_own_error_and_writes_nothing() {
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    let big = format!(
        r#"{{"ServerURL":"a.example","Username":"u","Secret":"{}"}}"#,
        "x".repeat(70_000)
    );
    for (input, want) in [
        (store_request("", "u", "s"), "no credentials server URL"),
        (
            store_request("a.example", "", "s"),
            "no credentials username",
        ),
        (store_request("a.example", "u", ""), "no credentials secret"),
        ("{\"ServerURL\":".to_string(), "not a JSON object"),
        (big, "larger than"),
        (store_request("a.example/some/path", "u", "s"), "has a path"),
    ] {
        let run = helper.run(&["store"], &input);
        assert_eq!(run.code, Some(1), "{want}: {run:?}");
        assert!(run.stdout.contains(want), "{want}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 1);
        assert!(!helper.config_path().exists(), "{want}: wrote a file");
    }
}

#[test]
fn an_unwritable_credentials_file_is_named_and_ssm_is_untouched() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.set("AWS_REGION", BOX_REGION);
    // A directory we cannot write into, like /etc/slothbox for a service user. As root the
    // permission bits do not stop us, so make the parent a file instead.
    let blocker = helper.home.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let config = blocker.join("credentials.json");
    helper.set("SLOTHBOX_CONFIG", &config.display().to_string());
    let run = helper.run(
        &["store"],
        &store_request("unwritable.example", "u", "never-stored"),
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(&config.display().to_string()),
        "{run:?}"
    );
    assert_eq!(
        ssm_value(aws, "/slothbox/registry-credentials/unwritable.example"),
        None
    );
}

#[test]
fn killing_store_at_random_points_never_leaves_a_broken_file() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.set("AWS_REGION", BOX_REGION);
    let original = r#"{
  "credentials": [
    {"id": "rc_keep", "type": "token", "registry": "keep.example", "username": "keeper"}
  ]
}
"#;
    helper.write_config(original);
    // A small LCG: the kill points differ from run to run but need no extra crate.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    // Kill points spread over a whole store, as long as an uninterrupted one takes here.
    let mut timed = helper.run(
        &["store"],
        &store_request("timed.example", "u", "killed-secret"),
    );
    for _ in 0..2 {
        let again = helper.run(
            &["store"],
            &store_request("timed.example", "u", "killed-secret"),
        );
        assert_eq!(again.code, Some(0), "{again:?}");
        timed.elapsed = timed.elapsed.min(again.elapsed);
    }
    // Twice the fastest run: on a busy machine runs are slower, and some must still finish.
    let window = timed.elapsed.as_micros() as u64 * 2;
    eprintln!("an uninterrupted store took {:?}", timed.elapsed);
    let mut completed = 0;
    let kills = 60;
    for i in 0..kills {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_micros((seed >> 33) % window);
        let mut child = helper
            .command(&["store"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let request = store_request(&format!("kill{i}.example"), "u", "killed-secret");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            completed += 1;
        }
        let text = std::fs::read_to_string(helper.config_path()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("kill {i} after {delay:?} left invalid JSON ({e}): {text:?}")
        });
        let list = doc["credentials"].as_array().unwrap();
        assert_eq!(list[0]["id"], "rc_keep", "kill {i}: {text}");
        let run = helper.run(&["list"], "unused");
        assert_eq!(run.code, Some(0), "kill {i}: {run:?}");
    }
    // Some kills must land before the end and some after, or the test proved nothing.
    assert!(completed < kills, "no store was ever interrupted");
    assert!(
        completed > 0,
        "every store was killed early; the window missed the write"
    );
    eprintln!("{completed} of {kills} stores finished before their kill");
    assert!(files_containing(helper.home.path(), "killed-secret").is_empty());
}
