use crate::support::{unique, AwsFixture, Helper, BOX_REGION, NOT_FOUND};

fn token_config(registry: &str, parameter: &str, extra: &str) -> String {
    format!(
        r#"{{"credentials": [
            {{"id": "rc_123", "type": "token", "label": "GHCR (read packages)", "registry": "{registry}",
              "username": "acme-bot", "parameter": "{parameter}"{extra}}}
        ]}}"#
    )
}

#[test]
fn get_serves_the_ssm_secret_with_instance_role_credentials() {
    let aws = AwsFixture::shared();
    let parameter = format!("/slothbox/registry-credentials/{}", unique("rc"));
    aws.put_secret(BOX_REGION, &parameter, "ghp_fromSSM\"quoted\\");
    let helper = Helper::new(aws);
    helper.write_config(&token_config("ghcr.io", &parameter, ""));

    // No AWS_REGION and no keys: region and credentials both come from IMDS, as on a box.
    let run = helper.run(&["get"], "https://ghcr.io/");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "{\"ServerURL\":\"https://ghcr.io/\",\"Username\":\"acme-bot\",\"Secret\":\"ghp_fromSSM\\\"quoted\\\\\"}\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn every_spelling_of_the_host_finds_the_credential() {
    let aws = AwsFixture::shared();
    let parameter = format!("/slothbox/registry-credentials/{}", unique("rc"));
    aws.put_secret(BOX_REGION, &parameter, "hub-token");
    let helper = Helper::new(aws);
    helper.write_config(&token_config("registry-1.docker.io", &parameter, ""));
    for address in [
        "https://index.docker.io/v1/",
        "docker.io",
        "registry-1.docker.io",
    ] {
        let run = helper.run(&["get"], address);
        assert_eq!(run.code, Some(0), "{address}: {run:?}");
        let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(answer["Secret"], "hub-token", "{address}");
        assert_eq!(answer["ServerURL"], address);
    }
    // Docker Hub's token keys are not the Hub credential.
    let run = helper.run(&["get"], "https://index.docker.io/v1/refresh-token");
    assert_eq!((run.code, run.stdout.as_str()), (Some(1), NOT_FOUND));
}

#[test]
fn region_on_the_credential_and_in_an_arn_win() {
    let aws = AwsFixture::shared();
    let by_name = format!("/slothbox/registry-credentials/{}", unique("rc"));
    aws.put_secret("us-east-2", &by_name, "from-us-east-2");
    let helper = Helper::new(aws);
    helper.write_config(&token_config(
        "ghcr.io",
        &by_name,
        r#", "region": "us-east-2""#,
    ));
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("\"Secret\":\"from-us-east-2\""),
        "{run:?}"
    );

    let name = format!("/slothbox/registry-credentials/{}", unique("rc"));
    aws.put_secret("ap-southeast-2", &name, "from-the-arn");
    let arn = format!("arn:aws:ssm:ap-southeast-2:123456789012:parameter{name}");
    helper.write_config(&token_config("ghcr.io", &arn, ""));
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("\"Secret\":\"from-the-arn\""),
        "{run:?}"
    );
}

#[test]
fn default_parameter_name_comes_from_the_id() {
    let aws = AwsFixture::shared();
    let id = unique("rc");
    aws.put_secret(
        BOX_REGION,
        &format!("/slothbox/registry-credentials/{id}"),
        "by-id",
    );
    let helper = Helper::new(aws);
    helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"{id}","type":"token","registry":"quay.io","username":"robot"}}]}}"#
    ));
    let run = helper.run(&["get"], "quay.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run
        .stdout
        .contains("\"Username\":\"robot\",\"Secret\":\"by-id\""));
}

#[test]
fn ecr_hosts_get_a_token_from_the_instance_role() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    // No credentials file at all: ECR is served from the host name alone.
    helper.env.remove("SLOTHBOX_CONFIG");
    let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let run = helper.run(&["get"], host);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{{\"ServerURL\":\"{host}\",\"Username\":\"AWS\",\"Secret\":\"123456789012-auth-token\"}}\n")
    );
}

#[test]
fn unknown_hosts_answer_not_found_exactly_and_quietly() {
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    helper.write_config(&token_config("ghcr.io", "/x", ""));
    for host in [
        "quay.io",
        "ghcr.io.evil.example",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    ] {
        let run = helper.run(&["get"], host);
        assert_eq!(run.code, Some(1), "{host}: {run:?}");
        assert_eq!(run.stdout, NOT_FOUND, "{host}");
        assert_eq!(run.stderr, "", "{host}");
    }
}

#[test]
fn a_missing_parameter_is_a_failure_never_not_found() {
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    let parameter = format!("/slothbox/registry-credentials/{}", unique("missing"));
    helper.write_config(&token_config("ghcr.io", &parameter, ""));
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_ne!(run.stdout, NOT_FOUND);
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    for needle in [
        "ghcr.io",
        "ParameterNotFound",
        parameter.as_str(),
        "put-parameter",
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {run:?}");
    }
    // The person sees the same line on stderr, since docker shows only that during a pull.
    assert_eq!(run.stderr, run.stdout);
}

#[test]
fn list_and_version_need_no_aws() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.write_config(
        r#"{"credentials": [
            {"id": "rc_1", "type": "token", "registry": "ghcr.io", "username": "acme-bot"},
            {"id": "rc_2", "type": "token", "registry": "docker.io", "username": "acme"},
            {"id": "rc_3", "type": "ecr", "registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com"}
        ]}"#,
    );
    // Nothing listens here: any AWS call would fail.
    helper.set("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    helper.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9");
    let run = helper.run(&["list"], "unused");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "{\"123456789012.dkr.ecr.eu-west-1.amazonaws.com\":\"AWS\",\"ghcr.io\":\"acme-bot\",\"https://index.docker.io/v1/\":\"acme\"}\n"
    );
    let run = helper.run(&["version"], "");
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        format!(
            "docker-credential-slothbox (slothbox) {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let run = helper.run(&["--version"], "");
    assert_eq!(run.code, Some(0));
    let run = helper.run(&["--help"], "");
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("Usage: docker-credential-slothbox"));
    let run = helper.run(&[], "");
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.starts_with("Usage: "));
}

#[test]
fn a_typo_in_the_config_names_the_file_and_field() {
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    helper.write_config(
        r#"{"credentials": [{"id": "rc_1", "type": "token", "registy": "ghcr.io", "username": "u"}]}"#,
    );
    for action in ["get", "list"] {
        let run = helper.run(&[action], "ghcr.io");
        assert_eq!(run.code, Some(1), "{run:?}");
        assert_eq!(run.stdout.lines().count(), 1);
        assert!(run.stdout.contains("unknown field `registy`"), "{run:?}");
        assert!(
            run.stdout
                .contains(&helper.config_path().display().to_string()),
            "{run:?}"
        );
    }
}

#[test]
fn an_unreachable_endpoint_fails_within_the_deadline() {
    let aws = AwsFixture::shared();
    let parameter = format!("/slothbox/registry-credentials/{}", unique("rc"));
    // A listener that accepts and never answers: the worst case, a black hole.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    for (name, url) in [
        ("refused", "http://127.0.0.1:9".to_string()),
        ("black hole", endpoint),
    ] {
        let mut helper = Helper::new(aws);
        helper.write_config(&token_config("ghcr.io", &parameter, ""));
        helper.set("AWS_ENDPOINT_URL", &url);
        helper.set("SLOTHBOX_DEADLINE_SECONDS", "2");
        let run = helper.run(&["get"], "ghcr.io");
        assert_eq!(run.code, Some(1), "{name}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "{name}: {run:?}");
        assert!(run.stdout.contains("ghcr.io"), "{name}: {run:?}");
        assert!(run.stdout.contains("SSM"), "{name}: {run:?}");
        assert_ne!(run.stdout, NOT_FOUND);
        // The deadline is 2 s; a generous margin for process start on a loaded machine.
        assert!(
            run.elapsed.as_secs_f64() < 6.0,
            "{name}: took {:?}: {run:?}",
            run.elapsed
        );
    }
}

#[test]
fn no_secret_on_stderr_even_at_trace_level() {
    let aws = AwsFixture::shared();
    let parameter = format!("/slothbox/registry-credentials/{}", unique("rc"));
    let secret = "ghp_TRACEcanary0123456789";
    aws.put_secret(BOX_REGION, &parameter, secret);
    let mut helper = Helper::new(aws);
    helper.write_config(&token_config("ghcr.io", &parameter, ""));
    helper.set("SLOTHBOX_LOG", "trace");
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains(secret));
    assert!(!run.stderr.is_empty(), "trace logging wrote nothing");
    assert!(!run.stderr.contains(secret), "secret leaked to stderr");
    assert!(
        !run.stderr.contains("fixture-secret-access-key"),
        "AWS secret key leaked"
    );
    assert!(
        !run.stderr.contains("fixture-session-token"),
        "AWS session token leaked"
    );

    let run = helper.run(&["get"], "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        !run.stderr.contains("123456789012-auth-token"),
        "ECR password leaked"
    );
    assert!(
        !run.stderr.contains("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu"),
        "ECR token leaked"
    );
}

#[test]
fn one_get_is_one_ssm_call_and_list_makes_none() {
    let aws = AwsFixture::start();
    let parameter = "/slothbox/registry-credentials/rc_count";
    aws.put_secret(BOX_REGION, parameter, "counted");
    let helper = Helper::new(&aws);
    helper.write_config(&token_config("ghcr.io", parameter, ""));
    let run = helper.run(&["list"], "unused");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(aws.calls().len(), 0, "list called out: {:?}", aws.calls());
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    let calls = aws.calls();
    assert_eq!(calls.get("AmazonSSM.GetParameter"), Some(&1), "{calls:?}");
    // Credentials are resolved once and handed to the client, not fetched again by it.
    assert_eq!(calls.get("imds:slothbox-box-role"), Some(&1), "{calls:?}");
}

#[test]
fn throttling_is_retried_until_it_succeeds() {
    let aws = AwsFixture::start();
    let parameter = "/slothbox/registry-credentials/rc_throttled";
    aws.put_secret(BOX_REGION, parameter, "after-throttling");
    let helper = Helper::new(&aws);
    helper.write_config(&token_config("ghcr.io", parameter, ""));
    aws.fault("AmazonSSM.GetParameter", "throttle", 2);
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("after-throttling"));
    assert_eq!(aws.calls().get("AmazonSSM.GetParameter"), Some(&3));
}

#[test]
fn imds_down_names_the_credentials_source() {
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.write_config(&token_config("ghcr.io", "/x", r#", "region": "eu-west-1""#));
    helper.set("SLOTHBOX_DEADLINE_SECONDS", "3");
    aws.imds_mode("down");
    let run = helper.run(&["get"], "ghcr.io");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(run.stdout.contains("no AWS credentials"), "{run:?}");
    assert!(run.stdout.contains("instance profile"), "{run:?}");
    assert!(run.elapsed.as_secs_f64() < 7.0, "{run:?}");
    // The helper's temporary HOME holds nothing it wrote.
    let written: Vec<_> = std::fs::read_dir(helper.home.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(written, vec![std::ffi::OsString::from("credentials.json")]);
}

#[test]
fn a_credentials_file_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let aws = AwsFixture::shared();
    let helper = Helper::new(aws);
    helper.write_config(&token_config("ghcr.io", "/x", ""));
    std::fs::set_permissions(helper.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // Someone could have pointed quay.io at another registry's secret: fail, for any host.
    for host in ["ghcr.io", "quay.io"] {
        let run = helper.run(&["get"], host);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert_ne!(run.stdout, NOT_FOUND);
        assert!(run.stdout.contains("chmod go-w"), "{run:?}");
    }
}
