//! `configure` on the config.json shapes found in the wild, `doctor` against the emulator
//! and the real registry, and install.sh as a bake pipeline runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    binary, run_command, unique, AwsFixture, ClientEnv, Helper, RegistryFixture, Run, BOX_REGION,
};

const SHAPES: &[(&str, &str)] = &[
    ("empty file", ""),
    ("empty object", "{}"),
    ("credsStore set", "{\n\t\"credsStore\": \"desktop\"\n}"),
    (
        "existing credHelpers",
        "{\n\t\"credHelpers\": {\n\t\t\"gcr.io\": \"gcloud\",\n\t\t\"public.ecr.aws\": \"ecr-login\"\n\t}\n}",
    ),
    (
        "auths with secrets",
        "{\n\t\"auths\": {\n\t\t\"ghcr.io\": {\n\t\t\t\"auth\": \"Ym90OmdocF9zZWNyZXQ=\"\n\t\t},\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"cTpx\"\n\t\t}\n\t}\n}",
    ),
    (
        "proxies and plugins",
        "{\n\t\"proxies\": {\n\t\t\"default\": {\n\t\t\t\"httpProxy\": \"http://proxy.internal:3128\",\n\t\t\t\"noProxy\": \"169.254.169.254\"\n\t\t}\n\t},\n\t\"plugins\": {\n\t\t\"buildx\": {\n\t\t\t\"default\": \"builder\"\n\t\t}\n\t},\n\t\"cliPluginsExtraDirs\": [\"/opt/docker/plugins\"]\n}",
    ),
    (
        "unknown keys, two-space indent",
        "{\n  \"x-acme\": {\"team\": \"infra\", \"n\": [1, 2.5, null, true]},\n  \"detachKeys\": \"ctrl-e,e\"\n}\n",
    ),
    (
        "CRLF",
        "{\r\n\t\"psFormat\": \"table {{.ID}}\",\r\n\t\"auths\": {}\r\n}\r\n",
    ),
];

fn configure(helper: &Helper, args: &[&str]) -> Run {
    let mut all = vec!["configure"];
    all.extend_from_slice(args);
    helper.run(&all, "")
}

fn json(text: &str) -> serde_json::Value {
    if text.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text:?}"))
    }
}

#[test]
fn configure_keeps_every_shape_and_is_idempotent_and_undoable() {
    let aws = AwsFixture::shared();
    for (shape, original) in SHAPES {
        for symlinked in [false, true] {
            let mut helper = Helper::new(aws);
            helper.write_config(
                r#"{"credentials":[
                    {"id":"rc_1","type":"token","registry":"ghcr.io","username":"bot"},
                    {"id":"rc_2","type":"token","registry":"docker.io","username":"acme"},
                    {"id":"rc_3","type":"ecr","registry":"123456789012.dkr.ecr.eu-west-1.amazonaws.com"}]}"#,
            );
            let dir = helper.home.path().join(".docker");
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("config.json");
            let real = helper.home.path().join("dotfiles-docker-config.json");
            if symlinked {
                std::fs::write(&real, original).unwrap();
                std::os::unix::fs::symlink(&real, &config).unwrap();
            } else {
                std::fs::write(&config, original).unwrap();
            }
            helper.set("DOCKER_CONFIG", &dir.display().to_string());
            let what = format!("{shape}{}", if symlinked { " (symlinked)" } else { "" });

            let run = configure(&helper, &[]);
            assert_eq!(run.code, Some(0), "{what}: {run:?}");
            let first = std::fs::read_to_string(&config).unwrap();
            let doc = json(&first);
            for key in [
                "ghcr.io",
                "https://index.docker.io/v1/",
                "docker.io",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            ] {
                assert_eq!(doc["credHelpers"][key], "slothbox", "{what}: {first}");
            }
            // Every key of the original survives with its value, ours aside.
            for (key, value) in json(original).as_object().unwrap() {
                if key != "credHelpers" {
                    assert_eq!(&doc[key], value, "{what}: {key} changed");
                }
            }
            if let Some(helpers) = json(original)["credHelpers"].as_object() {
                for (key, value) in helpers {
                    assert_eq!(&doc["credHelpers"][key], value, "{what}");
                }
            }
            if original.contains("\r\n") {
                assert!(
                    !first.replace("\r\n", "").contains('\n'),
                    "{what}: line endings mixed"
                );
            }
            if shape.contains("secrets") {
                assert!(
                    run.stderr.contains("plaintext"),
                    "{what}: no warning: {run:?}"
                );
            }
            if symlinked {
                assert!(std::fs::symlink_metadata(&config)
                    .unwrap()
                    .file_type()
                    .is_symlink());
            }

            let run = configure(&helper, &[]);
            assert_eq!(run.code, Some(0), "{what}: {run:?}");
            assert_eq!(
                std::fs::read_to_string(&config).unwrap(),
                first,
                "{what}: not idempotent"
            );
            assert!(run.stdout.contains("nothing to change"), "{what}: {run:?}");

            let run = configure(&helper, &["--undo"]);
            assert_eq!(run.code, Some(0), "{what}: {run:?}");
            let undone = std::fs::read_to_string(&config).unwrap();
            assert_eq!(
                json(&undone),
                json(original),
                "{what}: undo left {undone:?}"
            );
        }
    }
}

#[test]
fn configure_refuses_a_broken_file_and_removes_plaintext_on_request() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.write_config(
        r#"{"credentials":[{"id":"rc_1","type":"token","registry":"ghcr.io","username":"bot"}]}"#,
    );
    let dir = helper.home.path().join(".docker");
    std::fs::create_dir_all(&dir).unwrap();
    helper.set("DOCKER_CONFIG", &dir.display().to_string());
    let config = dir.join("config.json");
    std::fs::write(&config, "{\"auths\": {").unwrap();
    let run = configure(&helper, &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("left untouched"), "{run:?}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "{\"auths\": {");

    std::fs::write(&config, SHAPES[4].1).unwrap();
    let run = configure(&helper, &["--remove-plaintext"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains("Ym90OmdocF9zZWNyZXQ="), "{text}");
    assert!(
        text.contains("cTpx"),
        "quay.io is not ours to touch: {text}"
    );
}

#[test]
fn configure_writes_the_containers_auth_file_with_docker_io() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    helper.write_config(r#"{"credentials":[{"id":"rc_1","type":"token","registry":"registry-1.docker.io","username":"acme"}]}"#);
    let runtime = helper.home.path().join("run");
    std::fs::create_dir_all(runtime.join("containers")).unwrap();
    std::fs::write(runtime.join("containers/auth.json"), "{\"auths\": {}}").unwrap();
    helper.set("XDG_RUNTIME_DIR", &runtime.display().to_string());
    helper.set(
        "DOCKER_CONFIG",
        &helper.home.path().join(".docker").display().to_string(),
    );
    let run = configure(&helper, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let auth = json(&std::fs::read_to_string(runtime.join("containers/auth.json")).unwrap());
    assert_eq!(
        auth,
        serde_json::json!({"auths": {}, "credHelpers": {"docker.io": "slothbox"}})
    );
}

#[test]
fn killing_configure_never_leaves_a_broken_docker_config() {
    let aws = AwsFixture::shared();
    let mut helper = Helper::new(aws);
    let registries: Vec<String> = (0..200)
        .map(|i| {
            format!(r#"{{"id":"rc_{i}","type":"token","registry":"r{i}.example","username":"u"}}"#)
        })
        .collect();
    helper.write_config(&format!(r#"{{"credentials":[{}]}}"#, registries.join(",")));
    let dir = helper.home.path().join(".docker");
    std::fs::create_dir_all(&dir).unwrap();
    helper.set("DOCKER_CONFIG", &dir.display().to_string());
    let config = dir.join("config.json");
    let original = SHAPES[5].1;
    let timed = {
        std::fs::write(&config, original).unwrap();
        let run = configure(&helper, &[]);
        assert_eq!(run.code, Some(0), "{run:?}");
        run.elapsed
    };
    let mut seed = u64::from(std::process::id());
    let (mut completed, kills) = (0, 50);
    for i in 0..kills {
        std::fs::write(&config, original).unwrap();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_micros((seed >> 33) % (timed.as_micros() as u64 * 5 / 4 + 1));
        let mut child = helper
            .command(&["configure"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        completed += usize::from(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&config).unwrap();
        let doc = json(&text);
        assert_eq!(
            doc["plugins"]["buildx"]["default"], "builder",
            "kill {i}: {text:?}"
        );
        let helpers = doc["credHelpers"].as_object().map_or(0, |m| m.len());
        assert!(
            helpers == 0 || helpers == 200,
            "kill {i}: a partial file with {helpers} helpers"
        );
    }
    eprintln!("{completed} of {kills} configure runs finished before their kill");
    assert!(completed < kills, "no configure was ever interrupted");
    assert!(
        completed > 0,
        "every configure was killed early; the window missed the write"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    // A killed write may leave its temporary file (it holds no secret); never a broken config.
    eprintln!("{} temporary files left by killed writes", leftovers.len());
}

fn doctor_world(secret: Option<&str>) -> (Helper, &'static RegistryFixture, String) {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    let parameter = format!("/slothbox/registry-credentials/{}", unique("doctor"));
    if let Some(secret) = secret {
        aws.put_secret(BOX_REGION, &parameter, secret);
    }
    let env = ClientEnv::new(aws, &[&registry.registry]);
    let helper = env.helper;
    helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"rc_doc","type":"token","registry":"{}","username":"{}","parameter":"{parameter}"}}]}}"#,
        registry.registry, registry.username
    ));
    std::fs::set_permissions(
        helper.config_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let ca = format!("{}/ca.crt", registry.cert_dir);
    (helper, registry, ca)
}

fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(check))
        .unwrap_or_else(|| panic!("no {check:?} line in:\n{out}"))
}

#[test]
fn doctor_passes_then_names_each_failure() {
    let registry = RegistryFixture::shared();
    let (helper, registry, ca) = doctor_world(Some(&registry.password));
    let run = helper.run(&["doctor", "--ca-file", &ca], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(line(&run.stdout, "login to").starts_with("PASS"), "{run:?}");
    assert!(line(&run.stdout, "AWS credentials").contains("ASIAFIXTUREBOXROLE01"));
    assert!(run.stdout.ends_with("all checks passed\n"), "{run:?}");
    assert!(!run.stdout.contains(&registry.password));
    assert!(!run.stdout.contains('\x1b'), "colour on a pipe");
    let run = helper.run(&["doctor", "--ca-file", &ca, "--json"], "");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], true, "{run:?}");

    let (helper, _, ca) = doctor_world(Some("a-revoked-token"));
    let run = helper.run(&["doctor", "--ca-file", &ca], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    let login = line(&run.stdout, "login to");
    assert!(login.starts_with("FAIL"), "{run:?}");
    assert!(
        login.contains("HTTP 401") && login.contains("expired or revoked token"),
        "{login}"
    );
    assert!(!run.stdout.contains("a-revoked-token"));

    let (helper, _, ca) = doctor_world(None);
    let run = helper.run(&["doctor", "--ca-file", &ca], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    let secret = line(&run.stdout, "secret for");
    assert!(
        secret.starts_with("FAIL") && secret.contains("ParameterNotFound"),
        "{run:?}"
    );

    let (helper, _, ca) = doctor_world(Some("x"));
    std::fs::set_permissions(
        helper.config_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let run = helper.run(&["doctor", "--ca-file", &ca], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    let file = line(&run.stdout, "credentials file");
    assert!(
        file.starts_with("FAIL") && file.contains("world-writable") && file.contains("0666"),
        "{run:?}"
    );
    assert!(run.stdout.contains("fix: chmod go-w"), "{run:?}");
}

/// Runs install.sh with `args` in the box's environment.
fn install_sh(env: &BTreeMap<String, String>, args: &[&str]) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let mut command = Command::new("bash");
    command.arg(script).args(args).env_clear().envs(env);
    run_command(command, "")
}

#[test]
fn install_sh_with_a_prebuilt_binary_configures_a_box_that_pulls() {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    // A box as baked: no credHelpers yet, no docker login ever run.
    let mut env = ClientEnv::new(aws, &[]);
    let parameter = format!("/slothbox/registry-credentials/{}", unique("baked"));
    aws.put_secret(BOX_REGION, &parameter, &registry.password);
    env.helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"rc_bake","type":"token","registry":"{}","username":"{}","parameter":"{parameter}"}}]}}"#,
        registry.registry, registry.username
    ));
    std::fs::write(env.docker_config.join("config.json"), "{}").unwrap();
    let prefix = env.helper.home.path().join("prefix");
    let prefix_arg = prefix.display().to_string();
    // Only the installed copy may serve: the test shim leaves PATH.
    let path = format!(
        "{}/bin:{}",
        prefix.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.helper.set("PATH", &path);
    let binary = binary();
    let install = ["--binary", &binary, "--prefix", &prefix_arg, "--configure"];

    let run = install_sh(&env.helper.env, &install);
    assert_eq!(run.code, Some(0), "install.sh: {run:?}");
    assert!(prefix.join("bin/docker-credential-slothbox").is_file());
    let config = json(&std::fs::read_to_string(env.docker_config.join("config.json")).unwrap());
    assert_eq!(config["credHelpers"][&registry.registry], "slothbox");
    let run = env.skopeo_inspect(registry);
    assert_eq!(
        run.code,
        Some(0),
        "skopeo through the installed helper: {run:?}"
    );

    let run = install_sh(&env.helper.env, &install);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("nothing to change"), "{run:?}");

    let run = install_sh(&env.helper.env, &["--prefix", &prefix_arg, "--uninstall"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!prefix.join("bin/docker-credential-slothbox").exists());
    assert_eq!(
        json(&std::fs::read_to_string(env.docker_config.join("config.json")).unwrap()),
        serde_json::json!({})
    );
}
