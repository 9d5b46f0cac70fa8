//! Plugin loading and registry.
//!
//! Built-in plugins register with `inventory` (see `conclave_plugin_sdk::builtin_plugin!`)
//! and are read through the same [`PluginModuleRef`] root module as shared libraries, so
//! both take one code path. Shared libraries are loaded one file at a time with
//! abi_stable's `lib_header_from_path(..).init_root_module()`: several libraries with the
//! same root-module type coexist (abi_stable's `load_from_directory` would cache only one).
//!
//! Before a library is opened the loader checks, in order: that the file exists and is a
//! regular file; that neither it nor its directory is writable by group or others; that
//! its SHA-256 equals the pin, when one is given. The library is then opened by its
//! canonical path, and the loader checks that the path still denotes the file it checked
//! (same device and inode). abi_stable then checks the layout of every type
//! reachable from the root module, and the loader checks the plugin's ABI version and
//! metadata. Each failure is a [`LoadError`] naming the file and the reason.
//!
//! Libraries are never unloaded (abi_stable keeps them for the life of the process).

mod error;
mod registry;

pub use error::LoadError;
pub use registry::{
    AlgorithmInfo, DirEntryResult, LoadedPlugin, Origin, PluginInfo, Registry, Sha256Pin, inspect,
};

pub use conclave_plugin_sdk::api::PluginModuleRef;
