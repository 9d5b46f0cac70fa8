//! links the built-in plugins
