//! Every AWS failure becomes one bounded, actionable line: the exit status, the time it
//! took against the deadline, and the cause named, for each fault the proxy can inject.

use crate::support::{unique, AwsFixture, Helper, Run, BOX_REGION, NOT_FOUND};

const GET_PARAMETER: &str = "AmazonSSM.GetParameter";
const GET_TOKEN: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// A registry served from a parameter of its own on the shared fixture, with `mode`
/// injected `count` times (-1: always) for that parameter only.
fn ssm_case(mode: &str, count: i64, deadline: &str) -> (Run, String) {
    let aws = AwsFixture::shared();
    let id = unique("fault");
    let parameter = format!("/slothbox/registry-credentials/{id}");
    aws.put_secret(BOX_REGION, &parameter, "fault-secret");
    let mut helper = Helper::new(aws);
    let registry = format!("{id}.example");
    helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"{id}","type":"token","registry":"{registry}","username":"u","parameter":"{parameter}"}}]}}"#
    ));
    helper.set("SLOTHBOX_DEADLINE_SECONDS", deadline);
    helper.set("SLOTHBOX_CACHE", "off");
    // Matched with its closing quote: fault-P-1 must not also hit fault-P-12.
    aws.fault_matching(GET_PARAMETER, mode, count, Some(&format!("{id}\"")));
    (helper.run(&["get"], &registry), registry)
}

fn ecr_case(account: &str, mode: &str, count: i64, deadline: &str) -> (Run, String) {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.env.remove("SLOTHBOX_CONFIG");
    helper.set("SLOTHBOX_DEADLINE_SECONDS", deadline);
    helper.set("SLOTHBOX_CACHE", "off");
    aws.fault_matching(GET_TOKEN, mode, count, Some(account));
    let registry = format!("{account}.dkr.ecr.eu-west-1.amazonaws.com");
    (helper.run(&["get"], &registry), registry)
}

/// A failure: exit 1, one line on stdout and the same on stderr, naming the registry and
/// every `needle`, never the not-found text, within the deadline plus process overhead.
fn assert_failure(run: &Run, registry: &str, deadline_s: f64, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_ne!(run.stdout, NOT_FOUND, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    assert_eq!(run.stderr, run.stdout, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!("slothbox: {registry}: ")),
        "{run:?}"
    );
    for needle in needles {
        assert!(run.stdout.contains(needle), "missing {needle:?}: {run:?}");
    }
    // Process start and a busy emulator on 2 cores get 5 s of slack; the failures that must
    // come at once use deadline_s 1 against a 10 s deadline, so retrying would still show.
    assert!(
        run.elapsed.as_secs_f64() < deadline_s + 5.0,
        "took {:?} against a {deadline_s} s deadline: {run:?}",
        run.elapsed
    );
    assert!(!run.stdout.contains("fault-secret"));
}

fn assert_success(run: &Run, secret: &str) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains(&format!("\"Secret\":\"{secret}\"")),
        "{run:?}"
    );
}

#[test]
fn throttling_for_a_few_seconds_ends_in_success() {
    let (run, _) = ssm_case("throttle", 5, "10");
    assert_success(&run, "fault-secret");
}

#[test]
fn throttling_past_the_deadline_says_so() {
    let (run, registry) = ssm_case("throttle", -1, "3");
    assert_failure(
        &run,
        &registry,
        3.0,
        &["ThrottlingException", "throttling", "deadline"],
    );
}

#[test]
fn a_brief_500_is_retried() {
    let (run, _) = ssm_case("500", 2, "10");
    assert_success(&run, "fault-secret");
}

#[test]
fn a_lasting_503_names_the_outage() {
    let (run, registry) = ssm_case("503", -1, "3");
    assert_failure(
        &run,
        &registry,
        3.0,
        &["503", "ServiceUnavailable", "AWS's side"],
    );
}

#[test]
fn a_slow_endpoint_hits_the_deadline() {
    let (run, registry) = ssm_case("slow", -1, "2");
    assert_failure(&run, &registry, 2.0, &["SSM", "2.0s", "deadline"]);
}

#[test]
fn closed_connections_fail_within_the_deadline() {
    let (run, registry) = ssm_case("close", -1, "3");
    assert_failure(
        &run,
        &registry,
        3.0,
        &["SSM", "connection closed", "can reach"],
    );
}

#[test]
fn access_denied_fails_at_once_with_the_missing_action() {
    let (run, registry) = ssm_case("access_denied", -1, "10");
    assert_failure(
        &run,
        &registry,
        1.0,
        &["AccessDeniedException", "ssm:GetParameter"],
    );
}

#[test]
fn a_refused_kms_key_names_kms_decrypt() {
    let (run, registry) = ssm_case("kms_denied", -1, "10");
    assert_failure(
        &run,
        &registry,
        1.0,
        &["AccessDeniedException", "kms:Decrypt"],
    );
}

#[test]
fn expired_credentials_say_how_to_renew_them() {
    let (run, registry) = ssm_case("expired_token", -1, "10");
    assert_failure(&run, &registry, 1.0, &["ExpiredTokenException", "IMDS"]);
}

#[test]
fn a_deleted_parameter_is_a_failure_with_the_fix() {
    let (run, registry) = ssm_case("parameter_not_found", -1, "10");
    assert_failure(
        &run,
        &registry,
        1.0,
        &["ParameterNotFound", "put-parameter"],
    );
}

#[test]
fn ecr_access_denied_names_the_iam_action() {
    let (run, registry) = ecr_case("610987654321", "access_denied", -1, "10");
    assert_failure(
        &run,
        &registry,
        1.0,
        &[
            "ECR",
            "AccessDeniedException",
            "ecr:GetAuthorizationToken",
            "610987654321",
        ],
    );
}

#[test]
fn ecr_throttling_past_the_deadline_says_so() {
    let (run, registry) = ecr_case("710987654321", "throttle", -1, "3");
    assert_failure(&run, &registry, 3.0, &["ECR", "ThrottlingException"]);
}

#[test]
fn ecr_recovers_from_a_brief_500() {
    let (run, _) = ecr_case("810987654321", "500", 1, "10");
    assert_success(&run, "810987654321-auth-token");
}

fn imds_case(mode: &str, deadline: &str) -> Run {
    let aws = AwsFixture::start();
    let mut helper = Helper::new(&aws);
    helper.write_config(
        r#"{"credentials":[{"id":"rc_imds","type":"token","registry":"imds.example","username":"u","parameter":"/x","region":"eu-west-1"}]}"#,
    );
    helper.set("SLOTHBOX_DEADLINE_SECONDS", deadline);
    helper.set("SLOTHBOX_CACHE", "off");
    aws.imds_mode(mode);
    helper.run(&["get"], "imds.example")
}

#[test]
fn a_slow_imds_hits_the_deadline_and_says_where_to_look() {
    let run = imds_case("slow", "3");
    assert_failure(&run, "imds.example", 3.0, &["IMDS"]);
}

#[test]
fn an_imdsv1_only_instance_is_explained() {
    let run = imds_case("v1-only", "5");
    assert_failure(
        &run,
        "imds.example",
        5.0,
        &["no AWS credentials", "IMDSv2", "--http-tokens"],
    );
}
