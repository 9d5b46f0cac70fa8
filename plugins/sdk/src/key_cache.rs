//! Public keys parsed once: a provider that verifies many messages under the same few
//! keys (every member of a group under each member's identity key) keeps each key in
//! its parsed and validated form, by its encoding, instead of decoding and checking the
//! point (or the DER) at every verification.

use std::collections::HashMap;
use std::sync::Mutex;

use conclave_plugin_api::PluginError;

/// Parsed public keys by their encoding, at most `capacity` of them: when full it is
/// emptied and filled again (a key costs one parse to come back). Only keys that parsed
/// and passed validation are kept, so a bad key is refused each time with its error.
#[derive(Debug)]
pub struct ParsedKeys<V> {
    keys: Mutex<HashMap<Vec<u8>, V>>,
    capacity: usize,
}

impl<V: Clone> ParsedKeys<V> {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The parsed form of `encoding`: from the cache, or from `parse` (outside the lock)
    /// and then cached if it succeeds.
    pub fn get_or_parse(
        &self,
        encoding: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<V, PluginError>,
    ) -> Result<V, PluginError> {
        // A poisoned lock only means a panic elsewhere while inserting: the map is whole.
        if let Some(v) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(encoding)
        {
            return Ok(v.clone());
        }
        let v = parse(encoding)?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(encoding.to_vec(), v.clone());
        Ok(v)
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Clone> Default for ParsedKeys<V> {
    /// A cache of 4,096 keys.
    fn default() -> Self {
        Self::new(4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_plugin_api::ErrorCode;

    #[test]
    fn parses_each_key_once_and_never_caches_a_refusal() {
        let cache = ParsedKeys::new(2);
        let parses = std::cell::Cell::new(0);
        let parse = |b: &[u8]| {
            parses.set(parses.get() + 1);
            if b == b"bad" {
                Err(PluginError::new(ErrorCode::INVALID_KEY, "bad key"))
            } else {
                Ok(b.len())
            }
        };
        assert_eq!(cache.get_or_parse(b"ab", parse).unwrap(), 2);
        assert_eq!(cache.get_or_parse(b"ab", parse).unwrap(), 2);
        assert_eq!(parses.get(), 1);
        for _ in 0..2 {
            let e = cache.get_or_parse(b"bad", parse).unwrap_err();
            assert_eq!(e.code, ErrorCode::INVALID_KEY);
        }
        assert_eq!(parses.get(), 3);
        assert_eq!(cache.len(), 1);
        // Full at two: the third key empties it first.
        cache.get_or_parse(b"abc", parse).unwrap();
        cache.get_or_parse(b"abcd", parse).unwrap();
        assert_eq!(cache.len(), 1);
        cache.get_or_parse(b"ab", parse).unwrap();
        assert_eq!(parses.get(), 6);
    }
}
