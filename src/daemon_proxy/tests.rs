use super::*;

fn config(https: &str, no_proxy: &str) -> ProxyConfig {
    ProxyConfig { http: None, https: Some(ProxyUrl::parse(https).unwrap()), no_proxy: NoProxy::parse(no_proxy).unwrap() }
}

fn engine_info(http: Option<&str>, https: Option<&str>, no_proxy: Option<&str>) -> EngineInfo {
    EngineInfo {
        server_version: "27.0.0".into(),
        api_version: "1.46".into(),
        root_dir: None,
        driver: "overlay2".into(),
        local: true,
        loads_zstd: true,
        http_proxy: http.map(str::to_owned),
        https_proxy: https.map(str::to_owned),
        no_proxy: no_proxy.map(str::to_owned),
    }
}

#[test]
fn no_proxy_adds_loopback_and_node_names() {
    let names = vec!["node01".to_owned(), "node01.lan".to_owned()];
    let (proxy, dropped) = daemon_proxy(&config("http://proxy:3128", ".internal, LOCALHOST"), &names, &[]).unwrap();
    assert_eq!(proxy.no_proxy, [".internal", "LOCALHOST", "127.0.0.1", "::1", "node01", "node01.lan"]);
    assert!(dropped.is_empty());
}

#[test]
fn entries_matching_registry_dropped() {
    let registry = ProxiedHost::parse("registry.example.com", 443);
    let token = ProxiedHost::parse("auth.example.com:8443", 443);
    let (proxy, dropped) = daemon_proxy(&config("http://proxy:3128", "*.example.com,10.0.0.0/8,auth.example.com:8443"), &[], &[registry, token]).unwrap();
    assert_eq!(proxy.no_proxy, ["10.0.0.0/8", "localhost", "127.0.0.1", "::1"]);
    assert_eq!(dropped[0], DroppedEntry { entry: "*.example.com".into(), host: "registry.example.com:443".into() });
    assert_eq!(dropped[1], DroppedEntry { entry: "auth.example.com:8443".into(), host: "auth.example.com:8443".into() });
}

#[test]
fn loopback_registry_drops_nothing() {
    let registry = ProxiedHost::parse("127.0.0.1:5000", 443);
    let (proxy, dropped) = daemon_proxy(&config("http://proxy:3128", "10.1.2.3"), &[], &[registry]).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(proxy.no_proxy[0], "10.1.2.3");
}

#[test]
fn missing_proxy_rejected() {
    let error = daemon_proxy(&ProxyConfig::default(), &[], &[]).unwrap_err();
    assert!(error.to_string().contains("set HTTPS_PROXY or HTTP_PROXY"), "{error}");
}

#[test]
fn proxied_host_forms_parse() {
    assert_eq!(ProxiedHost::parse("registry.lan", 443), ProxiedHost { host: "registry.lan".into(), port: Some(443) });
    assert_eq!(ProxiedHost::parse("registry.lan:5000", 443).port, Some(5000));
    assert_eq!(ProxiedHost::parse("[fd00::1]:5000", 443), ProxiedHost { host: "fd00::1".into(), port: Some(5000) });
    assert_eq!(ProxiedHost::parse("fd00::1", 443), ProxiedHost { host: "fd00::1".into(), port: Some(443) });
    assert_eq!(ProxiedHost::parse("[fd00::1]:5000", 443).to_string(), "[fd00::1]:5000");
}

#[test]
fn fqdn_read_from_hosts_line() {
    let hosts = "127.0.0.1 localhost\n# 10.0.0.9 node07.old.lan node07\n10.0.0.7 node07.site.lan node07 # this node\n";
    assert_eq!(fqdn_from_hosts(hosts, "node07"), Some("node07.site.lan".to_owned()));
    assert_eq!(fqdn_from_hosts(hosts, "node08"), None);
}

#[test]
fn node_names_from_root() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::write(root.path().join("etc/hostname"), "node07\n").unwrap();
    fs::write(root.path().join("etc/hosts"), "10.0.0.7 node07.site.lan node07\n").unwrap();
    assert_eq!(node_names(Some(root.path())), ["node07", "node07.site.lan"]);
    fs::write(root.path().join("etc/hostname"), "node08.site.lan\n").unwrap();
    assert_eq!(node_names(Some(root.path())), ["node08.site.lan", "node08"]);
}

#[test]
fn env_file_replaces_only_proxy_lines() {
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://proxy:3128").unwrap()), no_proxy: vec!["localhost".into()] };
    let old = "DOCKER_OPTS=\"--dns 8.8.8.8\"\n#export http_proxy=\"http://127.0.0.1:3128/\"\nexport HTTP_PROXY=http://old:1\nTZ=UTC\nhttps_proxy=http://old:2\n";
    let new = files::env_file(Some(old), &proxy);
    let expected = format!(
        "DOCKER_OPTS=\"--dns 8.8.8.8\"\n#export http_proxy=\"http://127.0.0.1:3128/\"\n{}\nHTTPS_PROXY=\"http://proxy:3128\"\nhttps_proxy=\"http://proxy:3128\"\nNO_PROXY=\"localhost\"\nno_proxy=\"localhost\"\nTZ=UTC\n",
        files::FERRY_COMMENT
    );
    assert_eq!(new, expected);
    assert_eq!(files::env_file(Some(&new), &proxy), new, "a second pass changes nothing");
}

#[test]
fn env_file_value_escaped_for_shell() {
    let proxy = DaemonProxy { http: Some(ProxyUrl::parse("http://u:pa$s@proxy:3128").unwrap()), https: None, no_proxy: vec![] };
    let text = files::env_file(None, &proxy);
    assert!(text.contains("HTTP_PROXY=\"http://u:pa\\$s@proxy:3128\"\n"), "{text}");
}

#[test]
fn unit_gets_environment_file_once() {
    let unit = "[Unit]\nDescription=Docker\n\n[Service]\nType=notify\nExecStart=/usr/bin/dockerd -H fd://\n\n[Install]\nWantedBy=multi-user.target\n";
    let new = files::unit_with_env_file(unit).unwrap();
    assert!(new.contains("[Service]\nEnvironmentFile=/etc/default/docker\nType=notify\n"), "{new}");
    assert_eq!(files::unit_with_env_file(&new).unwrap(), new);
    let debian = "[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/sbin/dockerd $DOCKER_OPTS\n";
    assert_eq!(files::unit_with_env_file(debian).unwrap(), debian);
    assert!(files::unit_with_env_file("[Unit]\nDescription=x\n").is_none());
}

#[test]
fn unit_in_other_section_not_counted() {
    let unit = "[Unit]\nEnvironmentFile=/etc/default/docker\n[Service]\nExecStart=/usr/bin/dockerd";
    let new = files::unit_with_env_file(unit).unwrap();
    assert_eq!(new, "[Unit]\nEnvironmentFile=/etc/default/docker\n[Service]\nEnvironmentFile=/etc/default/docker\nExecStart=/usr/bin/dockerd");
}

#[test]
fn drop_in_quotes_and_doubles_percent() {
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://user:p%40ss@proxy:3128").unwrap()), no_proxy: vec!["a\"b".into()] };
    let text = files::drop_in(&proxy);
    assert!(text.contains("Environment=\"HTTPS_PROXY=http://user:p%%40ss@proxy:3128\"\n"), "{text}");
    assert!(text.contains("Environment=\"no_proxy=a\\\"b\"\n"), "{text}");
    assert!(files::drop_in_sets_proxy(&text));
}

#[test]
fn daemon_json_keeps_other_keys_in_order() {
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://proxy:3128").unwrap()), no_proxy: vec!["localhost".into(), "::1".into()] };
    let old = "{\n    \"storage-driver\": \"overlay2\",\n    \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"},\n    \"debug\": true\n}\n";
    let new = files::daemon_json(Some(old), &proxy).unwrap();
    let expected = "{\n  \"storage-driver\": \"overlay2\",\n  \"log-opts\": {\n    \"max-size\": \"10m\",\n    \"max-file\": \"3\"\n  },\n  \"debug\": true,\n  \"proxies\": {\n    \"https-proxy\": \"http://proxy:3128\",\n    \"no-proxy\": \"localhost,::1\"\n  }\n}\n";
    assert_eq!(new, expected);
    assert_eq!(files::daemon_json(Some(&new), &proxy).unwrap(), new);
    assert!(matches!(files::daemon_json(Some("[1]"), &proxy), Err(files::JsonProblem::NotAnObject)));
    assert!(matches!(files::daemon_json(Some("{"), &proxy), Err(files::JsonProblem::Invalid(_))));
}

#[test]
fn passwords_masked_in_text() {
    let text = "HTTP_PROXY=\"http://user:s3cr%40t@proxy:3128\"\nEnvironment=\"X=https://u:p%%40@h\"\n\"http-proxy\": \"http://a:b@c\"";
    let masked = mask_passwords(text);
    assert!(!masked.contains("s3cr"), "{masked}");
    assert!(!masked.contains(":b@"), "{masked}");
    assert!(masked.contains("http://user:xxxxx@proxy:3128"), "{masked}");
    assert!(masked.contains("https://u:xxxxx@h"), "{masked}");
}

#[test]
fn timestamp_is_utc_calendar_time() {
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
    assert_eq!(timestamp(at), "20240229T123456Z");
    assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
}

#[test]
fn plan_without_change_needs_no_restart() {
    let root = tempfile::tempdir().unwrap();
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://proxy:3128").unwrap()), no_proxy: vec!["localhost".into()] };
    let mut first = plan(root.path(), Method::DropIn, &proxy).unwrap();
    assert!(first.needs_restart());
    apply(&mut first, SystemTime::now()).unwrap();
    let second = plan(root.path(), Method::DropIn, &proxy).unwrap();
    assert!(!second.needs_restart());
    assert_eq!(second.files[0].diff(), "");
}

#[test]
fn mode_tightened_for_credentials() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("etc/docker/daemon.json");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "{}").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://u:secret@proxy:3128").unwrap()), no_proxy: vec![] };
    let mut plan = plan(root.path(), Method::DaemonJson, &proxy).unwrap();
    apply(&mut plan, SystemTime::now()).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let backup = plan.files[0].backup.clone().unwrap();
    assert_eq!(fs::read_to_string(&backup).unwrap(), "{}");
    assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn symbolic_link_rejected() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("etc/docker");
    fs::create_dir_all(&folder).unwrap();
    fs::write(root.path().join("real.json"), "{}").unwrap();
    std::os::unix::fs::symlink(root.path().join("real.json"), folder.join("daemon.json")).unwrap();
    let proxy = DaemonProxy { http: None, https: Some(ProxyUrl::parse("http://proxy:3128").unwrap()), no_proxy: vec![] };
    let error = plan(root.path(), Method::DaemonJson, &proxy).unwrap_err();
    assert!(matches!(error, DaemonProxyError::SymbolicLink { .. }), "{error}");
}

#[test]
fn daemon_compared_without_credentials() {
    let proxy = DaemonProxy {
        http: None,
        https: Some(ProxyUrl::parse("http://user:secret@proxy.lan:3128").unwrap()),
        no_proxy: vec!["localhost".into(), "127.0.0.1".into()],
    };
    let info = engine_info(None, Some("http://xxxxx:xxxxx@proxy.lan:3128"), Some("127.0.0.1,localhost"));
    assert!(daemon_differences(&proxy, &info).is_empty());
    let differences = daemon_differences(&proxy, &engine_info(None, None, None));
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences[0].starts_with("HTTPS_PROXY is not set, expected http://user:xxxxx@proxy.lan:3128"), "{differences:?}");
}

#[tokio::test]
async fn restart_runs_reload_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let script = dir.path().join("systemctl");
    fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    restart_docker(script.as_os_str()).await.unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "daemon-reload\nrestart docker\n");

    let failing = dir.path().join("failing");
    fs::write(&failing, "#!/bin/sh\necho 'unit docker.service not found' >&2\nexit 5\n").unwrap();
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755)).unwrap();
    let error = restart_docker(failing.as_os_str()).await.unwrap_err().to_string();
    assert!(error.contains("daemon-reload failed"), "{error}");
    assert!(error.contains("unit docker.service not found"), "{error}");
}
