//! plugin SDK
