//! Every load error, with its exact `FILE:LINE: message`.

mod common;
use common::{error, errors};

#[test]
fn syntax_error_names_its_line() {
    let e = error("[defaults]\ncipher = \"aes-gcm\"\n\n[group\nmatch = \"x\"\n");
    assert_eq!(
        e,
        "policy.toml:4: TOML syntax error: unclosed table, expected `]`"
    );
}

#[test]
fn unterminated_string() {
    let e = error("[defaults]\ncipher = \"aes-gcm\nprovider = \"openssl\"\n");
    assert!(e.starts_with("policy.toml:2: TOML syntax error: "), "{e}");
}

#[test]
fn unknown_key_in_defaults() {
    let e = error("[defaults]\ncipher = \"aes-gcm\"\nciphr = \"blowfish\"\n");
    assert_eq!(
        e,
        "policy.toml:3: unknown key \"ciphr\" in [defaults] (known: key_agreement, cipher, \
         dh_group, provider, cipher_provider, rekey_interval, agreement_timeout, security, signature, options)"
    );
}

#[test]
fn unknown_key_at_top_level_and_in_sections() {
    let e = errors(
        "title = \"x\"\n[plugins]\npath = []\n[trust]\nkey = \"d\"\n[[group]]\nmatch = \"a\"\n[[group]]\nmatch = \"b\"\nmember = [\"alice\"]\n",
    );
    assert_eq!(
        e,
        [
            "policy.toml:1: unknown key \"title\" in the top level (known: policy, plugins, trust, defaults, group)",
            "policy.toml:3: unknown key \"path\" in [plugins] (known: paths, pins)",
            "policy.toml:5: unknown key \"key\" in [trust] (known: keys, members, admins)",
            "policy.toml:10: unknown key \"member\" in [[group]] #2 (known: match, key_agreement, \
             cipher, dh_group, provider, cipher_provider, rekey_interval, agreement_timeout, security, signature, options, \
             members)",
        ]
    );
}

#[test]
fn unknown_key_in_dotted_and_inline_forms() {
    let e = error("defaults.cipher = \"aes-gcm\"\ndefaults.chiper = \"x\"\n");
    assert!(
        e.starts_with("policy.toml:2: unknown key \"chiper\" in [defaults]"),
        "{e}"
    );
    let e = error("defaults = { cipher = \"a\", rekey = \"1h\" }\n");
    assert!(
        e.starts_with("policy.toml:1: unknown key \"rekey\" in [defaults]"),
        "{e}"
    );
}

#[test]
fn wrong_types() {
    let e = errors(
        "[defaults]\ncipher = 5\nsecurity = true\n[plugins]\npaths = \"/usr/lib\"\npins = { \"a.so\" = 3 }\n[[group]]\nmatch = \"x\"\nmembers = [\"alice\", 7]\n",
    );
    assert_eq!(
        e,
        [
            "policy.toml:2: \"cipher\" in [defaults] must be a string, not an integer (5)",
            "policy.toml:3: \"security\" in [defaults] must be a string, not a boolean (true)",
            "policy.toml:5: \"paths\" in [plugins] must be an array of strings, not a string (\"/usr/lib\")",
            "policy.toml:6: \"pins.a.so\" in [plugins] must be a string, not an integer (3)",
            "policy.toml:9: \"members\" in [[group]] #1 must be an array of strings, not an integer (7)",
        ]
    );
}

#[test]
fn section_of_the_wrong_type() {
    let e = error("defaults = \"gdh\"\n");
    assert_eq!(
        e,
        "policy.toml:1: \"defaults\" in the top level must be a table, not a string (\"gdh\")"
    );
    let e = error("[group]\nmatch = \"x\"\n");
    assert!(
        e.starts_with("policy.toml:1: \"group\" in the top level must be an array of tables ([[group]]), not a table"),
        "{e}"
    );
}

#[test]
fn group_without_match() {
    let e = error("[[group]]\nmatch = \"a\"\n\n[[group]]\ncipher = \"blowfish\"\n");
    assert_eq!(e, "policy.toml:4: [[group]] #2 has no \"match\" key");
}

#[test]
fn bad_duration() {
    let e = error("[defaults]\nrekey_interval = \"1 fortnight\"\n");
    assert_eq!(
        e,
        "policy.toml:2: rekey_interval \"1 fortnight\" is not a positive duration (unknown time \
         unit \"fortnight\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, \
         years (and few variations); e.g. \"30s\", \"10m\", \"1h 30m\")"
    );
    let e = error("[[group]]\nmatch = \"a\"\nrekey_interval = \"0s\"\n");
    assert_eq!(
        e,
        "policy.toml:3: rekey_interval \"0s\" is not a positive duration (it is zero; e.g. \"30s\", \"10m\", \"1h 30m\")"
    );
}

#[test]
fn bad_agreement_timeout() {
    let e = error("[defaults]\nagreement_timeout = \"0s\"\n");
    assert_eq!(
        e,
        "policy.toml:2: agreement_timeout \"0s\" is not a positive duration of at most 1h (it is \
         zero; e.g. \"5s\", \"1500ms\", \"1m\")"
    );
    let e = error("[[group]]\nmatch = \"a\"\nagreement_timeout = \"1h 1s\"\n");
    assert_eq!(
        e,
        "policy.toml:3: agreement_timeout \"1h 1s\" is not a positive duration of at most 1h (it \
         is longer than 1h; e.g. \"5s\", \"1500ms\", \"1m\")"
    );
    let e = error("[defaults]\n\nagreement_timeout = \"soon\"\n");
    assert_eq!(
        e,
        "policy.toml:3: agreement_timeout \"soon\" is not a positive duration of at most 1h \
         (expected number at 0; e.g. \"5s\", \"1500ms\", \"1m\")"
    );
    let e = error("[defaults]\nagreement_timeout = \"5 fortnights\"\n");
    assert!(
        e.starts_with(
            "policy.toml:2: agreement_timeout \"5 fortnights\" is not a positive duration of at \
             most 1h (unknown time unit \"fortnights\""
        ),
        "{e}"
    );
    let e = error("[defaults]\nagreement_timeout = 5\n");
    assert_eq!(
        e,
        "policy.toml:2: \"agreement_timeout\" in [defaults] must be a string, not an integer (5)"
    );
    // Every wrong value is reported, each at its line.
    let e = errors(
        "[defaults]\nagreement_timeout = \"0ms\"\n[[group]]\nmatch = \"a\"\nagreement_timeout = \"2h\"\n",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("policy.toml:2: agreement_timeout \"0ms\""),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("policy.toml:5: agreement_timeout \"2h\""),
        "{e:#?}"
    );
    // From the environment, the error names the variable.
    let e = conclave_policy::Policy::from_str_with_env(
        "",
        "policy.toml",
        "CONCLAVE_POLICY",
        [("CONCLAVE_POLICY__DEFAULTS__AGREEMENT_TIMEOUT", "0s")],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable CONCLAVE_POLICY__DEFAULTS__AGREEMENT_TIMEOUT: agreement_timeout \
         \"0s\" is not a positive duration of at most 1h (it is zero; e.g. \"5s\", \"1500ms\", \
         \"1m\")"
    );
}

#[test]
fn bad_glob() {
    let e = error("[[group]]\nmatch = \"ops-[\"\n");
    assert_eq!(
        e,
        "policy.toml:2: match pattern \"ops-[\" is not a valid glob: Pattern syntax error near position 4: invalid range pattern"
    );
}

#[test]
fn bad_pins() {
    let e = errors(concat!(
        "[plugins.pins]\n",
        "\"liba.so\" = \"sha256:1234\"\n",
        "\"libb.so\" = \"md5:00\"\n",
        "\"lib/c.so\" = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        "\"libd.so\" = \"sha256:000000000000000000000000000000000000000000000000000000000000000g\"\n",
    ));
    assert_eq!(
        e,
        [
            "policy.toml:2: pin for \"liba.so\": it must be \"sha256:\" followed by 64 hex digits, not \"sha256:1234\"",
            "policy.toml:3: pin for \"libb.so\": it must be \"sha256:\" followed by 64 hex digits, not \"md5:00\"",
            "policy.toml:4: pin for \"lib/c.so\": the key must be a plugin's file name, without directories, not \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"",
            "policy.toml:5: pin for \"libd.so\": it must be \"sha256:\" followed by 64 hex digits, not \"sha256:000000000000000000000000000000000000000000000000000000000000000g\"",
        ]
    );
}

#[test]
fn bad_security() {
    let e = error(
        "[defaults]\nsecurity = \"required\"\n[[group]]\nmatch = \"p-*\"\nsecurity = \"optional\"\n",
    );
    assert_eq!(
        e,
        "policy.toml:5: security \"optional\" must be \"required\" or \"none\""
    );
}

#[test]
fn empty_values() {
    let e = error("[defaults]\nprovider = \"\"\n");
    assert_eq!(e, "policy.toml:2: \"provider\" in [defaults] is empty");
}

#[test]
fn missing_trust_dir() {
    let e = error("[trust]\nkeys = \"no-such-dir\"\n");
    assert_eq!(
        e,
        "policy.toml:2: trust key directory \"no-such-dir\" cannot be read: not found"
    );
}

#[test]
fn bad_inline_keys_and_identities() {
    let e = errors(&format!(
        "[trust.members]\nalice = \"ed25519:00\"\n\"b b\" = \"{}\"\ncarol = \"00\"\n\n[[group]]\nmatch = \"x\"\nmembers = [\".hidden\"]\n",
        common::key_line(1)
    ));
    assert_eq!(
        e,
        [
            "policy.toml:2: public key of \"alice\" is malformed: ed25519 public keys are 32 bytes (64 hex digits), this one is 1",
            "policy.toml:3: identity name \"b b\" is invalid: ' ' is not allowed (ASCII letters, digits, '-', '_', '.')",
            "policy.toml:4: public key of \"carol\" is malformed: expected \"ALGORITHM:HEX\" (e.g. \"ed25519:\" and 64 hex digits)",
            "policy.toml:8: identity name \".hidden\" is invalid: it starts with '.'",
        ]
    );
}

#[test]
fn unreadable_file() {
    let e = conclave_policy::Policy::load_file("/no/such/policy.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/no/such/policy.toml: cannot read the policy file: No such file or directory (os error 2)"
    );
    assert!(e[0].position().is_none());
}

#[test]
fn errors_carry_positions() {
    let e = common::parse("[defaults]\n\nsecurity = \"maybe\"\n").unwrap_err();
    assert_eq!(
        e[0].position(),
        Some(&conclave_policy::Position::File {
            file: "policy.toml".into(),
            line: 3
        })
    );
}

/// Every prefix of every example, and some mangled bytes: errors, never a panic, and
/// every error has a position.
#[test]
fn never_panics_on_truncated_or_mangled_files() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in [
        "default.toml",
        "ops-and-public.toml",
        "legacy-blowfish.toml",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let origin = dir.join(name);
        let cuts = text.char_indices().map(|(i, _)| i).step_by(3);
        for cut in cuts {
            for candidate in [
                text[..cut].to_owned(),
                format!("{}\u{0}{}", &text[..cut], &text[cut..]),
                format!("{}\"{}", &text[..cut], &text[cut..]),
            ] {
                if let Err(errors) = conclave_policy::Policy::from_str(&candidate, &origin) {
                    assert!(!errors.is_empty());
                    for e in errors.iter() {
                        assert!(e.position().is_some(), "{e}");
                    }
                }
            }
        }
    }
}

#[test]
fn policy_version_and_administrators() {
    let key = format!("ed25519:{}", "11".repeat(32));
    let ok = conclave_policy::Policy::from_str(
        &format!(
            "[policy]\nversion = 7\n[trust]\nmembers = {{ root = \"{key}\" }}\nadmins = [\"root\"]\n"
        ),
        "policy.toml",
    )
    .unwrap();
    assert_eq!(ok.version(), 7);
    assert_eq!(ok.admins().collect::<Vec<_>>(), ["root"]);
    // Unset: version 0, no administrators.
    let empty = conclave_policy::Policy::from_str("", "policy.toml").unwrap();
    assert_eq!((empty.version(), empty.admins().count()), (0, 0));

    assert_eq!(
        errors("[policy]\nversion = -1\n[trust]\nadmins = [\"root\"]\n"),
        [
            "policy.toml:2: \"version\" in [policy] must be a non-negative integer, not an integer (-1)",
        ]
    );
    assert_eq!(
        errors("[policy]\nversion = \"2\"\n"),
        [
            "policy.toml:2: \"version\" in [policy] must be a non-negative integer, not a string (\"2\")"
        ]
    );
    assert_eq!(
        errors("[trust]\nadmins = [\"root\"]\n"),
        ["policy.toml:2: administrator \"root\" is not in the trust store (known: none installed)"]
    );
}

#[test]
fn a_published_policy_keeps_plugins_and_trust_local() {
    let key = format!("ed25519:{}", "11".repeat(32));
    let own = conclave_policy::Policy::from_str(
        &format!("[trust]\nmembers = {{ root = \"{key}\" }}\nadmins = [\"root\"]\n"),
        "own.toml",
    )
    .unwrap();
    let adopted = own
        .published(
            "[policy]\nversion = 3\n[defaults]\ncipher = \"blowfish\"\n",
            "v3",
        )
        .unwrap();
    assert_eq!(adopted.version(), 3);
    assert_eq!(
        adopted.admins().collect::<Vec<_>>(),
        ["root"],
        "the member's own"
    );
    assert!(
        adopted.trust().contains("root"),
        "the member's own trust store"
    );
    let refused = own
        .published(
            &format!(
                "[plugins]\npaths = [\"/tmp/evil\"]\n[trust]\nmembers = {{ eve = \"{key}\" }}\nadmins = [\"eve\"]\n"
            ),
            "v4",
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "v4:2: a published policy may not set [plugins] paths: it stays in each member's own file\n\
         v4:4: a published policy may not set [trust] members: it stays in each member's own file\n\
         v4:5: a published policy may not set [trust] admins: it stays in each member's own file"
    );
}
