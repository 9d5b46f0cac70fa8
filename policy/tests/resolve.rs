//! Environment overrides, rule precedence, resolution and its sources, validation
//! against the installed plugins.

mod common;
use std::time::Duration;

use common::{catalog, key_line, parse};
use conclave_policy::{Policy, Position, Security, Source};

fn line(n: usize) -> Position {
    Position::File {
        file: "policy.toml".into(),
        line: n,
    }
}

fn env(text: &str, vars: &[(&str, &str)]) -> Result<Policy, conclave_policy::PolicyErrors> {
    Policy::from_str_with_env(
        text,
        "policy.toml",
        "CONCLAVE_POLICY",
        vars.iter().map(|(k, v)| (*k, *v)),
    )
}

const OPS: &str = r#"[defaults]
key_agreement = "gdh"
cipher = "aes-gcm"
dh_group = "ffdhe3072"
provider = "openssl"
rekey_interval = "1h"

[[group]]
match = "ops-*"
key_agreement = "ckd"
cipher = "blowfish"
members = ["alice", "bob"]

[[group]]
match = "ops-public"
security = "none"

[[group]]
match = "public-*"
security = "none"
"#;

#[test]
fn first_matching_rule_wins_then_defaults_then_builtin() {
    let p = parse(OPS).unwrap();
    let c = catalog();
    // "ops-public" matches rule #1 first: rule #2 never applies to it.
    let r = p.resolve("ops-public", &c).unwrap();
    assert_eq!(r.rule, Some(1));
    assert_eq!(r.security, Security::Required);
    assert_eq!(r.key_agreement, "ckd");
    assert_eq!(
        (r.cipher.as_str(), r.cipher_algorithm.as_str()),
        ("blowfish", "blowfish-cbc-hmac-sha256")
    );
    assert_eq!(r.dh_group, "ffdhe3072");
    assert_eq!(r.provider, "openssl");
    assert_eq!(r.signature, "ed25519");
    assert_eq!(r.rekey_interval, Some(Duration::from_secs(3600)));
    assert_eq!(r.members, Some(vec!["alice".to_owned(), "bob".to_owned()]));
    let rule1 = |n| Source::Rule {
        index: 1,
        pattern: "ops-*".into(),
        at: line(n),
    };
    assert_eq!(r.sources.key_agreement, rule1(10));
    assert_eq!(r.sources.cipher, rule1(11));
    assert_eq!(r.sources.members, rule1(12));
    assert_eq!(r.sources.dh_group, Source::Defaults { at: line(4) });
    assert_eq!(r.sources.provider, Source::Defaults { at: line(5) });
    assert_eq!(r.sources.rekey_interval, Source::Defaults { at: line(6) });
    assert_eq!(r.sources.signature, Source::BuiltIn);
    assert_eq!(r.sources.security, Source::BuiltIn);
    assert_eq!(
        r.sources.key_agreement.to_string(),
        "group rule #1 (match \"ops-*\") at policy.toml:10"
    );
    assert_eq!(
        r.sources.dh_group.to_string(),
        "[defaults] at policy.toml:4"
    );
    assert_eq!(r.sources.signature.to_string(), "built-in default");

    let r = p.resolve("public-chat", &c).unwrap();
    assert_eq!(r.rule, Some(3));
    assert_eq!(r.security, Security::None);
    assert_eq!(
        r.sources.security,
        Source::Rule {
            index: 3,
            pattern: "public-*".into(),
            at: line(20)
        }
    );

    let r = p.resolve("lab", &c).unwrap();
    assert_eq!(r.rule, None);
    assert_eq!(r.key_agreement, "gdh");
    assert_eq!(
        (r.cipher.as_str(), r.cipher_algorithm.as_str()),
        ("aes-gcm", "aes-256-gcm")
    );
    assert_eq!(r.members, None);
    assert_eq!(r.sources.members, Source::BuiltIn);
    assert_eq!(p.rule_for("ops-x").map(|r| r.index), Some(1));
    assert!(p.rule_for("OPS-x").is_none(), "globs are case-sensitive");
}

#[test]
fn builtin_defaults() {
    let p = parse("").unwrap();
    let r = p.resolve("anything", &catalog()).unwrap();
    assert_eq!(r.security, Security::Required);
    assert_eq!(r.key_agreement, "gdh");
    assert_eq!(r.cipher, "aes-gcm");
    assert_eq!(r.cipher_algorithm, "aes-256-gcm");
    assert_eq!(r.dh_group, "ffdhe2048");
    assert_eq!(r.provider, "rustcrypto");
    assert_eq!(r.signature, "ed25519");
    assert_eq!(r.rekey_interval, None);
    assert_eq!(r.agreement_timeout, Duration::from_secs(5));
    assert_eq!(
        conclave_policy::builtin::AGREEMENT_TIMEOUT,
        Duration::from_secs(5)
    );
    for s in [
        &r.sources.security,
        &r.sources.key_agreement,
        &r.sources.cipher,
        &r.sources.dh_group,
        &r.sources.provider,
        &r.sources.signature,
        &r.sources.rekey_interval,
        &r.sources.agreement_timeout,
        &r.sources.members,
    ] {
        assert_eq!(s, &Source::BuiltIn);
    }
    assert!(p.plugin_paths().is_empty());
    assert!(p.trust().is_empty());
    p.validate(&catalog()).unwrap();
}

#[test]
fn cipher_by_plugin_or_algorithm() {
    let c = catalog();
    for (setting, plugin, algorithm) in [
        ("aes-gcm", "aes-gcm", "aes-256-gcm"),
        ("aes-128-gcm", "aes-gcm", "aes-128-gcm"),
        ("aes-256-gcm", "aes-gcm", "aes-256-gcm"),
        (
            "chacha20-poly1305",
            "chacha20-poly1305",
            "chacha20-poly1305",
        ),
        ("blowfish", "blowfish", "blowfish-cbc-hmac-sha256"),
        (
            "blowfish-cbc-hmac-sha256",
            "blowfish",
            "blowfish-cbc-hmac-sha256",
        ),
    ] {
        let p = parse(&format!("[defaults]\ncipher = \"{setting}\"\n")).unwrap();
        let r = p.resolve("g", &c).unwrap();
        assert_eq!(
            (r.cipher.as_str(), r.cipher_algorithm.as_str()),
            (plugin, algorithm),
            "{setting}"
        );
    }
}

#[test]
fn env_overrides_defaults_trust_and_paths() {
    let p = env(
        OPS,
        &[
            ("CONCLAVE_POLICY__DEFAULTS__CIPHER", "chacha20-poly1305"),
            ("conclave_policy__defaults__rekey_interval", "10m"),
            ("CONCLAVE_POLICY__PLUGINS__PATHS", "/opt/a,/opt/b"),
            ("CONCLAVE_POLICY__TRUST__MEMBERS__ALICE", &key_line(1)),
            ("OTHER__DEFAULTS__CIPHER", "ignored"),
            ("CONCLAVE_POLICYX__DEFAULTS__CIPHER", "ignored"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    let r = p.resolve("lab", &catalog()).unwrap();
    assert_eq!(r.cipher, "chacha20-poly1305");
    assert_eq!(
        r.sources.cipher,
        Source::Defaults {
            at: Position::Env {
                var: "CONCLAVE_POLICY__DEFAULTS__CIPHER".into()
            }
        }
    );
    assert_eq!(
        r.sources.cipher.to_string(),
        "[defaults] at environment variable CONCLAVE_POLICY__DEFAULTS__CIPHER"
    );
    assert_eq!(r.rekey_interval, Some(Duration::from_secs(600)));
    // Untouched settings keep their lines.
    assert_eq!(r.sources.dh_group, Source::Defaults { at: line(4) });
    // A rule still beats an overridden default.
    assert_eq!(p.resolve("ops-1", &catalog()).unwrap().cipher, "blowfish");
    assert_eq!(
        p.plugin_paths(),
        vec![std::path::PathBuf::from("/opt/a"), "/opt/b".into()]
    );
    assert_eq!(
        p.trust().get("alice").unwrap().bytes(),
        common::key_bytes(1)
    );
}

#[test]
fn env_values_stay_strings() {
    let p = env("", &[("CONCLAVE_POLICY__DEFAULTS__DH_GROUP", "1e5")]).unwrap();
    assert_eq!(p.defaults().dh_group.as_ref().unwrap().value, "1e5");
}

#[test]
fn env_errors_name_the_variable() {
    let e = env(
        "[defaults]\ncipher = \"aes-gcm\"\n",
        &[
            ("CONCLAVE_POLICY__DEFAULTS__CIPHR", "blowfish"),
            ("CONCLAVE_POLICY__DEFAULTS__SECURITY", "maybe"),
            ("CONCLAVE_POLICY__GROUP__0__CIPHER", "blowfish"),
            ("CONCLAVE_POLICY__PLUGINS__PINS__X", "sha256:00"),
            ("CONCLAVE_POLICY__TRUSTED", "x"),
        ],
    )
    .unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "environment variable CONCLAVE_POLICY__DEFAULTS__CIPHR: unknown key \"ciphr\" in [defaults] (known: key_agreement, cipher, dh_group, provider, cipher_provider, rekey_interval, agreement_timeout, security, signature)",
            "environment variable CONCLAVE_POLICY__GROUP__0__CIPHER: [[group]] rules cannot be set from the environment",
            "environment variable CONCLAVE_POLICY__PLUGINS__PINS__X: plugin pins cannot be set from the environment",
            "environment variable CONCLAVE_POLICY__TRUSTED: unknown key \"trusted\" in the top level (known: policy, plugins, trust, defaults, group)",
        ]
    );
    // Values are checked like the file's, and blamed on the variable.
    let e = env("", &[("CONCLAVE_POLICY__DEFAULTS__SECURITY", "maybe")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable CONCLAVE_POLICY__DEFAULTS__SECURITY: security \"maybe\" must be \"required\" or \"none\""
    );
}

#[test]
fn custom_prefix() {
    let p = Policy::from_str_with_env(
        "",
        "policy.toml",
        "MYAPP",
        [
            ("MYAPP__DEFAULTS__KEY_AGREEMENT", "ckd"),
            ("CONCLAVE_POLICY__DEFAULTS__CIPHER", "x"),
        ],
    )
    .unwrap();
    let r = p.resolve("g", &catalog()).unwrap();
    assert_eq!(r.key_agreement, "ckd");
    assert_eq!(r.cipher, "aes-gcm");
}

#[test]
fn validate_reports_unknown_plugins_and_algorithms() {
    let text = r#"[defaults]
key_agreement = "gdx"
cipher = "aes-gmc"
provider = "openssl"
dh_group = "ristretto255"

[[group]]
match = "a-*"
provider = "opensll"

[[group]]
match = "b-*"
provider = "rustcrypto"
dh_group = "p256"
signature = "rsa-pss-2048"

[[group]]
match = "c-*"
provider = "rustcrypto"
security = "none"
dh_group = "p256"
"#;
    let p = parse(text).unwrap();
    let e = p.validate(&catalog()).unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "policy.toml:2: key_agreement \"gdx\" is not an installed key-agreement plugin (known: ckd, gdh)",
            "policy.toml:3: cipher \"aes-gmc\" is not an installed cipher plugin or algorithm (known: aes-gcm, aes-256-gcm, aes-128-gcm, blowfish, blowfish-cbc-hmac-sha256, chacha20-poly1305)",
            "policy.toml:5: dh_group \"ristretto255\" is not offered by provider \"openssl\" ([defaults]; known: modp2048, modp3072, ffdhe2048, ffdhe3072, ffdhe4096, p256)",
            "policy.toml:9: provider \"opensll\" is not an installed provider plugin (known: openssl, rustcrypto)",
            "policy.toml:14: dh_group \"p256\" is not offered by provider \"rustcrypto\" (group rule #2 (\"b-*\"); known: modp2048, modp3072, ffdhe2048, ffdhe3072, ffdhe4096, ristretto255)",
            "policy.toml:15: signature \"rsa-pss-2048\" is not offered by provider \"rustcrypto\" (group rule #2 (\"b-*\"); known: ed25519)",
        ]
    );
    // resolve() refuses a secured group with the same errors, not a plain one.
    let e = p.resolve("b-1", &catalog()).unwrap_err();
    assert_eq!(e.len(), 4);
    let r = p.resolve("c-1", &catalog()).unwrap();
    assert_eq!(r.security, Security::None);
}

#[test]
fn builtin_value_blamed_on_the_provider() {
    let p = parse("[defaults]\nprovider = \"openssl\"\ndh_group = \"ristretto255\"\n[[group]]\nmatch = \"x\"\ndh_group = \"ffdhe2048\"\nprovider = \"rustcrypto\"\n").unwrap();
    p.validate(&catalog()).unwrap_err();
    let only_openssl = vec![conclave_policy::CatalogPlugin::new(
        "openssl",
        conclave_policy::Kind::Provider,
        &[("dh-group", "p256"), ("signature", "ed25519")],
    )];
    let p = parse("[defaults]\nkey_agreement = \"gdh\"\n\nprovider = \"openssl\"\n").unwrap();
    let e = p.validate(&only_openssl).unwrap_err();
    let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "policy.toml:2: key_agreement \"gdh\" is not an installed key-agreement plugin (known: none installed)",
            "policy.toml:4: dh_group \"ffdhe2048\" is not offered by provider \"openssl\" ([defaults]; known: p256)",
            "built-in default: cipher \"aes-256-gcm\" is not an installed cipher plugin or algorithm (known: none installed)",
        ]
    );
}

#[test]
fn validate_checks_members_against_the_trust_store() {
    let text = format!(
        "[trust.members]\nalice = \"{}\"\nbob = \"{}\"\n[[group]]\nmatch = \"ops-*\"\nmembers = [\"alice\", \"bbo\"]\n",
        key_line(1),
        key_line(2)
    );
    let p = parse(&text).unwrap();
    let e = p.validate(&catalog()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "policy.toml:6: member \"bbo\" is not in the trust store (known: alice, bob)"
    );
}

#[test]
fn may_join() {
    let text = format!(
        "[trust.members]\nalice = \"{}\"\nbob = \"{}\"\ncarol = \"{}\"\n[[group]]\nmatch = \"ops-*\"\nmembers = [\"alice\", \"bob\"]\n[[group]]\nmatch = \"public-*\"\nsecurity = \"none\"\n",
        key_line(1),
        key_line(2),
        key_line(3)
    );
    let p = parse(&text).unwrap();
    p.validate(&catalog()).unwrap();
    let c = catalog();
    let ops = p.resolve("ops-1", &c).unwrap();
    assert!(ops.may_join("alice") && ops.may_join("bob"));
    assert!(!ops.may_join("carol"), "trusted but not listed");
    let lab = p.resolve("lab", &c).unwrap();
    assert!(lab.may_join("carol"));
    assert!(!lab.may_join("mallory"), "untrusted");
    let public = p.resolve("public-1", &c).unwrap();
    assert!(public.may_join("mallory"), "plain groups need no trust");
}

#[test]
fn context_bytes_bind_the_modules_not_the_provider() {
    let c = catalog();
    let ctx = |text: &str| {
        parse(text)
            .unwrap()
            .resolve("g", &c)
            .unwrap()
            .context_bytes()
    };
    let base = ctx("");
    assert!(base.starts_with(conclave_policy::CONTEXT_LABEL));
    assert_eq!(base, ctx("[defaults]\nprovider = \"openssl\"\n"));
    assert_eq!(
        base,
        ctx("[defaults]\nrekey_interval = \"5m\"\ncipher = \"aes-256-gcm\"\n")
    );
    assert_ne!(base, ctx("[defaults]\ncipher = \"aes-128-gcm\"\n"));
    assert_ne!(base, ctx("[defaults]\nkey_agreement = \"ckd\"\n"));
    assert_ne!(base, ctx("[defaults]\ndh_group = \"ffdhe3072\"\n"));
    // The encoding is length-prefixed: moving bytes between fields changes it.
    assert_ne!(
        conclave_policy::encode_context(&[("a", "bc"), ("d", "")]),
        conclave_policy::encode_context(&[("a", "b"), ("cd", "")])
    );
    let r = parse("").unwrap().resolve("g", &c).unwrap();
    let mut expected = conclave_policy::CONTEXT_LABEL.to_vec();
    for part in [
        "key_agreement",
        "gdh",
        "cipher",
        "aes-gcm",
        "cipher_algorithm",
        "aes-256-gcm",
        "dh_group",
        "ffdhe2048",
        "signature",
        "ed25519",
    ] {
        expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
        expected.extend_from_slice(part.as_bytes());
    }
    assert_eq!(r.context_bytes(), expected);
}

#[test]
fn pins_and_paths() {
    let digest = "ab".repeat(32);
    let p = Policy::from_str(
        &format!(
            "[plugins]\npaths = [\"plugins\", \"/usr/lib/conclave/plugins\"]\npins = {{ \"libacme_cipher.so\" = \"sha256:{}\" }}\n",
            digest.to_uppercase()
        ),
        "/etc/conclave/policy.toml",
    )
    .unwrap();
    assert_eq!(
        p.plugin_paths(),
        vec![
            std::path::PathBuf::from("/etc/conclave/plugins"),
            "/usr/lib/conclave/plugins".into()
        ]
    );
    assert_eq!(p.pin_for("libacme_cipher.so"), Some([0xab; 32]));
    assert_eq!(
        p.pin_for("/usr/lib/conclave/plugins/libacme_cipher.so"),
        Some([0xab; 32])
    );
    assert_eq!(p.pin_for("libother.so"), None);
    assert_eq!(p.pins().count(), 1);
}

#[test]
fn explain_lists_every_setting_with_its_source() {
    let p = parse(OPS).unwrap();
    let r = p.resolve("ops-1", &catalog()).unwrap();
    assert_eq!(r.rule_pattern.as_deref(), Some("ops-*"));
    let expected = [
        "group ops-1: group rule #1 (match \"ops-*\")",
        "  security          required                 built-in default",
        "  key_agreement     ckd                      group rule #1 (match \"ops-*\") at policy.toml:10",
        "  cipher            blowfish (blowfish-cbc-hmac-sha256) group rule #1 (match \"ops-*\") at policy.toml:11",
        "  dh_group          ffdhe3072                [defaults] at policy.toml:4",
        "  provider          openssl                  [defaults] at policy.toml:5",
        "  cipher_provider   openssl                  [defaults] at policy.toml:5",
        "  signature         ed25519                  built-in default",
        "  rekey_interval    1h                       [defaults] at policy.toml:6",
        "  agreement_timeout 5s                       built-in default",
        "  members           alice, bob               group rule #1 (match \"ops-*\") at policy.toml:12",
        "",
    ]
    .join("\n");
    assert_eq!(r.explain(), expected);
    let r = p.resolve("lab", &catalog()).unwrap();
    assert!(r.explain().starts_with("group lab: no rule matches"));
    assert!(r.explain().contains("any trusted identity"));
}

#[test]
fn agreement_timeout_from_rule_defaults_env_or_builtin() {
    let text = r#"[defaults]
agreement_timeout = "1500ms"

[[group]]
match = "slow-*"
agreement_timeout = "1m"

[[group]]
match = "ops-*"
cipher = "blowfish"
"#;
    let p = parse(text).unwrap();
    p.validate(&catalog()).unwrap();
    let c = catalog();
    assert_eq!(
        p.defaults().agreement_timeout.as_ref().unwrap().value,
        Duration::from_millis(1500)
    );

    // A rule's value beats the defaults.
    let r = p.resolve("slow-1", &c).unwrap();
    assert_eq!(r.agreement_timeout, Duration::from_secs(60));
    assert_eq!(
        r.sources.agreement_timeout,
        Source::Rule {
            index: 1,
            pattern: "slow-*".into(),
            at: line(6)
        }
    );
    assert!(
        r.explain()
            .contains("  agreement_timeout 1m                       group rule #1 (match \"slow-*\") at policy.toml:6\n"),
        "{}",
        r.explain()
    );

    // A rule without it inherits the defaults, as does a group no rule matches.
    for group in ["ops-1", "lab"] {
        let r = p.resolve(group, &c).unwrap();
        assert_eq!(r.agreement_timeout, Duration::from_millis(1500), "{group}");
        assert_eq!(
            r.sources.agreement_timeout,
            Source::Defaults { at: line(2) },
            "{group}"
        );
        assert_eq!(
            r.sources.agreement_timeout.to_string(),
            "[defaults] at policy.toml:2"
        );
        assert!(
            r.explain().contains("  agreement_timeout 1s 500ms "),
            "{}",
            r.explain()
        );
    }

    // Neither says: the built-in 5 s.
    let r = parse("[[group]]\nmatch = \"x\"\n")
        .unwrap()
        .resolve("x", &c)
        .unwrap();
    assert_eq!(
        r.agreement_timeout,
        conclave_policy::builtin::AGREEMENT_TIMEOUT
    );
    assert_eq!(r.sources.agreement_timeout, Source::BuiltIn);

    // Exactly the limit is allowed.
    let r = parse("[defaults]\nagreement_timeout = \"1h\"\n")
        .unwrap()
        .resolve("g", &c)
        .unwrap();
    assert_eq!(r.agreement_timeout, conclave_policy::MAX_AGREEMENT_TIMEOUT);

    // An environment override of [defaults], blamed on its variable; a rule still wins.
    let p = env(
        text,
        &[("CONCLAVE_POLICY__DEFAULTS__AGREEMENT_TIMEOUT", "250ms")],
    )
    .unwrap();
    let r = p.resolve("lab", &c).unwrap();
    assert_eq!(r.agreement_timeout, Duration::from_millis(250));
    assert_eq!(
        r.sources.agreement_timeout,
        Source::Defaults {
            at: Position::Env {
                var: "CONCLAVE_POLICY__DEFAULTS__AGREEMENT_TIMEOUT".into()
            }
        }
    );
    assert_eq!(
        p.resolve("slow-1", &c).unwrap().agreement_timeout,
        Duration::from_secs(60)
    );

    // Not bound into the context: each member's own, like rekey_interval.
    assert_eq!(
        parse("").unwrap().resolve("g", &c).unwrap().context_bytes(),
        parse("[defaults]\nagreement_timeout = \"30s\"\n")
            .unwrap()
            .resolve("g", &c)
            .unwrap()
            .context_bytes()
    );
}

#[test]
fn env_member_names_and_duplicates() {
    let p = env(
        "",
        &[
            ("CONCLAVE_POLICY__TRUST__MEMBERS__NODE-1", &key_line(9)),
            ("CONCLAVE_POLICY__TRUST__MEMBERS__Node_2", &key_line(8)),
        ],
    )
    .unwrap();
    assert_eq!(p.trust().names().collect::<Vec<_>>(), ["node-1", "node_2"]);
    assert_eq!(
        p.trust().entry("node-1").unwrap().at,
        Position::Env {
            var: "CONCLAVE_POLICY__TRUST__MEMBERS__NODE-1".into()
        }
    );
    let e = env(
        "",
        &[
            ("CONCLAVE_POLICY__DEFAULTS__CIPHER", "blowfish"),
            ("conclave_policy__defaults__cipher", "aes-gcm"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable conclave_policy__defaults__cipher: sets the same key as CONCLAVE_POLICY__DEFAULTS__CIPHER"
    );
}

/// The test catalog plus `aws-lc` (symmetric primitives, no DH group, no signature),
/// and a cipher check like the registry's: Blowfish needs a block cipher, which
/// aws-lc lacks.
struct WithAwsLc(Vec<conclave_policy::CatalogPlugin>);

impl WithAwsLc {
    fn new() -> Self {
        let mut c = catalog();
        c.push(conclave_policy::CatalogPlugin::new(
            "aws-lc",
            conclave_policy::Kind::Provider,
            &[
                ("aead", "aes-128-gcm"),
                ("aead", "aes-256-gcm"),
                ("aead", "chacha20-poly1305"),
                ("kdf", "hkdf-sha256"),
            ],
        ));
        Self(c)
    }
}

impl conclave_policy::Catalog for WithAwsLc {
    fn plugins(&self) -> Vec<conclave_policy::CatalogPlugin> {
        self.0.clone()
    }

    fn check_cipher(
        &self,
        (cipher, _, _): (&str, &str, &[(String, String)]),
        (provider, _): (&str, &[(String, String)]),
    ) -> Result<(), String> {
        match (cipher, provider) {
            ("blowfish", "aws-lc") => Err("aws-lc: block cipher \"blowfish\"".into()),
            _ => Ok(()),
        }
    }
}

/// Every error of validating `p` against `c`, as text (it must fail).
fn refusals(p: &Policy, c: &dyn conclave_policy::Catalog) -> Vec<String> {
    p.validate(c)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

const CIPHER_PROVIDER: &str = r#"[defaults]
provider = "rustcrypto"
dh_group = "ristretto255"
cipher_provider = "aws-lc"

[[group]]
match = "ops-*"
provider = "openssl"
dh_group = "ffdhe2048"

[[group]]
match = "legacy-*"
cipher_provider = "openssl"
"#;

#[test]
fn the_cipher_provider_is_its_own_setting_and_defaults_to_the_provider() {
    let p = parse(CIPHER_PROVIDER).unwrap();
    let c = WithAwsLc::new();
    p.validate(&c).unwrap();
    // Set in [defaults]: rules inherit it, whatever provider they pick.
    let r = p.resolve("ops-1", &c).unwrap();
    assert_eq!(
        (r.provider.as_str(), r.cipher_provider.as_str()),
        ("openssl", "aws-lc")
    );
    assert_eq!(r.sources.cipher_provider, Source::Defaults { at: line(4) });
    assert!(
        r.explain()
            .contains("  cipher_provider   aws-lc                   [defaults] at policy.toml:4\n"),
        "{}",
        r.explain()
    );
    let r = p.resolve("legacy-1", &c).unwrap();
    assert_eq!(r.cipher_provider, "openssl");
    // Unset anywhere: the provider, from where the provider comes.
    let p = parse("[[group]]\nmatch = \"x\"\nprovider = \"openssl\"\n").unwrap();
    let r = p.resolve("x", &c).unwrap();
    assert_eq!(r.cipher_provider, "openssl");
    assert_eq!(r.sources.cipher_provider, r.sources.provider);
    let r = p.resolve("y", &c).unwrap();
    assert_eq!(r.cipher_provider, "rustcrypto");
    assert_eq!(r.sources.cipher_provider, Source::BuiltIn);
    // Local, like the provider: not part of what members agree on.
    let a = parse(CIPHER_PROVIDER).unwrap().resolve("lab", &c).unwrap();
    let b = parse("[defaults]\nprovider = \"rustcrypto\"\ndh_group = \"ristretto255\"\n")
        .unwrap()
        .resolve("lab", &c)
        .unwrap();
    assert_ne!(a.cipher_provider, b.cipher_provider);
    assert_eq!(a.context_bytes(), b.context_bytes());
}

#[test]
fn a_cipher_provider_must_be_installed_and_run_the_cipher() {
    let c = WithAwsLc::new();
    let text = r#"[defaults]
cipher_provider = "aws-lc"
dh_group = "ristretto255"

[[group]]
match = "fish-*"
cipher = "blowfish"

[[group]]
match = "more-fish-*"
cipher = "blowfish"
cipher_provider = "aws-lcc"

[[group]]
match = "plain-*"
security = "none"
cipher = "blowfish"
"#;
    let p = parse(text).unwrap();
    let msgs = refusals(&p, &c);
    assert_eq!(
        msgs,
        [
            "policy.toml:2: cipher \"blowfish\" (blowfish-cbc-hmac-sha256) cannot run on provider \"aws-lc\" (group rule #1 (\"fish-*\")): aws-lc: block cipher \"blowfish\"",
            "policy.toml:12: cipher_provider \"aws-lcc\" is not an installed provider plugin (known: aws-lc, openssl, rustcrypto)",
        ]
    );
    // A secured group of the faulty rule is refused; a plain one is not checked.
    assert_eq!(p.resolve("fish-1", &c).unwrap_err().len(), 1);
    assert_eq!(p.resolve("plain-1", &c).unwrap().security, Security::None);
    // Blowfish inherited by a rule from [defaults]: one error, blamed on the cipher
    // provider's line and reported once.
    let p = parse(
        "[defaults]\ncipher = \"blowfish\"\ncipher_provider = \"aws-lc\"\n[[group]]\nmatch = \"a-*\"\nkey_agreement = \"ckd\"\n",
    )
    .unwrap();
    let e = p.validate(&c).unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert!(
        e.to_string()
            .starts_with("policy.toml:3: cipher \"blowfish\""),
        "{e}"
    );
}

#[test]
fn a_provider_without_dh_groups_cannot_be_the_groups_provider() {
    let c = WithAwsLc::new();
    let p = parse("[defaults]\nprovider = \"aws-lc\"\n").unwrap();
    let msgs = refusals(&p, &c);
    assert_eq!(
        msgs,
        [
            "policy.toml:2: dh_group \"ffdhe2048\" is not offered by provider \"aws-lc\" ([defaults]; known: none installed)",
            "policy.toml:2: signature \"ed25519\" is not offered by provider \"aws-lc\" ([defaults]; known: none installed)",
        ]
    );
}
