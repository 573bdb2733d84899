//! A second, independent client library resolves the credential through the binary: the
//! `docker_credential` crate, which reads `$DOCKER_CONFIG/config.json` and runs
//! `docker-credential-<helper>` from PATH with this process's environment. It is its own
//! test binary because it needs that environment set for the whole process.

#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;

use support::{AwsFixture, ClientEnv, RegistryFixture, BOX_REGION};

#[test]
fn the_docker_credential_crate_reads_our_answer() {
    let aws = AwsFixture::shared();
    let registry = RegistryFixture::shared();
    let env = ClientEnv::new(aws, &[&registry.registry]);
    let parameter = "/slothbox/registry-credentials/rc_crate";
    aws.put_secret(BOX_REGION, parameter, &registry.password);
    env.helper.write_config(&format!(
        r#"{{"credentials":[{{"id":"rc_crate","type":"token","registry":"{}","username":"{}","parameter":"{parameter}"}}]}}"#,
        registry.registry, registry.username
    ));
    for (name, value) in &env.helper.env {
        std::env::set_var(name, value);
    }
    match docker_credential::get_credential(&registry.registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
            assert_eq!(username, registry.username);
            assert_eq!(password, registry.password);
        }
        Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
            panic!("expected a username and password, got an identity token")
        }
        Err(e) => panic!("docker_credential could not resolve the credential: {e:?}"),
    }
    // A registry the config does not map to any helper is the crate's own "none configured".
    assert!(docker_credential::get_credential("quay.io").is_err());
    assert_eq!(env.calls(), vec![format!("get {}", registry.registry)]);
}
