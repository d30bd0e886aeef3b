use std::path::Path;

use serde_json::json;

use super::*;

/// A temporary folder with an inventory file and optional vars files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(inventory: &str) -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        fixture.write("inventory.yml", inventory);
        fixture
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("inventory.yml")
    }

    fn load(&self) -> Inventory {
        Inventory::load(&self.path()).unwrap()
    }

    fn error(&self) -> InventoryError {
        Inventory::load(&self.path()).unwrap_err()
    }
}

fn value(view: &View, name: &str) -> serde_json::Value {
    view.vars
        .get(name)
        .map(|value| value.value.clone())
        .unwrap_or_else(|| panic!("{name} is not set in {view:?}"))
}

const LAYERED: &str = "
all:
  vars:
    level: all
    from_all: yes
  children:
    site:
      vars:
        level: site
      children:
        web:
          vars:
            level: web
          hosts:
            web1:
              level: host
            web2:
";

#[test]
fn precedence_all_parent_child_host() {
    let inventory = Fixture::new(LAYERED).load();
    let web1 = inventory.vars_for(Some("web1")).unwrap();
    let web2 = inventory.vars_for(Some("web2")).unwrap();
    assert_eq!(value(&web1, "level"), json!("host"));
    assert_eq!(value(&web2, "level"), json!("web"));
    assert_eq!(value(&web2, "from_all"), json!(true));
}

#[test]
fn view_names_host() {
    let inventory = Fixture::new(LAYERED).load();
    assert_eq!(inventory.vars_for(Some("web2")).unwrap().host.as_deref(), Some("web2"));
}

#[test]
fn origin_names_file_scope_and_line() {
    let fixture = Fixture::new(LAYERED);
    let view = fixture.load().vars_for(Some("web2")).unwrap();
    let origin = &view.vars["level"].origin;
    assert_eq!(origin.scope, Scope::Group("web".into()));
    assert_eq!(origin.line, Some(13));
    assert_eq!(
        origin.to_string(),
        format!("{} line 13 (group \"web\")", fixture.path().display())
    );
}

#[test]
fn same_depth_groups_merge_alphabetically() {
    let inventory = Fixture::new(
        "
all:
  children:
    zeta:
      vars: {color: zeta}
      hosts: {h1: }
    alpha:
      vars: {color: alpha}
      hosts: {h1: }
",
    )
    .load();
    assert_eq!(value(&inventory.vars_for(Some("h1")).unwrap(), "color"), json!("zeta"));
}

#[test]
fn group_priority_overrides_name_order() {
    let inventory = Fixture::new(
        "
all:
  children:
    zeta:
      vars: {color: zeta}
      hosts: {h1: }
    alpha:
      vars: {color: alpha, ansible_group_priority: 10}
      hosts: {h1: }
",
    )
    .load();
    assert_eq!(value(&inventory.vars_for(Some("h1")).unwrap(), "color"), json!("alpha"));
}

#[test]
fn deeper_group_wins_over_shallower() {
    // `db` sits at depth 2 through `site`, so it wins over `zz` at depth 1 despite its name.
    let inventory = Fixture::new(
        "
zz:
  vars: {color: zz}
  hosts: {h1: }
site:
  children:
    db:
      vars: {color: db}
      hosts: {h1: }
",
    )
    .load();
    assert_eq!(value(&inventory.vars_for(Some("h1")).unwrap(), "color"), json!("db"));
}

#[test]
fn maps_replace_not_merge() {
    let inventory = Fixture::new(
        "
all:
  vars:
    proxy: {http: a, https: b}
  hosts:
    h1:
      proxy: {http: c}
",
    )
    .load();
    assert_eq!(
        value(&inventory.vars_for(Some("h1")).unwrap(), "proxy"),
        json!({"http": "c"})
    );
}

#[test]
fn group_vars_dir_beats_inline_group_vars() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/web.yml", "level: web-dir\nonly_dir: 1\n");
    let view = fixture.load().vars_for(Some("web2")).unwrap();
    assert_eq!(value(&view, "level"), json!("web-dir"));
    assert_eq!(
        view.vars["level"].origin.file,
        fixture.dir.path().join("group_vars/web.yml")
    );
}

#[test]
fn group_vars_all_beats_inline_child_group() {
    // Ansible's order puts every group_vars file above every inline group variable.
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/all.yaml", "level: all-dir\n");
    let inventory = fixture.load();
    assert_eq!(
        value(&inventory.vars_for(Some("web2")).unwrap(), "level"),
        json!("all-dir")
    );
    assert_eq!(
        value(&inventory.vars_for(Some("web1")).unwrap(), "level"),
        json!("host")
    );
}

#[test]
fn host_vars_dir_beats_inline_host_vars() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("host_vars/web1.json", "{\"level\": \"host-dir\"}");
    let view = fixture.load().vars_for(Some("web1")).unwrap();
    assert_eq!(value(&view, "level"), json!("host-dir"));
}

#[test]
fn vars_folder_files_load_in_name_order() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/web/10-base.yml", "level: base\nkeep: yes\n");
    fixture.write("group_vars/web/20-override.yml", "level: override\n");
    fixture.write("group_vars/web/notes.txt", "level: ignored\n");
    fixture.write("group_vars/web/.hidden.yml", "level: hidden\n");
    let view = fixture.load().vars_for(Some("web2")).unwrap();
    assert_eq!(value(&view, "level"), json!("override"));
    assert_eq!(value(&view, "keep"), json!(true));
}

#[test]
fn vars_folder_shadows_vars_file() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/web/main.yml", "level: folder\n");
    fixture.write("group_vars/web.yml", "level: file\n");
    let view = fixture.load().vars_for(Some("web2")).unwrap();
    assert_eq!(value(&view, "level"), json!("folder"));
}

#[test]
fn encrypted_vars_file_is_skipped_and_listed() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n3961\n");
    fixture.write("group_vars/all/plain.yml", "plain: 1\n");
    let view = fixture.load().vars_for(Some("web2")).unwrap();
    assert_eq!(
        view.encrypted_files,
        [fixture.dir.path().join("group_vars/all/vault.yml")]
    );
    assert_eq!(value(&view, "plain"), json!(1));
}

#[test]
fn malformed_vars_file_names_file() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/web.yml", "- a\n- b\n");
    let error = fixture.load().vars_for(Some("web2")).unwrap_err().to_string();
    assert!(error.contains("group_vars/web.yml"), "{error}");
    assert!(error.contains("found a list"), "{error}");
}

#[test]
fn vars_files_of_other_hosts_are_not_read() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("host_vars/web1.yml", "{broken");
    assert!(fixture.load().vars_for(Some("web2")).is_ok());
}

#[test]
fn host_in_several_groups() {
    let inventory = Fixture::new(
        "
all:
  children:
    web:
      vars: {in_web: 1}
      hosts:
        shared: {a: 1}
    db:
      vars: {in_db: 1}
      hosts:
        shared: {b: 2}
",
    )
    .load();
    let view = inventory.vars_for(Some("shared")).unwrap();
    assert_eq!(inventory.hosts(), ["shared"]);
    assert_eq!(value(&view, "in_web"), json!(1));
    assert_eq!(value(&view, "in_db"), json!(1));
    assert_eq!(value(&view, "a"), json!(1));
    assert_eq!(value(&view, "b"), json!(2));
}

#[test]
fn host_ranges_expand_with_vars() {
    let inventory = Fixture::new(
        "
all:
  children:
    nodes:
      hosts:
        node[01:03]:
          rack: r1
        db-[a:b]:
",
    )
    .load();
    assert_eq!(inventory.hosts(), ["node01", "node02", "node03", "db-a", "db-b"]);
    assert_eq!(value(&inventory.vars_for(Some("node03")).unwrap(), "rack"), json!("r1"));
}

#[test]
fn host_port_sets_ansible_port() {
    let inventory = Fixture::new("all:\n  hosts:\n    jump.example.com:2222:\n").load();
    assert_eq!(
        value(&inventory.vars_for(Some("jump.example.com")).unwrap(), "ansible_port"),
        json!(2222)
    );
}

#[test]
fn empty_entries_are_accepted() {
    let inventory = Fixture::new(
        "
all:
  vars:
  hosts:
  children:
    empty_group:
    web:
      hosts:
        node1:
",
    )
    .load();
    assert_eq!(inventory.hosts(), ["node1"]);
}

#[test]
fn single_host_name_as_section() {
    let inventory = Fixture::new("web:\n  hosts: node1\n").load();
    assert_eq!(inventory.hosts(), ["node1"]);
}

#[test]
fn top_level_groups_join_all() {
    let inventory = Fixture::new(
        "
all:
  vars: {base: 1, level: all}
web:
  vars: {level: web}
  hosts: {w1: }
",
    )
    .load();
    let view = inventory.vars_for(Some("w1")).unwrap();
    assert_eq!(value(&view, "base"), json!(1));
    assert_eq!(value(&view, "level"), json!("web"));
}

#[test]
fn unknown_host_lists_known_hosts() {
    let inventory = Fixture::new("all:\n  hosts:\n    node[1:9]:\n").load();
    let error = inventory.vars_for(Some("nope")).unwrap_err().to_string();
    assert!(error.contains("\"nope\""), "{error}");
    assert!(
        error.contains("node1, node2, node3, node4, node5 and 4 more"),
        "{error}"
    );
}

#[test]
fn machine_host_matching() {
    let inventory = Fixture::new("all:\n  hosts:\n    node1.lan:\n    edge:\n    Build-Box:\n").load();
    assert_eq!(inventory.machine_host(Some("node1.lan")).as_deref(), Some("node1.lan"));
    assert_eq!(inventory.machine_host(Some("node1")).as_deref(), Some("node1.lan"));
    assert_eq!(
        inventory.machine_host(Some("edge.example.com")).as_deref(),
        Some("edge")
    );
    assert_eq!(inventory.machine_host(Some("build-box")).as_deref(), Some("Build-Box"));
    assert_eq!(inventory.machine_host(Some("other")), None);
    assert_eq!(inventory.machine_host(None), None);
}

#[test]
fn machine_short_name_must_be_unique() {
    let inventory = Fixture::new("all:\n  hosts:\n    node1.a.lan:\n    node1.b.lan:\n").load();
    assert_eq!(inventory.machine_host(Some("node1")), None);
}

#[test]
fn view_without_host_uses_all_only() {
    let fixture = Fixture::new(LAYERED);
    fixture.write("group_vars/all.yml", "from_dir: 1\n");
    let inventory = fixture.load();
    let view = inventory.vars_for(None).unwrap();
    // The test machine's name is not a host of this inventory.
    assert_eq!(view.host, None);
    assert_eq!(value(&view, "level"), json!("all"));
    assert_eq!(value(&view, "from_dir"), json!(1));
}

#[test]
fn vault_and_template_values_are_marked() {
    let inventory = Fixture::new(
        "
all:
  vars:
    tagged: !vault |
      $ANSIBLE_VAULT;1.1;AES256
      3961
    untagged: \"$ANSIBLE_VAULT;1.1;AES256\\n3961\"
    template: \"{{ other }}:5000\"
    block: \"{% if x %}y{% endif %}\"
    nested: [a, \"{{ b }}\"]
    unsafe: !unsafe \"{{ literal }}\"
    plain: registry.example.com
",
    )
    .load();
    let vars = inventory.vars_for(None).unwrap().vars;
    assert_eq!(vars["tagged"].unevaluable, Some(Unevaluable::Vault));
    assert_eq!(vars["tagged"].value, json!("$ANSIBLE_VAULT;1.1;AES256\n3961\n"));
    assert_eq!(vars["untagged"].unevaluable, Some(Unevaluable::Vault));
    assert_eq!(vars["template"].unevaluable, Some(Unevaluable::Template));
    assert_eq!(vars["block"].unevaluable, Some(Unevaluable::Template));
    assert_eq!(vars["nested"].unevaluable, Some(Unevaluable::Template));
    assert_eq!(vars["unsafe"].unevaluable, None);
    assert_eq!(vars["unsafe"].value, json!("{{ literal }}"));
    assert_eq!(vars["plain"].unevaluable, None);
}

#[test]
fn bad_yaml_names_file_and_line() {
    let fixture = Fixture::new("all:\n  vars:\n    a: [1, 2\n  hosts:\n");
    let error = fixture.error();
    let InventoryError::Syntax { line, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(line.is_some(), "{error}");
    assert!(error.to_string().contains("inventory.yml line"), "{error}");
}

#[test]
fn bad_indentation_names_line() {
    let error = Fixture::new("all:\n  hosts:\n    h1:\n  a: 1\n    b: 2\n").error();
    let InventoryError::Syntax { line, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*line, Some(5));
}

#[test]
fn structure_errors_name_line_and_problem() {
    for (text, line, expected) in [
        ("all:\n  - a\n", 2, "group \"all\" must be a mapping"),
        ("all: node1\n", 1, "group \"all\" must be a mapping"),
        (
            "all:\n  vars:\n    - a: 1\n",
            3,
            "\"vars\" of group \"all\" must be a mapping",
        ),
        (
            "all:\n  hosts:\n    - node1\n",
            3,
            "\"hosts\" of group \"all\" must be a mapping",
        ),
        (
            "all:\n  children:\n    - web\n",
            3,
            "\"children\" of group \"all\" must be a mapping",
        ),
        (
            "all:\n  hosts:\n    node1: [a]\n",
            3,
            "must have a mapping of variables",
        ),
        ("all:\n  hosts:\n    node[3:1]:\n", 3, "begins after its end"),
        ("- all\n", 1, "top level must be a mapping"),
        ("plugin: aws_ec2\n", 1, "inventory plugin configuration"),
        (
            "all:\n  vars:\n    ansible_group_priority: high\n",
            3,
            "ansible_group_priority",
        ),
    ] {
        let error = Fixture::new(text).error();
        let InventoryError::Structure { line: found, .. } = &error else {
            panic!("{text:?}: {error:?}")
        };
        assert_eq!(*found, Some(line), "{text:?}: {error}");
        assert!(error.to_string().contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn empty_file_is_rejected() {
    let error = Fixture::new("# nothing\n").error().to_string();
    assert!(error.contains("empty"), "{error}");
}

#[test]
fn group_cycle_is_rejected() {
    let error = Fixture::new("a:\n  children:\n    b:\n      children:\n        a:\n")
        .error()
        .to_string();
    assert!(error.contains("cycle"), "{error}");
}

#[test]
fn missing_file_names_path() {
    let error = Inventory::load(Path::new("/nonexistent/inventory.yml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/inventory.yml"), "{error}");
    assert!(error.contains("not found"), "{error}");
    assert!(error.contains("-i"), "the message says which option to fix: {error}");
}
