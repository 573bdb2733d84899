//! The judges: real clients (skopeo, the docker CLI) against a real registry, with the
//! helper between them and the emulated AWS account.

use crate::store::files_containing;
use crate::support::{unique, AwsFixture, ClientEnv, RegistryFixture, BOX_REGION};

/// A world where the test registry's password is in SSM and our file serves the registry.
fn serving(secret: Option<&str>) -> (ClientEnv, &'static RegistryFixture) {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    let env = ClientEnv::new(aws, &[&registry.registry]);
    let parameter = format!("/slothbox/registry-credentials/{}", unique("registry"));
    if let Some(secret) = secret {
        aws.put_secret(BOX_REGION, &parameter, secret);
    }
    env.helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"rc_test","type":"token","registry":"{}","username":"{}","parameter":"{}"}}]}}"#,
        registry.registry, registry.username, parameter
    ));
    (env, registry)
}

fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

#[test]
fn skopeo_pulls_the_private_image_through_the_helper() {
    let registry = RegistryFixture::shared();
    let (env, registry) = serving(Some(&registry.password));
    let source = format!("docker://{}", registry.image);
    let run = env.skopeo_inspect(registry);
    assert_eq!(run.code, Some(0), "{run:?}");
    let inspected: serde_json::Value = serde_json::from_str(&run.stdout).expect("inspect JSON");
    assert!(inspected["Name"]
        .as_str()
        .unwrap()
        .ends_with("slothbox/hello"));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);

    let out = env.helper.home.path().join("pulled");
    let target = format!("dir:{}", out.display());
    let run = env.client(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-cert-dir",
            &registry.cert_dir,
            &source,
            &target,
        ],
        "",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(out.join("manifest.json").is_file(), "no manifest pulled");
    // skopeo asked us by bare host[:port].
    assert!(
        env.calls().contains(&format!("get {}", registry.registry)),
        "{:?}",
        env.calls()
    );
    assert!(files_containing(env.helper.home.path(), &registry.password).is_empty());
}

#[test]
fn skopeo_with_a_wrong_secret_gets_the_registry_401() {
    let (env, registry) = serving(Some("not-the-password"));
    let run = env.skopeo_inspect(registry);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(lower(&run.stderr).contains("unauthorized"), "{run:?}");
    assert!(
        !run.stderr.contains("slothbox:"),
        "the helper did not fail: {run:?}"
    );
}

#[test]
fn an_unserved_registry_falls_back_to_anonymous() {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    let env = ClientEnv::new(aws, &[&registry.registry]);
    env.helper.write_config(r#"{"credentials":[]}"#);
    let run = env.skopeo_inspect(registry);
    assert_ne!(run.code, Some(0), "{run:?}");
    // The not-found answer was understood: skopeo went on anonymously and the registry
    // refused it, rather than skopeo aborting on a helper error.
    assert!(lower(&run.stderr).contains("unauthorized"), "{run:?}");
    assert!(
        !lower(&run.stderr).contains("credentials not found"),
        "{run:?}"
    );
    assert_eq!(env.calls(), vec![format!("get {}", registry.registry)]);
}

#[test]
fn a_missing_parameter_stops_skopeo_with_our_message() {
    let (env, registry) = serving(None);
    let run = env.skopeo_inspect(registry);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("ParameterNotFound"), "{run:?}");
    assert!(run.stderr.contains("put-parameter"), "{run:?}");
    assert!(
        !lower(&run.stderr).contains("unauthorized"),
        "pulled anonymously: {run:?}"
    );
}

#[test]
fn docker_pull_asks_the_helper_for_the_registry() {
    let registry = RegistryFixture::shared();
    let (env, registry) = serving(Some(&registry.password));
    let run = env.client("docker", &["pull", &registry.image], "");
    // No daemon runs here, so the pull itself fails; the credential lookup comes first.
    assert_ne!(run.code, Some(0), "{run:?}");
    assert_eq!(
        env.calls().first(),
        Some(&format!("get {}", registry.registry)),
        "{run:?}"
    );
}

#[test]
fn docker_login_and_logout_keep_the_secret_in_ssm_only() {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    let env = ClientEnv::new(aws, &[&registry.registry]);
    let run = env.client(
        "docker",
        &[
            "login",
            &registry.registry,
            "-u",
            &registry.username,
            "--password-stdin",
        ],
        &registry.password,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("Login Succeeded"), "{run:?}");
    assert!(
        env.calls().contains(&"store".to_string()),
        "{:?}",
        env.calls()
    );

    let parameter = format!(
        "/slothbox/registry-credentials/{}",
        registry.registry.replace(':', "_")
    );
    let (rt, ssm) = aws.ssm(BOX_REGION);
    let stored = rt
        .block_on(
            ssm.get_parameter()
                .name(&parameter)
                .with_decryption(true)
                .send(),
        )
        .expect("docker login wrote the SSM parameter");
    let stored = stored.parameter.unwrap();
    assert_eq!(stored.value.as_deref(), Some(registry.password.as_str()));
    assert_eq!(
        stored.r#type,
        Some(aws_sdk_ssm::types::ParameterType::SecureString)
    );

    // No file anywhere under HOME or DOCKER_CONFIG holds the secret, plain or base64.
    let basic =
        aws_smithy_types::base64::encode(format!("{}:{}", registry.username, registry.password));
    assert!(files_containing(env.helper.home.path(), &registry.password).is_empty());
    assert!(files_containing(env.helper.home.path(), &basic).is_empty());
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.docker_config.join("config.json")).unwrap(),
    )
    .unwrap();
    if let Some(entry) = config["auths"].get(&registry.registry) {
        assert!(
            entry.get("auth").is_none(),
            "auths holds the secret: {config}"
        );
    }
    // docker login kept our credHelpers entry and did not fall back to its own store.
    assert_eq!(config["credHelpers"][&registry.registry], "slothbox");
    assert!(config.get("credsStore").is_none(), "{config}");

    // The stored credential pulls.
    let run = env.skopeo_inspect(registry);
    assert_eq!(run.code, Some(0), "{run:?}");

    let run = env.client("docker", &["logout", &registry.registry], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let gone = rt.block_on(ssm.get_parameter().name(&parameter).send());
    assert!(gone.is_err(), "docker logout left the parameter");
    let run = env.helper.run(&["list"], "unused");
    assert_eq!(run.stdout, "{}\n", "docker logout left the entry");
}

#[test]
fn a_buildkit_style_caller_lists_then_gets_every_registry() {
    let registry = RegistryFixture::shared();
    let (env, _) = serving(Some(&registry.password));
    let aws = AwsFixture::shared();
    let hub = format!("/slothbox/registry-credentials/{}", unique("hub"));
    aws.put_secret(BOX_REGION, &hub, "hub-token");
    let config_path = env.helper.config_path();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["credentials"].as_array_mut().unwrap().extend([
        serde_json::json!({"id": "rc_hub", "type": "token", "registry": "docker.io", "username": "acme", "parameter": hub}),
        serde_json::json!({"id": "rc_ecr", "type": "ecr", "registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com"}),
    ]);
    std::fs::write(&config_path, config.to_string()).unwrap();

    let run = env.helper.run(&["list"], "unused");
    assert_eq!(run.code, Some(0), "{run:?}");
    let listed: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (server, username) in &listed {
        let run = env.helper.run(&["get"], server);
        assert_eq!(run.code, Some(0), "{server}: {run:?}");
        let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(&answer["ServerURL"], server.as_str());
        assert_eq!(&answer["Username"], username.as_str());
        assert!(!answer["Secret"].as_str().unwrap().is_empty());
    }
}
