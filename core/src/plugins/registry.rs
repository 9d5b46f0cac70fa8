//! The registry of loaded plugins, and the loader of shared libraries.

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
};

use abi_stable::library::{LibraryError, lib_header_from_path};
use conclave_plugin_sdk::api::{
    ABI_VERSION, ABI_VERSION_MAJOR, ABI_VERSION_MINOR, BuiltinPlugin, Options, PluginKind,
    PluginMetadata, PluginModuleRef, ProviderConfig, cipher::CipherConfig,
    key_agreement::KeyAgreementConfig,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use conclave_policy::files::{self, FileError};

use super::error::LoadError;
use crate::{Cipher, KeyAgreement, Provider};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the host.
    BuiltIn,
    /// Loaded from a shared library.
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A SHA-256 pin for a plugin file, written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Pin(pub [u8; 32]);

impl FromStr for Sha256Pin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("pin {s:?} must start with \"sha256:\""))?;
        let bytes = hex::decode(hex_part).map_err(|e| format!("pin {s:?}: {e}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("pin {s:?}: a SHA-256 digest has 64 hex digits"))?;
        Ok(Sha256Pin(arr))
    }
}

impl fmt::Display for Sha256Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One algorithm a plugin offers, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlgorithmInfo {
    /// Its class (`dh-group`, `aead`, `cipher`, ...).
    pub class: &'static str,
    /// Its name.
    pub name: String,
}

/// A plugin's metadata, in plain Rust types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Unique name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Its kind (`provider`, `cipher`, `key-agreement`).
    pub kind: &'static str,
    /// The ABI version it was built against.
    pub abi_version: String,
    /// One line of description.
    pub description: String,
    /// `built-in` or the library's path.
    pub origin: String,
    /// The library's SHA-256 (`sha256:...`), for pinning; none for built-ins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The algorithms it offers.
    pub algorithms: Vec<AlgorithmInfo>,
}

/// A plugin in the registry.
#[derive(Clone)]
pub struct LoadedPlugin {
    info: PluginInfo,
    kind: PluginKind,
    origin: Origin,
    module: PluginModuleRef,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Its metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Its kind.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Its root module.
    pub fn module(&self) -> PluginModuleRef {
        self.module
    }

    /// Whether it offers `algorithm` (of any class).
    pub fn offers(&self, algorithm: &str) -> bool {
        self.info.algorithms.iter().any(|a| a.name == algorithm)
    }

    fn expect_kind(&self, kind: PluginKind) -> Result<(), LoadError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(LoadError::WrongKind {
                name: self.info.name.clone(),
                expected: kind.as_str(),
                actual: self.kind.as_str(),
            })
        }
    }

    /// A new instance of this provider plugin.
    pub fn new_provider(&self, options: Options) -> Result<Provider, LoadError> {
        self.expect_kind(PluginKind::Provider)?;
        let ctor = self
            .module
            .new_provider()
            .ok_or_else(|| self.missing_ctor())?;
        ctor(&ProviderConfig { options })
            .into_result()
            .map(Provider::from_abi)
            .map_err(|source| self.instantiate_error(source))
    }

    /// A new instance of this cipher plugin.
    pub fn new_cipher(&self, config: &CipherConfig) -> Result<Cipher, LoadError> {
        self.expect_kind(PluginKind::Cipher)?;
        let ctor = self
            .module
            .new_cipher()
            .ok_or_else(|| self.missing_ctor())?;
        ctor(config)
            .into_result()
            .map(Cipher::from_abi)
            .map_err(|source| self.instantiate_error(source))
    }

    /// A new instance of this key-agreement plugin.
    pub fn new_key_agreement(
        &self,
        config: &KeyAgreementConfig,
    ) -> Result<KeyAgreement, LoadError> {
        self.expect_kind(PluginKind::KeyAgreement)?;
        let ctor = self
            .module
            .new_key_agreement()
            .ok_or_else(|| self.missing_ctor())?;
        ctor(config)
            .into_result()
            .map(KeyAgreement::from_abi)
            .map_err(|source| self.instantiate_error(source))
    }

    /// Asks the plugin whether it accepts `options` (from the policy). A plugin built
    /// for ABI 1.0 cannot say: options for it are refused rather than passed unchecked.
    pub fn check_options(&self, options: &Options) -> Result<(), crate::PluginError> {
        match self.module.check_options().flatten() {
            Some(check) => check(options).into_result(),
            None if options.entries.is_empty() => Ok(()),
            None => Err(crate::PluginError::new(
                crate::ErrorCode::BAD_CONFIG,
                format!(
                    "{} was built for ABI {}, which cannot check options; rebuild it with this SDK to give it options",
                    self.info.name, self.info.abi_version
                ),
            )),
        }
    }

    fn missing_ctor(&self) -> LoadError {
        LoadError::BadMetadata {
            origin: self.origin.to_string(),
            reason: format!("{} plugin exports no constructor", self.kind.as_str()),
        }
    }

    fn instantiate_error(&self, source: crate::PluginError) -> LoadError {
        LoadError::Instantiate {
            name: self.info.name.clone(),
            source,
        }
    }
}

/// The outcome of one candidate file of [`Registry::load_dir`].
pub type DirEntryResult = (PathBuf, Result<PluginInfo, LoadError>);

/// The loaded plugins, by unique name.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<LoadedPlugin>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding every built-in plugin linked into this program.
    pub fn with_builtins() -> Result<Self, LoadError> {
        let mut r = Self::new();
        r.register_builtins()?;
        Ok(r)
    }

    /// Registers every built-in plugin linked into this program; returns how many.
    pub fn register_builtins(&mut self) -> Result<usize, LoadError> {
        let mut n = 0;
        let mut builtins: Vec<&BuiltinPlugin> = inventory::iter::<BuiltinPlugin>().collect();
        // inventory's order depends on link order; make listings stable.
        builtins.sort_by_key(|b| (b.module)().metadata()().name.to_string());
        for b in builtins {
            let plugin = from_module((b.module)(), Origin::BuiltIn, None)?;
            self.insert(plugin)?;
            n += 1;
        }
        Ok(n)
    }

    /// Keeps only the plugins for which `keep` holds (a deployment that withholds some
    /// built-in plugins from its policies).
    pub fn retain(&mut self, keep: impl FnMut(&LoadedPlugin) -> bool) {
        self.plugins.retain(keep);
    }

    /// Loads one shared library, checking `pin` if given, and registers it.
    pub fn load_file(
        &mut self,
        path: &Path,
        pin: Option<&Sha256Pin>,
    ) -> Result<&LoadedPlugin, LoadError> {
        let loaded = inspect(path, pin).and_then(|plugin| self.insert(plugin));
        if let Err(e) = &loaded {
            metrics::counter!("conclave_plugin_load_refusals_total", "reason" => e.kind())
                .increment(1);
        }
        loaded
    }

    /// Loads every shared library (`*.so` on Linux) of a directory, with the pins given
    /// by file name. One file's failure does not stop the others: the result has one
    /// entry per candidate file. Fails as a whole only if the directory is unreadable.
    pub fn load_dir(
        &mut self,
        dir: &Path,
        pins: &BTreeMap<String, Sha256Pin>,
    ) -> Result<Vec<DirEntryResult>, LoadError> {
        // The directory is checked as each file's path will be: a directory that
        // someone else could change is refused as a whole.
        files::check_dir(dir).map_err(file_error)?;
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
        // Every `*.so` but directories: a FIFO or a device so named is refused by
        // `load_file` without being opened for reading.
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
                    && !p.is_dir()
            })
            .collect();
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for path in files {
            let pin = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| pins.get(n));
            let result = self.load_file(&path, pin).map(|p| p.info().clone());
            if let Err(e) = &result {
                // The caller reports it; logged here only for debugging.
                tracing::debug!(error = %e, "plugin refused");
            }
            out.push((path, result));
        }
        Ok(out)
    }

    fn insert(&mut self, plugin: LoadedPlugin) -> Result<&LoadedPlugin, LoadError> {
        if let Some(existing) = self.get(plugin.name()) {
            return Err(LoadError::DuplicateName {
                name: plugin.info.name.clone(),
                first: existing.origin.to_string(),
                second: plugin.origin.to_string(),
            });
        }
        tracing::debug!(name = %plugin.info.name, origin = %plugin.origin, "plugin registered");
        self.plugins.push(plugin);
        Ok(self
            .plugins
            .last()
            .unwrap_or_else(|| unreachable!("just pushed")))
    }

    /// Every registered plugin, in registration order.
    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The plugin named `name`, which must be of `kind`.
    pub fn get_kind(&self, name: &str, kind: PluginKind) -> Result<&LoadedPlugin, LoadError> {
        let plugin = self.get(name).ok_or_else(|| LoadError::UnknownPlugin {
            name: name.to_string(),
            known: self
                .plugins
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.info.name.clone())
                .collect(),
        })?;
        plugin.expect_kind(kind)?;
        Ok(plugin)
    }

    /// The plugins of `kind` that offer `algorithm`.
    pub fn offering(&self, kind: PluginKind, algorithm: &str) -> Vec<&LoadedPlugin> {
        self.plugins
            .iter()
            .filter(|p| p.kind == kind && p.offers(algorithm))
            .collect()
    }

    /// A new instance of the provider plugin `name`.
    pub fn new_provider(&self, name: &str, options: Options) -> Result<Provider, LoadError> {
        self.get_kind(name, PluginKind::Provider)?
            .new_provider(options)
    }
}

fn io_error(path: &Path, e: io::Error) -> LoadError {
    if e.kind() == io::ErrorKind::NotFound {
        LoadError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        LoadError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// The largest plugin file read (a plugin is a few MiB; the bound keeps a hostile
/// "library" of any size from being read into memory).
pub const MAX_PLUGIN_FILE: u64 = 256 << 20;

fn file_error(e: FileError) -> LoadError {
    match e {
        FileError::NotFound { path } => LoadError::NotFound { path },
        FileError::Io { path, source } => LoadError::Io { path, source },
        FileError::NotRegular { path, kind } => LoadError::NotAFile { path, kind },
        other => LoadError::UnsafeFile(other),
    }
}

/// Loads and checks one shared library without registering it (for `plugins inspect`).
///
/// Before anything of the file runs: its path is checked as OpenSSH's `StrictModes`
/// does ([`conclave_policy::files`]: every directory, link and the file owned by root
/// or this user and not writable by group or others; a regular file within
/// `MAX_PLUGIN_FILE`, 256 MiB), it is read once, hashed while it streams and checked against
/// the pin, and parsed as an ELF shared library for this machine that exports
/// Conclave's root module. Only then is it handed to the dynamic loader (whose
/// constructors run code), by its real path, and the file loaded must still be the
/// file checked.
pub fn inspect(path: &Path, pin: Option<&Sha256Pin>) -> Result<LoadedPlugin, LoadError> {
    let mut hasher = Sha256::new();
    let (real, file, bytes) =
        files::read_checked(path, MAX_PLUGIN_FILE, |chunk| hasher.update(chunk))
            .map_err(file_error)?;
    let digest: [u8; 32] = hasher.finalize().into();
    if let Some(pin) = pin
        && pin.0 != digest
    {
        return Err(LoadError::PinMismatch {
            path: path.to_path_buf(),
            expected: hex::encode(pin.0),
            actual: hex::encode(digest),
        });
    }
    check_object(path, &bytes)?;
    drop(bytes);
    // The dynamic loader opens the file by name (glibc identifies loaded objects by
    // name, so a descriptor path such as /proc/self/fd/N would alias other libraries).
    // No one but root and this user can change the path; make sure the name still
    // denotes the file checked once it is loaded.
    let checked = file_identity(&file.metadata().map_err(|e| io_error(path, e))?);
    let header = lib_header_from_path(&real).map_err(|e| library_error(path, e))?;
    let loaded = file_identity(&std::fs::metadata(&real).map_err(|e| io_error(path, e))?);
    if loaded != checked {
        return Err(LoadError::Io {
            path: path.to_path_buf(),
            source: io::Error::other("the file was replaced while it was being loaded"),
        });
    }
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|e| library_error(path, e))?;
    from_module(
        module,
        Origin::Library(path.to_path_buf()),
        Some(format!("sha256:{}", hex::encode(digest))),
    )
}

/// Identity of an open file, to detect a replacement between check and load.
fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Checks that `bytes` is a complete shared library for this machine before the dynamic
/// loader maps it: a truncated file would otherwise be mapped past its end and crash
/// the process with SIGBUS on first access, instead of failing to load.
fn check_object(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    use object::{Architecture, Object, ObjectKind, ObjectSegment, ObjectSymbol};
    let invalid = |reason: String| LoadError::InvalidLibrary {
        path: path.to_path_buf(),
        reason,
    };
    let file =
        object::File::parse(bytes).map_err(|e| invalid(format!("unreadable object file: {e}")))?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(invalid(format!(
            "not a shared library ({:?} object)",
            file.kind()
        )));
    }
    let host = match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Aarch64),
        "x86" => Some(Architecture::I386),
        "arm" => Some(Architecture::Arm),
        "riscv64" => Some(Architecture::Riscv64),
        _ => None,
    };
    if let Some(host) = host
        && file.architecture() != host
    {
        return Err(invalid(format!(
            "built for {:?}, this machine is {:?}",
            file.architecture(),
            host
        )));
    }
    // A library that does not export Conclave's root module is refused here, before
    // the dynamic loader would run its constructors.
    let root = abi_stable::library::ROOT_MODULE_LOADER_NAME.as_bytes();
    let exported = file
        .dynamic_symbols()
        .any(|sym| sym.is_definition() && sym.name_bytes().is_ok_and(|n| n == root));
    if !exported {
        return Err(LoadError::NotAPlugin {
            path: path.to_path_buf(),
            reason: "the library exports no Conclave root module \
                     (build it with conclave_plugin_sdk::export_plugin!)"
                .into(),
        });
    }
    let len = bytes.len() as u64;
    for (i, segment) in file.segments().enumerate() {
        let (offset, size) = segment.file_range();
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(invalid(format!(
                "segment {i} ({size} bytes at offset {offset}) extends past the end of the \
                 {len}-byte file: truncated?"
            )));
        }
    }
    Ok(())
}

fn library_error(path: &Path, e: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => LoadError::InvalidLibrary {
            path,
            reason: err.to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path,
            reason: "the library exports no Conclave root module \
                     (build it with conclave_plugin_sdk::export_plugin!)"
                .into(),
        },
        LibraryError::IncompatibleVersionNumber {
            actual_version,
            expected_version,
            ..
        } => LoadError::IncompatibleVersion {
            path,
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
        },
        LibraryError::ParseVersionError(e) => LoadError::IncompatibleVersion {
            path,
            plugin: format!("unparsable ({e})"),
            host: ABI_VERSION.to_string(),
        },
        LibraryError::RootModule { err, .. } => LoadError::NotAPlugin {
            path,
            reason: format!(
                "its root module failed to initialize: {}",
                one_line(&err.to_string())
            ),
        },
        LibraryError::InvalidAbiHeader(h) => LoadError::AbiMismatch {
            path,
            reason: format!("built with an incompatible abi_stable ({h:?})"),
        },
        other => {
            let full = other.to_string();
            tracing::debug!(path = %path.display(), report = %full, "abi_stable's full layout report");
            LoadError::AbiMismatch {
                path,
                reason: one_line(&full),
            }
        }
    }
}

/// The line of an abi_stable report (a hundred lines and more of type layouts) that a
/// person needs: its last `Error:` with what was expected and what was found, e.g.
/// `mismatched type: expected PluginModule, found Module`.
fn one_line(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // "Label: value" or "Label:" with the value on the next line.
    let value_after = |i: usize, label: &str| -> Option<String> {
        let rest = lines.get(i)?.strip_prefix(label)?.trim();
        if rest.is_empty() {
            lines.get(i + 1).map(|v| v.to_string())
        } else {
            Some(rest.to_string())
        }
    };
    let summary = match lines.iter().rposition(|l| l.starts_with("Error:")) {
        Some(i) => {
            let mut s = value_after(i, "Error:").unwrap_or_default();
            let find = |label: &str| {
                (i + 1..lines.len())
                    .find(|&j| lines[j].starts_with(label))
                    .and_then(|j| value_after(j, label))
            };
            if let Some(expected) = find("Expected:") {
                s.push_str(&format!(": expected {expected}"));
            }
            if let Some(found) = find("Found:") {
                s.push_str(&format!(", found {found}"));
            }
            s
        }
        None => lines.first().copied().unwrap_or("").to_string(),
    };
    let mut out: String = summary.chars().take(300).collect();
    if summary.chars().count() > 300 {
        out.push('…');
    }
    if lines.len() > 1 {
        out.push_str(" (the full layout report with --log debug)");
    }
    out
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn from_module(
    module: PluginModuleRef,
    origin: Origin,
    sha256: Option<String>,
) -> Result<LoadedPlugin, LoadError> {
    let meta: PluginMetadata = module.metadata()();
    let bad = |reason: String| LoadError::BadMetadata {
        origin: origin.to_string(),
        reason,
    };
    let abi = meta.abi_version.to_string();
    let mut parts = abi.split('.').map(|p| p.parse::<u32>());
    let (major, minor) = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => return Err(bad(format!("unparsable ABI version {abi:?}"))),
    };
    if major != ABI_VERSION_MAJOR || minor > ABI_VERSION_MINOR {
        return Err(LoadError::IncompatibleVersion {
            path: match &origin {
                Origin::Library(p) => p.clone(),
                Origin::BuiltIn => PathBuf::from("built-in"),
            },
            plugin: abi,
            host: ABI_VERSION.to_string(),
        });
    }
    let name = meta.name.to_string();
    if !valid_name(&name) {
        return Err(bad(format!(
            "name {name:?} must be 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )));
    }
    let has_ctor = match meta.kind {
        PluginKind::Provider => module.new_provider().is_some(),
        PluginKind::Cipher => module.new_cipher().is_some(),
        PluginKind::KeyAgreement => module.new_key_agreement().is_some(),
    };
    if !has_ctor {
        return Err(bad(format!(
            "{} plugin {name:?} exports no {} constructor",
            meta.kind.as_str(),
            meta.kind.as_str()
        )));
    }
    let info = PluginInfo {
        name,
        version: meta.version.to_string(),
        kind: meta.kind.as_str(),
        abi_version: abi,
        description: meta.description.to_string(),
        origin: origin.to_string(),
        sha256,
        algorithms: meta
            .algorithms
            .iter()
            .map(|a| AlgorithmInfo {
                class: a.class.as_str(),
                name: a.name.to_string(),
            })
            .collect(),
    };
    Ok(LoadedPlugin {
        info,
        kind: meta.kind,
        origin,
        module,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_print() {
        let s = format!("sha256:{}", "ab".repeat(32));
        let pin: Sha256Pin = s.parse().unwrap();
        assert_eq!(pin.to_string(), s);
        assert!("md5:00".parse::<Sha256Pin>().is_err());
        assert!("sha256:abcd".parse::<Sha256Pin>().is_err());
        assert!(
            format!("sha256:{}", "zz".repeat(32))
                .parse::<Sha256Pin>()
                .is_err()
        );
    }

    #[test]
    fn a_layout_report_comes_down_to_its_error() {
        let report = "Layout of expected type:\n  --- Type Layout ---\n  type:PluginModule\nLayout of found type:\n  type:Module\nError:mismatched type\nExpected:\n    PluginModule\nFound:\n    Module\n";
        assert_eq!(
            one_line(report),
            "mismatched type: expected PluginModule, found Module (the full layout report with --log debug)"
        );
        assert_eq!(
            one_line("fields:\nError: unexpected field\nExpected: options\nFound: provider"),
            "unexpected field: expected options, found provider (the full layout report with --log debug)"
        );
        assert_eq!(one_line("one line"), "one line");
    }

    #[test]
    fn plugin_names_are_restricted() {
        assert!(valid_name("aes-gcm"));
        assert!(valid_name("acme.cipher_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
