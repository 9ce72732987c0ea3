use super::*;

#[test]
fn empty_config_is_all_defaults() {
    let c = Config::parse("", "t").unwrap();
    assert!(c.upstream.url.is_none());
    assert_eq!(
        c.horizons("anything")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["15m", "1h", "6h"]
    );
    assert_eq!(c.model.hidden, 50);
}

#[test]
fn full_config_parses() {
    let c = Config::parse(
        r#"
upstream:
  url: http://127.0.0.1:9090
  timeout: 10s
  headers: {Authorization: "Bearer x"}
defaults:
  step: 1m
  horizons: [1h, 30m]
  train_window: 14d
series:
  - name: cpu_busy
    expr: 'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
    horizons: [2h]
"#,
        "t",
    )
    .unwrap();
    assert_eq!(c.upstream.timeout.as_millis(), 10_000);
    assert_eq!(c.horizons("other")[0].to_string(), "30m");
    assert_eq!(c.horizons("cpu_busy")[0].to_string(), "2h");
    assert_eq!(c.step("cpu_busy").unwrap().to_string(), "1m");
}

/// The shipped example documents every field with its default value;
/// it must parse and must not drift from the code's defaults.
#[test]
fn example_config_shows_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/promcast/promcast.yml");
    let example = Config::load(&path).unwrap();
    let defaults = Config::default();
    let debug = |c: &Config| format!("{:?} {:?} {:?}", c.defaults, c.model, c.limits);
    assert_eq!(debug(&example), debug(&defaults));
    assert_eq!(example.upstream.timeout, defaults.upstream.timeout);
    assert_eq!(example.series.len(), 1);
}

#[test]
fn errors_name_the_field_and_line() {
    let err = Config::parse("defaults:\n  horizons: [1h, soon]\n", "cfg.yml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("defaults.horizons"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let err = Config::parse("defaults:\n  horizon: [1h]\n", "cfg.yml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `horizon`"), "{err}");
    let err = Config::parse("series:\n  - name: predicted_x\n", "cfg.yml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("series[0].name"), "{err}");
    let err = Config::parse("model:\n  hidden: 0\n", "cfg.yml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.hidden"), "{err}");
}

/// A broken expression is refused when the configuration loads, by field
/// and line, and so is one that would read promcast's own answers back.
#[test]
fn expressions_are_checked_at_load() {
    for (expr, reason) in [
        ("''", "must not be empty"),
        ("'rate(x[5m]'", "unclosed '('"),
        ("'x{job=\"a}'", "unterminated quoted string"),
        ("predicted_x", "synthetic series \"predicted_x\""),
    ] {
        let text = format!("series:\n  - name: ok\n  - name: fam\n    expr: {expr}\n");
        let err = Config::parse(&text, "cfg.yml").unwrap_err().to_string();
        for part in ["cfg.yml", "series[1].expr", reason, "line 4"] {
            assert!(err.contains(part), "{expr}: {part:?} missing from {err}");
        }
    }
}

/// Every field path of a configuration, `series[].name` style, from a
/// configuration with every optional part filled in.
fn field_paths() -> Vec<String> {
    let mut c = Config::default();
    let path = PathBuf::from("/x");
    c.upstream.url = Some("http://x".parse().unwrap());
    c.upstream.authorization = Some(Authorization {
        kind: bearer(),
        credentials_file: path.clone(),
    });
    c.upstream.basic_auth = Some(BasicAuth {
        username: "u".into(),
        password_file: path.clone(),
    });
    c.web.tls_server_config = Some(TlsServerConfig {
        cert_file: path.clone(),
        key_file: path.clone(),
        client_ca_file: Some(path.clone()),
        client_auth_type: Some(ClientAuthType::RequireAndVerifyClientCert),
        min_version: Some(TlsVersion::TLS12),
        max_version: Some(TlsVersion::TLS13),
    });
    c.web.authorization = c.upstream.authorization.clone();
    c.web.basic_auth = c.upstream.basic_auth.clone();
    c.series.push(SeriesConfig {
        name: "m".into(),
        expr: Some("m".parse().unwrap()),
        step: None,
        horizons: None,
    });
    fn walk(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) if !m.is_empty() && prefix != "upstream.headers" => {
                for (k, v) in m {
                    let key = k.as_str().unwrap();
                    let p = if prefix.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&p, v, out);
                }
            }
            serde_yaml::Value::Sequence(items) if items.iter().any(|i| i.is_mapping()) => {
                walk(&format!("{prefix}[]"), &items[0], out);
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_yaml::to_value(&c).unwrap(), &mut out);
    out
}

/// README.md's configuration reference lists every field, and nothing
/// that is not one.
#[test]
fn readme_documents_every_field() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Configuration reference")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has a '## Configuration reference' section");
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let fields = field_paths();
    assert!(fields.len() > 40, "{fields:?}");
    for f in &fields {
        assert!(
            documented.contains(&f.as_str()),
            "README.md does not document `{f}`"
        );
    }
    for d in &documented {
        assert!(
            fields.iter().any(|f| f == d),
            "README.md documents `{d}`, which is not a field"
        );
    }
}
