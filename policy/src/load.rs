//! Reading a policy: TOML syntax, the key schema, environment overrides layered with
//! `config`, and the values' own checks. Every error carries the line it is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Located, PolicyError, PolicyErrors, Position};
use crate::policy::{GroupRule, MAX_AGREEMENT_TIMEOUT, Policy, Security, Settings};
use crate::trust::{PublicKey, Trust, check_identity};

/// The keys of `[defaults]` and of a `[[group]]` rule (besides `match` and `members`).
pub(crate) const SETTING_KEYS: [&str; 9] = [
    "key_agreement",
    "cipher",
    "dh_group",
    "provider",
    "cipher_provider",
    "rekey_interval",
    "agreement_timeout",
    "security",
    "signature",
];

#[derive(Clone, Copy)]
enum Ty {
    Str,
    StrArray,
    StrTable,
    /// `options`: plugin name → table of strings, numbers and booleans.
    Options,
    /// A non-negative integer.
    Int,
}

impl Ty {
    fn expected(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::StrArray => "an array of strings",
            Ty::StrTable => "a table of strings",
            Ty::Options => "a table of plugin names to tables of options",
            Ty::Int => "a non-negative integer",
        }
    }
}

const TOP_KEYS: [&str; 5] = ["policy", "plugins", "trust", "defaults", "group"];
const POLICY_KEYS: [(&str, Ty); 1] = [("version", Ty::Int)];
const PLUGINS_KEYS: [(&str, Ty); 2] = [("paths", Ty::StrArray), ("pins", Ty::StrTable)];
const TRUST_KEYS: [(&str, Ty); 3] = [
    ("keys", Ty::Str),
    ("members", Ty::StrTable),
    ("admins", Ty::StrArray),
];

fn setting_schema() -> Vec<(&'static str, Ty)> {
    let mut v: Vec<(&'static str, Ty)> = SETTING_KEYS.iter().map(|k| (*k, Ty::Str)).collect();
    v.push(("options", Ty::Options));
    v
}

fn group_schema() -> Vec<(&'static str, Ty)> {
    let mut v = vec![("match", Ty::Str)];
    v.extend(setting_schema());
    v.push(("members", Ty::StrArray));
    v
}

/// The source text and its parsed, spanned form: turns spans into positions.
struct Doc<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Doc<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    fn at(&self, offset: usize) -> Position {
        Position::File {
            file: self.file.to_path_buf(),
            line: self.line(offset),
        }
    }

    /// The value's source text, shortened, for messages.
    fn snippet(&self, span: std::ops::Range<usize>) -> String {
        let s = self.text.get(span).unwrap_or("").trim();
        let first = s.lines().next().unwrap_or("");
        if first.chars().count() > 40 || first.len() < s.len() {
            format!("{}...", first.chars().take(40).collect::<String>())
        } else {
            first.to_owned()
        }
    }

    fn found(&self, value: &Spanned<DeValue<'_>>) -> String {
        let ty = value.get_ref().type_str();
        let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {ty} ({})", self.snippet(value.span()))
    }
}

fn known(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// Checks keys and types of the file against the format; returns every mismatch.
fn check_schema(doc: &Doc<'_>, root: &DeTable<'_>, errors: &mut Vec<PolicyError>) {
    for (key, value) in root.iter() {
        let name = key.get_ref().as_ref();
        match name {
            "policy" => check_table(doc, "[policy]", key, value, &POLICY_KEYS, errors),
            "plugins" => check_table(doc, "[plugins]", key, value, &PLUGINS_KEYS, errors),
            "trust" => check_table(doc, "[trust]", key, value, &TRUST_KEYS, errors),
            "defaults" => check_table(doc, "[defaults]", key, value, &setting_schema(), errors),
            "group" => match value.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let table = format!("[[group]] #{}", i + 1);
                        check_table(doc, &table, key, item, &group_schema(), errors);
                        if let DeValue::Table(t) = item.get_ref()
                            && !t.iter().any(|(k, _)| k.get_ref() == "match")
                        {
                            errors.push(PolicyError::MissingKey {
                                at: doc.at(item.span().start),
                                key: "match".into(),
                                table,
                            });
                        }
                    }
                }
                _ => errors.push(PolicyError::WrongType {
                    at: doc.at(value.span().start),
                    key: "group".into(),
                    table: "the top level".into(),
                    expected: "an array of tables ([[group]])".into(),
                    found: doc.found(value),
                }),
            },
            _ => errors.push(PolicyError::UnknownKey {
                at: doc.at(key.span().start),
                key: name.to_owned(),
                table: "the top level".into(),
                known: known(&TOP_KEYS),
            }),
        }
    }
}

fn check_table(
    doc: &Doc<'_>,
    table: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    schema: &[(&str, Ty)],
    errors: &mut Vec<PolicyError>,
) {
    let DeValue::Table(t) = value.get_ref() else {
        errors.push(PolicyError::WrongType {
            at: doc.at(value.span().start),
            key: key.get_ref().to_string(),
            table: "the top level".into(),
            expected: "a table".into(),
            found: doc.found(value),
        });
        return;
    };
    for (k, v) in t.iter() {
        let name = k.get_ref().as_ref();
        let Some((_, ty)) = schema.iter().find(|(n, _)| *n == name) else {
            errors.push(PolicyError::UnknownKey {
                at: doc.at(k.span().start),
                key: name.to_owned(),
                table: table.to_owned(),
                known: schema.iter().map(|(n, _)| (*n).to_owned()).collect(),
            });
            continue;
        };
        check_type(doc, table, name, v, *ty, errors);
    }
}

fn check_type(
    doc: &Doc<'_>,
    table: &str,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    ty: Ty,
    errors: &mut Vec<PolicyError>,
) {
    let wrong = |v: &Spanned<DeValue<'_>>, expected: &str, key: &str| PolicyError::WrongType {
        at: doc.at(v.span().start),
        key: key.to_owned(),
        table: table.to_owned(),
        expected: expected.to_owned(),
        found: doc.found(v),
    };
    match (ty, value.get_ref()) {
        (Ty::Str, DeValue::String(_)) => {}
        (Ty::Int, DeValue::Integer(i)) => {
            // `config` holds integers as i64.
            let parsed = i64::from_str_radix(i.as_str(), i.radix());
            if !parsed.is_ok_and(|v| v >= 0) {
                errors.push(wrong(value, ty.expected(), key));
            }
        }
        (Ty::StrArray, DeValue::Array(items)) => {
            for item in items.iter() {
                if !item.get_ref().is_str() {
                    errors.push(wrong(item, "an array of strings", key));
                }
            }
        }
        (Ty::StrTable, DeValue::Table(t)) => {
            for (k, v) in t.iter() {
                if !v.get_ref().is_str() {
                    let full = format!("{key}.{}", k.get_ref());
                    errors.push(wrong(v, "a string", &full));
                }
            }
        }
        (Ty::Options, DeValue::Table(plugins)) => {
            for (plugin, options) in plugins.iter() {
                let at = format!("{key}.{}", plugin.get_ref());
                let DeValue::Table(options) = options.get_ref() else {
                    errors.push(wrong(options, "a table of options", &at));
                    continue;
                };
                for (k, v) in options.iter() {
                    let scalar = matches!(
                        v.get_ref(),
                        DeValue::String(_)
                            | DeValue::Integer(_)
                            | DeValue::Float(_)
                            | DeValue::Boolean(_)
                    );
                    if !scalar {
                        let full = format!("{at}.{}", k.get_ref());
                        errors.push(wrong(v, "a string, a number or a boolean", &full));
                    }
                }
            }
        }
        _ => errors.push(wrong(value, ty.expected(), key)),
    }
}

/// A path into the document: keys and array indices.
#[derive(Clone, Copy)]
enum Seg<'a> {
    K(&'a str),
    I(usize),
}

/// Finds where a merged value came from: an environment variable, or a line of the file.
struct Locator<'a> {
    doc: Doc<'a>,
    root: &'a DeTable<'a>,
    /// Overridden dotted key (lower case, as `config` sees it) → variable name.
    env: BTreeMap<String, String>,
}

impl Locator<'_> {
    /// The position of the value at `path` (or of its key, with `key_line`).
    fn find(&self, path: &[Seg<'_>], key_line: bool) -> Position {
        let mut dotted = String::new();
        for seg in path {
            match seg {
                Seg::K(k) => {
                    if !dotted.is_empty() {
                        dotted.push('.');
                    }
                    dotted.push_str(k);
                    if let Some(var) = self.env.get(&dotted) {
                        return Position::Env { var: var.clone() };
                    }
                }
                Seg::I(_) => break,
            }
        }
        let mut offset = 0;
        let mut table = Some(self.root);
        let mut current: Option<&Spanned<DeValue<'_>>> = None;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match (seg, table, current.map(|c| c.get_ref())) {
                (Seg::K(k), Some(t), _) => {
                    t.iter()
                        .find(|(key, _)| key.get_ref() == k)
                        .map(|(key, v)| {
                            if last && key_line {
                                offset = key.span().start;
                            }
                            v
                        })
                }
                (Seg::I(n), _, Some(DeValue::Array(items))) => items.get(*n),
                _ => None,
            };
            let Some(v) = next else { break };
            if !(last && key_line) {
                offset = v.span().start;
            }
            current = Some(v);
            table = v.get_ref().as_table();
        }
        self.doc.at(offset)
    }

    fn value(&self, path: &[Seg<'_>]) -> Position {
        self.find(path, false)
    }

    fn key(&self, path: &[Seg<'_>]) -> Position {
        self.find(path, true)
    }
}

/// The policy as `config` merges it: types are already checked against the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    policy: RawMeta,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    group: Vec<RawGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    version: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    pins: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    keys: Option<String>,
    #[serde(default)]
    members: BTreeMap<String, String>,
    #[serde(default)]
    admins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    key_agreement: Option<String>,
    cipher: Option<String>,
    dh_group: Option<String>,
    provider: Option<String>,
    cipher_provider: Option<String>,
    rekey_interval: Option<String>,
    agreement_timeout: Option<String>,
    security: Option<String>,
    signature: Option<String>,
    options: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(rename = "match")]
    pattern: String,
    key_agreement: Option<String>,
    cipher: Option<String>,
    dh_group: Option<String>,
    provider: Option<String>,
    cipher_provider: Option<String>,
    rekey_interval: Option<String>,
    agreement_timeout: Option<String>,
    security: Option<String>,
    signature: Option<String>,
    options: Option<BTreeMap<String, BTreeMap<String, String>>>,
    members: Option<Vec<String>>,
}

impl RawGroup {
    fn settings(&mut self) -> RawSettings {
        RawSettings {
            key_agreement: self.key_agreement.take(),
            cipher: self.cipher.take(),
            dh_group: self.dh_group.take(),
            provider: self.provider.take(),
            cipher_provider: self.cipher_provider.take(),
            rekey_interval: self.rekey_interval.take(),
            agreement_timeout: self.agreement_timeout.take(),
            security: self.security.take(),
            signature: self.signature.take(),
            options: self.options.take(),
        }
    }
}

/// Environment overrides: checks each variable's key against the format and returns
/// the dotted keys `config` will see, with their variables.
fn check_env(
    prefix: &str,
    vars: &BTreeMap<String, String>,
    errors: &mut Vec<PolicyError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for var in vars.keys() {
        let at = Position::Env { var: var.clone() };
        let lower = var.to_lowercase();
        let key = lower
            .get(prefix.len() + 2..)
            .unwrap_or("")
            .replace("__", ".");
        let segs: Vec<&str> = key.split('.').collect();
        let err = match segs.as_slice() {
            ["plugins", "paths"] | ["trust", "keys"] => None,
            ["trust", "members", name] if !name.is_empty() => None,
            ["defaults", k] if SETTING_KEYS.contains(k) => None,
            ["group", ..] => Some(PolicyError::NotOverridable {
                at: at.clone(),
                what: "[[group]] rules".into(),
            }),
            ["policy", ..] => Some(PolicyError::NotOverridable {
                at: at.clone(),
                what: "the policy's version".into(),
            }),
            ["trust", "admins", ..] => Some(PolicyError::NotOverridable {
                at: at.clone(),
                what: "the administrators".into(),
            }),
            ["defaults", "options", ..] => Some(PolicyError::NotOverridable {
                at: at.clone(),
                what: "plugin options".into(),
            }),
            ["plugins", "pins", ..] => Some(PolicyError::NotOverridable {
                at: at.clone(),
                what: "plugin pins".into(),
            }),
            [top] if TOP_KEYS.contains(top) => Some(PolicyError::WrongType {
                at: at.clone(),
                key: (*top).to_owned(),
                table: "the top level".into(),
                expected: "a table".into(),
                found: "a string".into(),
            }),
            ["plugins", k, ..] => Some(unknown_env(&at, k, "[plugins]", &["paths", "pins"])),
            ["trust", "members", ..] => Some(PolicyError::Invalid {
                at: at.clone(),
                message: format!("expected {prefix}__TRUST__MEMBERS__NAME"),
            }),
            ["trust", k, ..] => Some(unknown_env(
                &at,
                k,
                "[trust]",
                &["keys", "members", "admins"],
            )),
            ["defaults", k, ..] => Some(unknown_env(&at, k, "[defaults]", &SETTING_KEYS)),
            [k, ..] => Some(unknown_env(&at, k, "the top level", &TOP_KEYS)),
            [] => None,
        };
        match err {
            Some(e) => errors.push(e),
            None => {
                if let Some(other) = out.get(&key) {
                    errors.push(PolicyError::Invalid {
                        at,
                        message: format!("sets the same key as {other}"),
                    });
                } else {
                    out.insert(key, var.clone());
                }
            }
        }
    }
    out
}

fn unknown_env(at: &Position, key: &str, table: &str, keys: &[&str]) -> PolicyError {
    PolicyError::UnknownKey {
        at: at.clone(),
        key: key.to_owned(),
        table: table.to_owned(),
        known: known(keys),
    }
}

/// Everything `Policy::from_*` needs.
pub(crate) struct Input<'a> {
    pub text: &'a str,
    pub file: &'a Path,
    /// Prefix and the variables to consider (only those starting with `PREFIX__`
    /// count).
    pub env: Option<(&'a str, BTreeMap<String, String>)>,
}

pub(crate) fn parse(input: Input<'_>) -> Result<Policy, PolicyErrors> {
    let doc = Doc {
        file: input.file,
        text: input.text,
    };
    let root = DeTable::parse(input.text).map_err(|e| PolicyError::Syntax {
        at: doc.at(e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let mut errors = Vec::new();
    check_schema(&doc, root.get_ref(), &mut errors);

    let (env_prefix, env_vars) = match input.env {
        Some((prefix, vars)) => {
            let pattern = format!("{}__", prefix.to_lowercase());
            let vars: BTreeMap<String, String> = vars
                .into_iter()
                .filter(|(k, _)| k.to_lowercase().starts_with(&pattern) && k.len() > pattern.len())
                .collect();
            (Some(prefix.to_owned()), vars)
        }
        None => (None, BTreeMap::new()),
    };
    let env_keys = match &env_prefix {
        Some(prefix) => check_env(prefix, &env_vars, &mut errors),
        None => BTreeMap::new(),
    };
    if !errors.is_empty() {
        return Err(PolicyErrors::sorted(errors));
    }

    let first_line = doc.at(0);
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(input.text, config::FileFormat::Toml));
    if let Some(prefix) = &env_prefix {
        // Two sources: `plugins.paths` is a comma-separated list (which `config` only
        // splits with `try_parsing`); every other value stays a string as written.
        let mut lists = config::Map::new();
        let mut strings = config::Map::new();
        for (key, var) in &env_keys {
            if let Some(value) = env_vars.get(var) {
                let into = if key == "plugins.paths" {
                    &mut lists
                } else {
                    &mut strings
                };
                into.insert(var.clone(), value.clone());
            }
        }
        for (vars, list) in [(strings, false), (lists, true)] {
            let mut source = config::Environment::with_prefix(prefix)
                .separator("__")
                .source(Some(vars));
            if list {
                source = source
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("plugins.paths");
            }
            builder = builder.add_source(source);
        }
    }
    let raw: RawPolicy = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| PolicyError::Invalid {
            at: first_line.clone(),
            message: e.to_string(),
        })?;

    let loc = Locator {
        doc,
        root: root.get_ref(),
        env: env_keys,
    };
    convert(raw, &loc, env_prefix)
}

fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn convert(
    mut raw: RawPolicy,
    loc: &Locator<'_>,
    env_prefix: Option<String>,
) -> Result<Policy, PolicyErrors> {
    use Seg::{I, K};
    let mut errors = Vec::new();
    let base = base_dir(loc.doc.file);
    // Relative to the policy file's directory; `.` components dropped.
    let resolve = |p: &str| -> PathBuf {
        let joined = base.join(p);
        let clean: PathBuf = joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if clean.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            clean
        }
    };

    // [plugins]
    let mut plugin_paths = Vec::new();
    for (i, p) in raw.plugins.paths.iter().enumerate() {
        let at = loc.value(&[K("plugins"), K("paths"), I(i)]);
        if p.is_empty() {
            errors.push(PolicyError::Empty {
                at,
                key: "paths".into(),
                table: "[plugins]".into(),
            });
        } else {
            plugin_paths.push(Located::new(resolve(p), at));
        }
    }
    let mut pins = BTreeMap::new();
    for (file, value) in &raw.plugins.pins {
        let at = loc.key(&[K("plugins"), K("pins"), K(file)]);
        match parse_pin(file, value) {
            Ok(digest) => {
                pins.insert(file.clone(), Located::new(digest, at));
            }
            Err(reason) => errors.push(PolicyError::BadPin {
                at,
                file: file.clone(),
                value: value.clone(),
                reason,
            }),
        }
    }

    // [trust]
    let mut trust = Trust::new();
    let mut trust_dir = None;
    if let Some(keys) = &raw.trust.keys {
        let at = loc.value(&[K("trust"), K("keys")]);
        if keys.is_empty() {
            errors.push(PolicyError::Empty {
                at,
                key: "keys".into(),
                table: "[trust]".into(),
            });
        } else {
            let dir = resolve(keys);
            let (t, errs) = Trust::load_dir_partial(&dir);
            trust = t;
            errors.extend(errs.into_iter().map(|e| match e {
                PolicyError::MissingTrustDir { path, reason, .. } => PolicyError::MissingTrustDir {
                    at: at.clone(),
                    path,
                    reason,
                },
                PolicyError::InsecureTrust {
                    at: Position::BuiltIn,
                    path,
                    reason,
                } => PolicyError::InsecureTrust {
                    at: at.clone(),
                    path,
                    reason,
                },
                other => other,
            }));
            trust_dir = Some(Located::new(dir, at));
        }
    }
    for (name, key) in &raw.trust.members {
        let key_at = loc.key(&[K("trust"), K("members"), K(name)]);
        if let Err(reason) = check_identity(name) {
            errors.push(PolicyError::BadIdentity {
                at: key_at,
                name: name.clone(),
                reason,
            });
            continue;
        }
        let at = loc.value(&[K("trust"), K("members"), K(name)]);
        match PublicKey::parse(key) {
            Ok(k) => {
                if let Err(e) = trust.insert(name, k, at) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(PolicyError::BadPublicKey {
                at,
                identity: name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    let mut admins = Vec::new();
    for (i, name) in raw.trust.admins.iter().enumerate() {
        let at = loc.value(&[K("trust"), K("admins"), I(i)]);
        if let Err(reason) = check_identity(name) {
            errors.push(PolicyError::BadIdentity {
                at,
                name: name.clone(),
                reason,
            });
        } else if !trust.contains(name) {
            errors.push(PolicyError::UnknownAdmin {
                at,
                name: name.clone(),
                known: trust.names().map(str::to_owned).collect(),
            });
        } else if !admins.iter().any(|a: &Located<String>| &a.value == name) {
            admins.push(Located::new(name.clone(), at));
        }
    }
    let version = raw.policy.version.map(|v| {
        Located::new(
            u64::try_from(v).unwrap_or_default(),
            loc.value(&[K("policy"), K("version")]),
        )
    });

    // [defaults]
    let defaults = settings(
        std::mem::take(&mut raw.defaults),
        "[defaults]",
        &|k| loc.value(&[K("defaults"), K(k)]),
        &|p| loc.value(&[K("defaults"), K("options"), K(p)]),
        &mut errors,
    );

    // [[group]]
    let mut groups = Vec::new();
    for (i, mut g) in std::mem::take(&mut raw.group).into_iter().enumerate() {
        let table = format!("[[group]] #{}", i + 1);
        let pattern_at = loc.value(&[K("group"), I(i), K("match")]);
        let glob = match glob::Pattern::new(&g.pattern) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(PolicyError::BadGlob {
                    at: pattern_at.clone(),
                    value: g.pattern.clone(),
                    reason: e.to_string(),
                });
                None
            }
        };
        let s = settings(
            g.settings(),
            &table,
            &|k| loc.value(&[K("group"), I(i), K(k)]),
            &|p| loc.value(&[K("group"), I(i), K("options"), K(p)]),
            &mut errors,
        );
        let members = g.members.take().map(|names| {
            names
                .into_iter()
                .enumerate()
                .filter_map(|(j, name)| {
                    let at = loc.value(&[K("group"), I(i), K("members"), I(j)]);
                    match check_identity(&name) {
                        Ok(()) => Some(Located::new(name, at)),
                        Err(reason) => {
                            errors.push(PolicyError::BadIdentity { at, name, reason });
                            None
                        }
                    }
                })
                .collect()
        });
        if let Some(glob) = glob {
            groups.push(GroupRule {
                index: i + 1,
                pattern: Located::new(g.pattern, pattern_at),
                glob,
                settings: s,
                members,
            });
        }
    }

    if !errors.is_empty() {
        return Err(PolicyErrors::sorted(errors));
    }
    Ok(Policy {
        file: loc.doc.file.to_path_buf(),
        env_prefix,
        version,
        admins,
        plugin_paths,
        pins,
        trust_dir,
        trust: Arc::new(trust),
        defaults,
        groups,
    })
}

/// `sha256:` and 64 hex digits; the file name must be a plain name.
fn parse_pin(file: &str, value: &str) -> Result<[u8; 32], String> {
    if file.is_empty() || file.contains('/') {
        return Err("the key must be a plugin's file name, without directories".into());
    }
    let hex_part = value
        .strip_prefix("sha256:")
        .ok_or_else(|| "it must be \"sha256:\" followed by 64 hex digits".to_owned())?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest)
        .map_err(|_| "it must be \"sha256:\" followed by 64 hex digits".to_owned())?;
    Ok(digest)
}

fn settings(
    raw: RawSettings,
    table: &str,
    at: &dyn Fn(&str) -> Position,
    at_options: &dyn Fn(&str) -> Position,
    errors: &mut Vec<PolicyError>,
) -> Settings {
    let mut name = |key: &str, v: Option<String>| -> Option<Located<String>> {
        let v = v?;
        let pos = at(key);
        if v.trim().is_empty() {
            errors.push(PolicyError::Empty {
                at: pos,
                key: key.into(),
                table: table.into(),
            });
            return None;
        }
        Some(Located::new(v, pos))
    };
    let key_agreement = name("key_agreement", raw.key_agreement);
    let cipher = name("cipher", raw.cipher);
    let dh_group = name("dh_group", raw.dh_group);
    let provider = name("provider", raw.provider);
    let cipher_provider = name("cipher_provider", raw.cipher_provider);
    let signature = name("signature", raw.signature);
    let rekey_interval = raw.rekey_interval.and_then(|v| {
        let pos = at("rekey_interval");
        match parse_interval(&v) {
            Ok(d) => Some(Located::new(d, pos)),
            Err(reason) => {
                errors.push(PolicyError::BadDuration {
                    at: pos,
                    value: v,
                    reason,
                });
                None
            }
        }
    });
    let agreement_timeout = raw.agreement_timeout.and_then(|v| {
        let pos = at("agreement_timeout");
        match parse_timeout(&v) {
            Ok(d) => Some(Located::new(d, pos)),
            Err(reason) => {
                errors.push(PolicyError::BadAgreementTimeout {
                    at: pos,
                    value: v,
                    reason,
                });
                None
            }
        }
    });
    let security = raw.security.and_then(|v| {
        let pos = at("security");
        match v.as_str() {
            "required" => Some(Located::new(Security::Required, pos)),
            "none" => Some(Located::new(Security::None, pos)),
            _ => {
                errors.push(PolicyError::BadSecurity { at: pos, value: v });
                None
            }
        }
    });
    let options = raw
        .options
        .unwrap_or_default()
        .into_iter()
        .map(|(plugin, entries)| {
            let at = at_options(&plugin);
            (plugin, Located::new(entries.into_iter().collect(), at))
        })
        .collect();
    Settings {
        key_agreement,
        cipher,
        dh_group,
        provider,
        cipher_provider,
        rekey_interval,
        agreement_timeout,
        security,
        signature,
        options,
    }
}

fn parse_interval(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("it is zero".into());
    }
    Ok(d)
}

/// A positive duration, at most [`MAX_AGREEMENT_TIMEOUT`].
fn parse_timeout(v: &str) -> Result<Duration, String> {
    let d = parse_interval(v)?;
    if d > MAX_AGREEMENT_TIMEOUT {
        return Err(format!(
            "it is longer than {}",
            humantime::format_duration(MAX_AGREEMENT_TIMEOUT)
        ));
    }
    Ok(d)
}
