use std::collections::HashMap;

use super::*;

/// An inventory file in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(inventory: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.yml"), inventory).unwrap();
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("inventory.yml")
    }

    fn resolve(&self, env: &[(&str, &str)], flags: &Overrides) -> Result<Settings, SettingsError> {
        let env = environment(env);
        resolve(Some(&self.path()), Some("node1"), &env, flags)
    }
}

fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

fn without_inventory(env: &[(&str, &str)], flags: &Overrides) -> Result<Settings, SettingsError> {
    resolve(None, None, &environment(env), flags)
}

const INVENTORY: &str = "
all:
  vars:
    REGISTRY_URL: inventory.example.com
    REGISTRY_ENV: inv
    REGISTRY_USERNAME: inventory-user
    REGISTRY_PASSWORD: inventory-password
    PROVISION_IMAGE_WARMUP: [chromium, ssh]
  hosts:
    node1:
";

#[test]
fn defaults_without_sources() {
    let settings = without_inventory(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.registry_url, None);
    assert_eq!(
        settings.registry_env,
        Setting {
            value: String::new(),
            source: Source::Default
        }
    );
    assert_eq!(settings.username, None);
    assert_eq!(settings.password, None);
    assert_eq!(
        settings.warmup,
        Setting {
            value: vec!["chromium".to_owned()],
            source: Source::Default
        }
    );
    assert_eq!(settings.inventory, None);
}

#[test]
fn inventory_values_and_sources() {
    let fixture = Fixture::new(INVENTORY);
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    let url = settings.registry_url.unwrap();
    assert_eq!(url.value.host, "inventory.example.com");
    assert_eq!(
        url.source,
        Source::Inventory {
            origin: format!("{} line 4 (group \"all\")", fixture.path().display())
        }
    );
    assert_eq!(settings.registry_env.value, "inv");
    assert_eq!(settings.username.unwrap().value, "inventory-user");
    assert_eq!(settings.password.unwrap().value.expose(), "inventory-password");
    assert_eq!(settings.warmup.value, ["chromium", "ssh"]);
}

#[test]
fn inventory_use_reports_view() {
    let fixture = Fixture::new(INVENTORY);
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    let used = settings.inventory.unwrap();
    assert_eq!(used.path, fixture.path());
    assert_eq!(used.host.as_deref(), Some("node1"));
}

#[test]
fn environment_beats_inventory() {
    let settings = Fixture::new(INVENTORY)
        .resolve(
            &[
                ("REGISTRY_URL", "env.example.com"),
                ("REGISTRY_ENV", ""),
                ("REGISTRY_USERNAME", "env-user"),
                ("REGISTRY_PASSWORD", "env-password"),
                ("PROVISION_IMAGE_WARMUP", "a, b"),
            ],
            &Overrides::default(),
        )
        .unwrap();
    assert_eq!(settings.registry_url.as_ref().unwrap().value.host, "env.example.com");
    assert_eq!(settings.registry_url.unwrap().source, Source::Environment);
    assert_eq!(
        settings.registry_env,
        Setting {
            value: String::new(),
            source: Source::Environment
        }
    );
    assert_eq!(settings.username.unwrap().value, "env-user");
    let password = settings.password.unwrap();
    assert_eq!(password.value.expose(), "env-password");
    assert_eq!(password.source, Source::Environment);
    assert_eq!(
        settings.warmup,
        Setting {
            value: vec!["a".into(), "b".into()],
            source: Source::Environment
        }
    );
}

#[test]
fn flags_beat_environment() {
    let flags = Overrides {
        registry_url: Some("flag.example.com:5000".into()),
        registry_env: Some("dev".into()),
        username: Some("flag-user".into()),
        warmup: vec!["x,y".into(), "z".into()],
        password: Some(Secret::new("stdin-password")),
        ..Overrides::default()
    };
    let env = [
        ("REGISTRY_URL", "env.example.com"),
        ("REGISTRY_ENV", "envprefix"),
        ("REGISTRY_USERNAME", "env-user"),
        ("REGISTRY_PASSWORD", "env-password"),
        ("PROVISION_IMAGE_WARMUP", "a"),
    ];
    let settings = Fixture::new(INVENTORY).resolve(&env, &flags).unwrap();
    assert_eq!(
        settings.registry_url.as_ref().unwrap().value.host,
        "flag.example.com:5000"
    );
    assert_eq!(settings.registry_url.unwrap().source, Source::Flag);
    assert_eq!(
        settings.registry_env,
        Setting {
            value: "dev".into(),
            source: Source::Flag
        }
    );
    assert_eq!(
        settings.username,
        Some(Setting {
            value: "flag-user".into(),
            source: Source::Flag
        })
    );
    assert_eq!(
        settings.password,
        Some(Setting {
            value: Secret::new("stdin-password"),
            source: Source::Stdin
        })
    );
    assert_eq!(
        settings.warmup,
        Setting {
            value: vec!["x".into(), "y".into(), "z".into()],
            source: Source::Flag
        }
    );
}

#[test]
fn empty_environment_counts_as_unset() {
    let settings = Fixture::new(INVENTORY)
        .resolve(
            &[("REGISTRY_URL", ""), ("REGISTRY_PASSWORD", "")],
            &Overrides::default(),
        )
        .unwrap();
    assert_eq!(settings.registry_url.unwrap().value.host, "inventory.example.com");
    assert_eq!(settings.password.unwrap().value.expose(), "inventory-password");
}

#[test]
fn warmup_environment_json_list() {
    let settings = without_inventory(
        &[("PROVISION_IMAGE_WARMUP", r#"["chromium", "ssh:2.1"]"#)],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.warmup.value, ["chromium", "ssh:2.1"]);
}

#[test]
fn warmup_environment_comma_list() {
    let settings = without_inventory(
        &[("PROVISION_IMAGE_WARMUP", " chromium ,ssh:2.1,")],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.warmup.value, ["chromium", "ssh:2.1"]);
}

#[test]
fn warmup_environment_invalid_json() {
    let error = without_inventory(&[("PROVISION_IMAGE_WARMUP", "[chromium")], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("PROVISION_IMAGE_WARMUP from the environment"), "{error}");
    assert!(error.contains("not a JSON list"), "{error}");
}

#[test]
fn warmup_entries_must_be_strings() {
    let error = without_inventory(&[("PROVISION_IMAGE_WARMUP", r#"["a", 3]"#)], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("entry 2 must be a string"), "{error}");
}

#[test]
fn warmup_empty_is_rejected() {
    for value in ["[]", " , ", r#"[""]"#] {
        let error = without_inventory(&[("PROVISION_IMAGE_WARMUP", value)], &Overrides::default()).unwrap_err();
        assert!(matches!(error, SettingsError::EmptyWarmup { .. }), "{value}: {error}");
        assert!(
            error
                .to_string()
                .starts_with("PROVISION_IMAGE_WARMUP from the environment is empty"),
            "{error}"
        );
    }
}

#[test]
fn warmup_empty_inventory_list_is_rejected() {
    let fixture = Fixture::new("all:\n  vars:\n    PROVISION_IMAGE_WARMUP: []\n  hosts: {node1: }\n");
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err();
    assert!(matches!(error, SettingsError::EmptyWarmup { .. }), "{error}");
    assert!(error.to_string().contains("inventory.yml line 3"), "{error}");
}

#[test]
fn warmup_inventory_single_string() {
    let fixture = Fixture::new("all:\n  vars:\n    PROVISION_IMAGE_WARMUP: chromium, ssh\n  hosts: {node1: }\n");
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.warmup.value, ["chromium", "ssh"]);
}

#[test]
fn warmup_inventory_mapping_is_rejected() {
    let fixture = Fixture::new("all:\n  vars:\n    PROVISION_IMAGE_WARMUP: {a: 1}\n  hosts: {node1: }\n");
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(error.contains("PROVISION_IMAGE_WARMUP from"), "{error}");
    assert!(
        error.contains("must be a list of image names, found a mapping"),
        "{error}"
    );
}

#[test]
fn host_view_overrides_all() {
    let fixture = Fixture::new(
        "all:\n  vars:\n    REGISTRY_ENV: all\n  children:\n    nodes:\n      vars:\n        REGISTRY_ENV: nodes\n      hosts:\n        node1:\n          REGISTRY_ENV: host\n",
    );
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.registry_env.value, "host");
}

#[test]
fn non_string_scalars_print_like_ansible() {
    let fixture = Fixture::new("all:\n  vars:\n    REGISTRY_ENV: 12\n    REGISTRY_USERNAME: yes\n  hosts: {node1: }\n");
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.registry_env.value, "12");
    assert_eq!(settings.username.unwrap().value, "True");
}

#[test]
fn null_inventory_value_counts_as_unset() {
    let fixture = Fixture::new("all:\n  vars:\n    REGISTRY_URL:\n    PROVISION_IMAGE_WARMUP:\n  hosts: {node1: }\n");
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.registry_url, None);
    assert_eq!(settings.warmup.source, Source::Default);
}

#[test]
fn mapping_as_string_is_rejected() {
    let fixture = Fixture::new("all:\n  vars:\n    REGISTRY_ENV: {a: b}\n  hosts: {node1: }\n");
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(error.starts_with("REGISTRY_ENV from "), "{error}");
    assert!(error.contains("must be a string, found a mapping"), "{error}");
}

#[test]
fn vault_password_names_variable_and_fix() {
    let fixture = Fixture::new(
        "all:\n  vars:\n    REGISTRY_PASSWORD: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      3961\n  hosts: {node1: }\n",
    );
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(error.starts_with("REGISTRY_PASSWORD in "), "{error}");
    assert!(error.contains("inventory.yml line 4 (group \"all\")"), "{error}");
    assert!(error.contains("encrypted with Ansible Vault"), "{error}");
    assert!(
        error.contains("set REGISTRY_PASSWORD in the environment or pipe it to --password-stdin"),
        "{error}"
    );
    assert!(!error.contains("3961"), "{error}");
}

#[test]
fn template_url_names_variable_and_flag() {
    let fixture = Fixture::new("all:\n  vars:\n    REGISTRY_URL: \"{{ registry_host }}:5000\"\n  hosts: {node1: }\n");
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(error.starts_with("REGISTRY_URL in "), "{error}");
    assert!(error.contains("a Jinja template"), "{error}");
    assert!(error.contains("\"{{ registry_host }}:5000\""), "{error}");
    assert!(
        error.contains("set REGISTRY_URL in the environment or pass --registry-url"),
        "{error}"
    );
}

#[test]
fn template_in_warmup_entry_is_rejected() {
    let fixture =
        Fixture::new("all:\n  vars:\n    PROVISION_IMAGE_WARMUP: [chromium, \"{{ extra }}\"]\n  hosts: {node1: }\n");
    let error = fixture.resolve(&[], &Overrides::default()).unwrap_err().to_string();
    assert!(error.starts_with("PROVISION_IMAGE_WARMUP in "), "{error}");
    assert!(error.contains("--warmup"), "{error}");
}

#[test]
fn unsafe_value_is_plain_text() {
    let fixture = Fixture::new("all:\n  vars:\n    REGISTRY_PASSWORD: !unsafe \"p{{w}}\"\n  hosts: {node1: }\n");
    let settings = fixture.resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.password.unwrap().value.expose(), "p{{w}}");
}

#[test]
fn unread_vault_values_are_ignored() {
    let fixture = Fixture::new(
        "all:\n  vars:\n    other_secret: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      3961\n    templated: \"{{ x }}\"\n  hosts: {node1: }\n",
    );
    assert!(fixture.resolve(&[], &Overrides::default()).is_ok());
}

#[test]
fn overridden_vault_value_is_ignored() {
    let fixture = Fixture::new(
        "all:\n  vars:\n    REGISTRY_PASSWORD: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      3961\n  hosts: {node1: }\n",
    );
    let settings = fixture
        .resolve(&[("REGISTRY_PASSWORD", "from-env")], &Overrides::default())
        .unwrap();
    assert_eq!(settings.password.unwrap().value.expose(), "from-env");
}

#[test]
fn password_never_in_errors() {
    let secret = "hunter2-secret-value";
    for text in [
        format!("all:\n  vars:\n    REGISTRY_PASSWORD: [{secret}]\n  hosts: {{node1: }}\n"),
        format!("all:\n  vars:\n    REGISTRY_PASSWORD: {{{secret}: 1}}\n  hosts: {{node1: }}\n"),
        format!(
            "all:\n  vars:\n    REGISTRY_PASSWORD: \"{{{{ lookup('env', 'X') }}}}{secret}\"\n  hosts: {{node1: }}\n"
        ),
    ] {
        let error = Fixture::new(&text).resolve(&[], &Overrides::default()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("REGISTRY_PASSWORD"), "{message}");
        assert!(!message.contains(secret), "{message}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }
}

#[test]
fn secret_is_redacted() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    let settings = without_inventory(&[("REGISTRY_PASSWORD", "hunter2")], &Overrides::default()).unwrap();
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[test]
fn invalid_registry_url_names_source() {
    let error = without_inventory(&[("REGISTRY_URL", "ftp://r.example")], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid REGISTRY_URL \"ftp://r.example\""), "{error}");
    assert!(error.contains("(REGISTRY_URL from the environment)"), "{error}");
}

#[test]
fn host_without_inventory_is_rejected() {
    let error = resolve(None, Some("node1"), &environment(&[]), &Overrides::default()).unwrap_err();
    assert!(matches!(error, SettingsError::HostWithoutInventory { .. }), "{error}");
}

#[test]
fn unknown_host_is_inventory_error() {
    let fixture = Fixture::new(INVENTORY);
    let error = resolve(
        Some(&fixture.path()),
        Some("other"),
        &environment(&[]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, SettingsError::Inventory(InventoryError::UnknownHost { .. })),
        "{error}"
    );
}

#[test]
fn images_expand_with_registry_and_prefix() {
    let flags = Overrides {
        registry_url: Some("registry.example.com/team".into()),
        registry_env: Some("dev".into()),
        warmup: vec!["chromium, ssh:2.1, other.example.com/x/y:3, chromium".into()],
        ..Overrides::default()
    };
    let settings = without_inventory(&[], &flags).unwrap();
    let names: Vec<String> = images(&settings).unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "registry.example.com/team/devchromium:latest",
            "registry.example.com/team/devssh:2.1",
            "other.example.com/x/y:3"
        ]
    );
}

#[test]
fn images_error_names_entry() {
    let flags = Overrides {
        warmup: vec!["chromium".into()],
        ..Overrides::default()
    };
    let settings = without_inventory(&[], &flags).unwrap();
    let error = images(&settings).unwrap_err().to_string();
    assert!(error.contains("\"chromium\""), "{error}");
}

const PROXY_INVENTORY: &str = "
all:
  vars:
    HTTPS_PROXY: http://inventory-proxy.lan:3128
    HTTP_PROXY: http://inventory-proxy.lan:3128
    NO_PROXY: [.internal, 10.0.0.0/8]
  hosts:
    node1:
";

#[test]
fn proxy_from_inventory() {
    let settings = Fixture::new(PROXY_INVENTORY).resolve(&[], &Overrides::default()).unwrap();
    assert_eq!(settings.proxy.https.as_ref().unwrap().address(), "inventory-proxy.lan:3128");
    assert!(settings.proxy.no_proxy.matches("mirror.internal", Some(443)));
    assert!(settings.proxy.no_proxy.matches("10.1.2.3", Some(443)));
}

#[test]
fn proxy_environment_beats_inventory() {
    let env = [("https_proxy", "http://lower.lan:3128"), ("NO_PROXY", "registry.lan")];
    let settings = Fixture::new(PROXY_INVENTORY).resolve(&env, &Overrides::default()).unwrap();
    assert_eq!(settings.proxy.https.as_ref().unwrap().address(), "lower.lan:3128");
    assert!(settings.proxy.no_proxy.matches("registry.lan", None));
    assert!(!settings.proxy.no_proxy.matches("mirror.internal", None));

    // Upper case wins over lower case, and the flag over both.
    let env = [("https_proxy", "http://lower.lan:3128"), ("HTTPS_PROXY", "http://upper.lan:3128")];
    let settings = Fixture::new(PROXY_INVENTORY).resolve(&env, &Overrides::default()).unwrap();
    assert_eq!(settings.proxy.https.as_ref().unwrap().address(), "upper.lan:3128");
    let flags = Overrides { https_proxy: Some("http://flag.lan:8080".into()), ..Overrides::default() };
    let settings = Fixture::new(PROXY_INVENTORY).resolve(&env, &flags).unwrap();
    assert_eq!(settings.proxy.https.as_ref().unwrap().address(), "flag.lan:8080");
}

#[test]
fn invalid_proxy_names_source() {
    let env = [("HTTPS_PROXY", "ftp://user:secret@proxy.lan")];
    let error = without_inventory(&env, &Overrides::default()).unwrap_err().to_string();
    assert!(error.contains("HTTPS_PROXY from the environment"), "{error}");
    assert!(!error.contains("secret"), "{error}");
}
