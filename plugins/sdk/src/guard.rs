//! Catching panics at the plugin boundary.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::{AtomicBool, Ordering},
};

use conclave_plugin_api::{ErrorCode, PluginError, PluginResult};

/// Runs `f`, turning a panic into an [`ErrorCode::PANIC`] error.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> PluginResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => Err(panic_error(payload.as_ref())).into(),
    }
}

/// The error that reports a caught panic, with the panic's message.
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> PluginError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    PluginError::new(ErrorCode::PANIC, format!("plugin panicked: {text}"))
}

/// An object that refuses further use after one of its calls panicked: its state may be
/// half-updated, so continuing could break an invariant (reuse a nonce, say).
#[derive(Debug)]
pub struct Poisonable<T> {
    inner: T,
    poisoned: AtomicBool,
}

impl<T> Poisonable<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            poisoned: AtomicBool::new(false),
        }
    }

    fn poisoned_error() -> PluginError {
        PluginError::new(
            ErrorCode::POISONED,
            "object unusable: an earlier call panicked",
        )
    }

    /// Calls `f` on the shared object, catching panics.
    pub fn call<R>(&self, f: impl FnOnce(&T) -> Result<R, PluginError>) -> PluginResult<R> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Self::poisoned_error()).into();
        }
        match catch_unwind(AssertUnwindSafe(|| f(&self.inner))) {
            Ok(r) => r.into(),
            Err(payload) => {
                self.poisoned.store(true, Ordering::Release);
                Err(panic_error(payload.as_ref())).into()
            }
        }
    }

    /// Calls `f` on the object mutably, catching panics.
    pub fn call_mut<R>(
        &mut self,
        f: impl FnOnce(&mut T) -> Result<R, PluginError>,
    ) -> PluginResult<R> {
        if *self.poisoned.get_mut() {
            return Err(Self::poisoned_error()).into();
        }
        let inner = &mut self.inner;
        match catch_unwind(AssertUnwindSafe(|| f(inner))) {
            Ok(r) => r.into(),
            Err(payload) => {
                *self.poisoned.get_mut() = true;
                Err(panic_error(payload.as_ref())).into()
            }
        }
    }

    /// Calls an infallible accessor, returning `fallback` if it panics or the object is
    /// poisoned.
    pub fn get<R>(&self, fallback: R, f: impl FnOnce(&T) -> R) -> R {
        if self.poisoned.load(Ordering::Acquire) {
            return fallback;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&self.inner))) {
            Ok(r) => r,
            Err(_) => {
                self.poisoned.store(true, Ordering::Release);
                fallback
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_error_and_poisons() {
        let mut p = Poisonable::new(0u32);
        let r = p.call_mut(|_| -> Result<(), PluginError> { panic!("boom") });
        let e = r.into_result().unwrap_err();
        assert_eq!(e.code, ErrorCode::PANIC);
        assert!(e.message().contains("boom"));
        let e = p.call(|v| Ok(*v)).into_result().unwrap_err();
        assert_eq!(e.code, ErrorCode::POISONED);
        assert_eq!(p.get(7, |v| *v), 7);
    }

    #[test]
    fn guard_passes_results_through() {
        assert_eq!(guard(|| Ok(3)).into_result().unwrap(), 3);
        let e = guard::<()>(|| Err(PluginError::invalid_argument("x")))
            .into_result()
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::INVALID_ARGUMENT);
    }
}
