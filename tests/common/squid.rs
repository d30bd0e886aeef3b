//! A squid proxy on 127.0.0.1 for proxy-mode tests, with its access log for proof that traffic
//! went through it.
//!
//! Squid resolves names from its own hosts file (`registry.ferry.test` and `token.ferry.test`
//! map to 127.0.0.1) and has no DNS server but 127.0.0.1, so it never looks anything up
//! outside the machine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Names the squid hosts file maps to 127.0.0.1.
pub const PROXIED_NAMES: [&str; 2] = ["registry.ferry.test", "token.ferry.test"];

/// Settings of a [`Squid`].
#[derive(Clone, Debug, Default)]
pub struct SquidOptions {
    /// Ports that requests (CONNECT or plain HTTP) may go to; every other port is denied (403).
    pub allowed_ports: Vec<u16>,
    /// A user and password the proxy requires (Basic auth); `None` for an open proxy.
    pub user: Option<(String, String)>,
}

pub struct Squid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    /// Starts squid on a free port, trying another port when one is taken in between.
    pub fn start(options: SquidOptions) -> Squid {
        for _ in 0..5 {
            if let Some(squid) = Squid::spawn(&options) {
                return squid;
            }
        }
        panic!("squid did not start after 5 attempts");
    }

    fn spawn(options: &SquidOptions) -> Option<Squid> {
        let dir = tempfile::Builder::new().prefix("ferry-test-squid-").tempdir().unwrap();
        // Squid drops privileges to the `proxy` user, which must write its logs here.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let hosts: String = PROXIED_NAMES.iter().map(|name| format!("127.0.0.1 {name}\n")).collect();
        std::fs::write(path("hosts"), hosts).unwrap();

        let mut auth = String::new();
        if let Some((user, password)) = &options.user {
            let status = Command::new("htpasswd")
                .args(["-b", "-c", "-m", &path("passwd"), user, password])
                .stderr(Stdio::null())
                .status()
                .expect("failed to run htpasswd (Debian package apache2-utils)");
            assert!(status.success(), "htpasswd failed");
            std::fs::set_permissions(path("passwd"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
            auth = format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\nauth_param basic realm ferry-test\nacl authenticated proxy_auth REQUIRED\nhttp_access deny !authenticated\n",
                path("passwd")
            );
        }
        let ports: Vec<String> = options.allowed_ports.iter().map(u16::to_string).collect();
        let port = free_port();
        let config = format!(
            "http_port 127.0.0.1:{port}
pid_filename {pid}
access_log stdio:{access}
cache_log {cache}
cache deny all
coredump_dir {dir}
hosts_file {hosts}
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
acl localnet src 127.0.0.0/8
acl allowed_ports port {ports}
http_access deny !allowed_ports
{auth}http_access allow localnet
http_access deny all
",
            pid = path("squid.pid"),
            access = path("access.log"),
            cache = path("cache.log"),
            dir = dir.path().display(),
            hosts = path("hosts"),
            ports = if ports.is_empty() { "1".to_owned() } else { ports.join(" ") },
        );
        std::fs::write(path("squid.conf"), config).unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f", &path("squid.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to run squid (Debian package squid)");
        let mut squid = Squid { child, port, dir };
        squid.wait_ready().then_some(squid)
    }

    /// Waits until the port accepts connections; false when squid exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the proxy URL with credentials, percent-encoded as a URL requires.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20");
        format!("http://{}:{}@127.0.0.1:{}", encode(user), encode(password), self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Lines of the access log: `time elapsed client CODE/status bytes METHOD URL user ...`.
    pub fn access_log(&self) -> Vec<String> {
        // Squid writes a line when a transaction ends; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Counts access-log lines whose URL contains `part`, such as `registry.ferry.test:5000`.
    pub fn count(&self, part: &str) -> usize {
        self.access_log().iter().filter(|line| line.contains(part)).count()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
