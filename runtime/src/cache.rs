//! The on-disk cache of compiled components.
//!
//! Compiling a large component (a 12 MB Python one) takes about a minute; loading its compiled
//! form takes milliseconds. Entries are keyed by the component's sha256 and a hash of the engine's
//! configuration and wasmtime version, so a changed configuration never loads stale code.
//! Deserializing is `unsafe` (the bytes become executable code), so only files this cache wrote
//! into its own directory are ever loaded, and each is written to a temporary name and renamed
//! into place so a crash never leaves a half-written entry under a real name.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// Where a component came from on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadSource {
    /// Compiled now (and stored in the cache, when there is one).
    Compiled,
    /// Loaded from the compiled-component cache.
    Cache,
}

impl CompileCache {
    /// Uses (creating) `dir` for entries compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(CompileCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component with this digest, if present and loadable.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry(digest);
        // Read into memory rather than `deserialize_file`, which maps the file: a mapped file
        // that someone truncates or rewrites in place kills the process with SIGBUS.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file is in the cache's own directory and named by a digest and engine key
        // that only `store` writes; it was produced by `Component::serialize` of this engine
        // configuration. wasmtime checks its header and version, so a corrupt or foreign file
        // fails to deserialize and is recompiled.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failing to write the cache is logged, not fatal.
    pub fn store(&self, digest: &str, component: &Component) {
        let result = (|| -> anyhow::Result<()> {
            let bytes = component.serialize()?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(self.entry(digest))?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the compile cache");
        }
    }
}
