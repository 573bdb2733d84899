//! What the integration tests share: the AWS fixture process and a way to run the helper as
//! docker does, in a scrubbed environment with its own HOME.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The helper under test: the one cargo built, or another build of it named by
/// `SLOTHBOX_TEST_BINARY` (scripts/build-static.sh runs the tests against the static one).
pub fn binary() -> String {
    std::env::var("SLOTHBOX_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_docker-credential-slothbox").to_string())
}
pub const NOT_FOUND: &str = "credentials not found in native keychain\n";
/// The region the fixture's IMDS reports for the box.
pub const BOX_REGION: &str = "eu-west-1";

/// Fails the test with a message naming what is missing, never skips it.
pub fn require_tool(tool: &str, install_hint: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; these tests need it ({install_hint}, or run .ci/run)"
    );
}

/// moto, the counting and fault-injecting proxy in front of it, and IMDS, all on loopback.
pub struct AwsFixture {
    /// moto itself, for the tests' own setup calls (not counted by the proxy).
    pub moto: String,
    /// What the helper is pointed at: the proxy in front of moto.
    pub aws: String,
    pub imds: String,
    child: Child,
}

impl Drop for AwsFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AwsFixture {
    /// One fixture for every test that neither injects faults nor counts calls.
    pub fn shared() -> &'static AwsFixture {
        static SHARED: OnceLock<AwsFixture> = OnceLock::new();
        SHARED.get_or_init(AwsFixture::start)
    }

    /// A fixture of the test's own, for faults and call counts.
    pub fn start() -> AwsFixture {
        AwsFixture::start_with(&[])
    }

    /// With settings for the fixture, such as `FIXTURE_ECR_TTL`.
    pub fn start_with(env: &[(&str, &str)]) -> AwsFixture {
        require_tool("python3", "apt-get install python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws_fixture.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the AWS fixture (python3 tests/fixtures/aws_fixture.py)");
        let stdout = child.stdout.take().expect("fixture stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the fixture's URLs");
        let urls: BTreeMap<String, String> = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("the AWS fixture did not start (is moto installed? pip install -r tests/requirements.txt); it said {line:?}")
        });
        AwsFixture {
            moto: urls["moto"].clone(),
            aws: urls["aws"].clone(),
            imds: urls["imds"].clone(),
            child,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        let credentials =
            aws_credential_types::Credentials::new("test", "test", None, None, "tests");
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(&self.moto)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build()
    }

    pub fn ssm(&self, region: &str) -> (tokio::runtime::Runtime, aws_sdk_ssm::Client) {
        (
            Self::runtime(),
            aws_sdk_ssm::Client::new(&self.sdk_config(region)),
        )
    }

    /// Stores a SecureString straight in moto, as the Slothbox API does in the customer's account.
    pub fn put_secret(&self, region: &str, name: &str, value: &str) {
        let (rt, ssm) = self.ssm(region);
        rt.block_on(
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send(),
        )
        .expect("put the test parameter into moto");
    }

    /// The calls the proxy forwarded, by X-Amz-Target (`AmazonSSM.GetParameter`, …), and IMDS hits.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let body = http(&format!("{}/__fixture/calls", self.imds), None);
        serde_json::from_str(&body).expect("fixture calls JSON")
    }

    pub fn fault(&self, target: &str, mode: &str, count: i64) {
        self.fault_matching(target, mode, count, None);
    }

    /// A fault only for requests whose body contains `matching` (a parameter name, an
    /// account id), so tests on the shared fixture do not disturb each other.
    pub fn fault_matching(&self, target: &str, mode: &str, count: i64, matching: Option<&str>) {
        let doc =
            serde_json::json!({"target": target, "mode": mode, "count": count, "match": matching});
        http(
            &format!("{}/__fixture/faults", self.imds),
            Some(&doc.to_string()),
        );
    }

    /// Clears faults, rate limits, call counts and the IMDS mode.
    pub fn reset(&self) {
        http(&format!("{}/__fixture/reset", self.imds), Some("{}"));
    }

    pub fn imds_mode(&self, mode: &str) {
        let doc = serde_json::json!({ "mode": mode });
        http(
            &format!("{}/__fixture/imds", self.imds),
            Some(&doc.to_string()),
        );
    }
}

/// A minimal HTTP/1.1 client for the fixture's control API; keeps test dependencies small.
fn http(url: &str, post: Option<&str>) -> String {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to fixture");
    let body = post.unwrap_or("");
    let method = if post.is_some() { "POST" } else { "GET" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send to fixture");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("read fixture answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "fixture said {head}");
    body.to_string()
}

/// One helper installation: a HOME and credentials file of its own, pointed at a fixture.
pub struct Helper {
    pub home: tempfile::TempDir,
    /// A memory-backed runtime dir of this helper's own: its cache and single-flight locks
    /// live there, so parallel tests never share a cache slot or a lock.
    pub runtime: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

/// The kernel keyring is one per user, shared by every test: tests that use it take this.
pub fn keyring_lock() -> std::sync::MutexGuard<'static, ()> {
    static KEYRING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    KEYRING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Helper {
    pub fn new(aws: &AwsFixture) -> Helper {
        let home = tempfile::tempdir().expect("temp HOME");
        let mut env = BTreeMap::new();
        let path = std::env::var("PATH").unwrap_or_default();
        let dir = |name: &str| home.path().join(name).display().to_string();
        env.insert("PATH".into(), path);
        env.insert("HOME".into(), home.path().display().to_string());
        env.insert("SLOTHBOX_CONFIG".into(), dir("credentials.json"));
        env.insert("AWS_ENDPOINT_URL".into(), aws.aws.clone());
        env.insert("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), aws.imds.clone());
        env.insert("AWS_CONFIG_FILE".into(), dir("no-aws-config"));
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            dir("no-aws-credentials"),
        );
        let shm = Path::new("/dev/shm");
        assert!(
            slothbox::cache::is_memory_backed(shm),
            "/dev/shm is not tmpfs on this machine; the tests keep each helper's cache there"
        );
        let runtime = tempfile::tempdir_in(shm).expect("runtime dir in /dev/shm");
        env.insert(
            "XDG_RUNTIME_DIR".into(),
            runtime.path().display().to_string(),
        );
        env.insert("SLOTHBOX_CACHE".into(), "runtime-dir".into());
        Helper { home, runtime, env }
    }

    /// Uses the kernel keyring, as a box does by default. Hold [`keyring_lock`] meanwhile.
    pub fn with_keyring(&mut self) -> &mut Helper {
        self.set("SLOTHBOX_CACHE", "keyring")
    }

    pub fn config_path(&self) -> PathBuf {
        PathBuf::from(&self.env["SLOTHBOX_CONFIG"])
    }

    pub fn write_config(&self, json: &str) {
        std::fs::write(self.config_path(), json).expect("write credentials file");
    }

    pub fn set(&mut self, name: &str, value: &str) -> &mut Helper {
        self.env.insert(name.into(), value.into());
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.args(args).env_clear().envs(&self.env);
        command
    }

    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        run_command(self.command(args), stdin)
    }
}

/// Runs a process as docker runs a helper: stdin written without a trailing newline and
/// closed, stdout and stderr captured.
pub fn run_command(mut command: Command, stdin: &str) -> Run {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A process that never reads stdin (list) may close it first.
        let _ = input.write_all(stdin.as_bytes());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for the process");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// A name no other test uses, for parameters in the shared fixture.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private registry (Debian's docker-registry, TLS, htpasswd) holding one small image.
pub struct RegistryFixture {
    /// `127.0.0.1:PORT`, the name clients use for it.
    pub registry: String,
    pub image: String,
    pub username: String,
    pub password: String,
    pub cert_dir: String,
    child: Child,
}

impl Drop for RegistryFixture {
    fn drop(&mut self) {
        // Closing its stdin makes it stop the registry and remove its files.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl RegistryFixture {
    pub fn shared() -> &'static RegistryFixture {
        static SHARED: OnceLock<RegistryFixture> = OnceLock::new();
        SHARED.get_or_init(RegistryFixture::start)
    }

    fn start() -> RegistryFixture {
        require_tool("docker-registry", "apt-get install docker-registry");
        require_tool("skopeo", "apt-get install skopeo");
        require_tool("htpasswd", "apt-get install apache2-utils");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry_fixture.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the registry fixture");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("fixture stdout"))
            .read_line(&mut line)
            .expect("read the registry fixture's answer");
        let doc: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the registry fixture did not start: {line:?}"));
        if let Some(error) = doc.get("error") {
            panic!("the registry fixture failed: {error}");
        }
        let field = |name: &str| doc[name].as_str().expect(name).to_string();
        RegistryFixture {
            registry: field("registry"),
            image: field("image"),
            username: field("username"),
            password: field("password"),
            cert_dir: field("cert_dir"),
            child,
        }
    }
}

/// A client's world: the helper's environment plus a DOCKER_CONFIG mapping registries to
/// `slothbox`, the helper first on PATH, and runtime/config dirs of its own so no auth file
/// of the machine's is read.
pub struct ClientEnv {
    pub helper: Helper,
    pub docker_config: PathBuf,
    /// Each action and server URL the clients asked of the helper (never a store payload).
    pub call_log: PathBuf,
}

impl ClientEnv {
    pub fn new(aws: &AwsFixture, cred_helpers: &[&str]) -> ClientEnv {
        let mut helper = Helper::new(aws);
        let root = helper.home.path().to_path_buf();
        let docker_config = root.join(".docker");
        let shim_dir = root.join("bin");
        let call_log = root.join("helper-calls.log");
        for dir in [&docker_config, &shim_dir, &root.join(".config")] {
            std::fs::create_dir_all(dir).expect("create client dirs");
        }
        let helpers: serde_json::Map<String, serde_json::Value> = cred_helpers
            .iter()
            .map(|host| (host.to_string(), serde_json::Value::from("slothbox")))
            .collect();
        std::fs::write(
            docker_config.join("config.json"),
            serde_json::to_string_pretty(&serde_json::json!({ "credHelpers": helpers })).unwrap(),
        )
        .expect("write docker config");
        // A shim that logs what was asked, then runs the real helper with the same stdin.
        let shim = shim_dir.join("docker-credential-slothbox");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\ninput=$(cat)\ncase \"$1\" in\n  get|erase) printf '%s %s\\n' \"$1\" \"$input\" >> '{log}' ;;\n  *) printf '%s\\n' \"$1\" >> '{log}' ;;\nesac\nprintf '%s' \"$input\" | exec '{real}' \"$@\"\n",
                log = call_log.display(),
                real = binary()
            ),
        )
        .expect("write shim");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", shim_dir.display(), helper.env["PATH"]);
        helper.set("PATH", &path);
        helper.set("DOCKER_CONFIG", &docker_config.display().to_string());
        helper.set(
            "XDG_CONFIG_HOME",
            &root.join(".config").display().to_string(),
        );
        // No daemon runs here; make sure docker never finds one on the machine either.
        helper.set(
            "DOCKER_HOST",
            &format!("unix://{}/no-daemon.sock", root.display()),
        );
        helper.set("AWS_REGION", BOX_REGION);
        ClientEnv {
            helper,
            docker_config,
            call_log,
        }
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs a client program (skopeo, docker) in this world.
    pub fn client(&self, program: &str, args: &[&str], stdin: &str) -> Run {
        require_tool(program, "scripts/setup-test-deps.sh installs it");
        let mut command = Command::new(program);
        command.args(args).env_clear().envs(&self.helper.env);
        run_command(command, stdin)
    }

    /// `skopeo inspect` of the test image, trusting the registry's CA.
    pub fn skopeo_inspect(&self, registry: &RegistryFixture) -> Run {
        let image = format!("docker://{}", registry.image);
        self.client(
            "skopeo",
            &["inspect", "--cert-dir", &registry.cert_dir, &image],
            "",
        )
    }
}
