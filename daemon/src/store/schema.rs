//! Bottom layer, store: the schema version of the trees and the migrations that run at open.

use super::{Result, Store, StoreError};

/// Bumped when the layout of the trees changes; migrations run at open.
pub const SCHEMA_VERSION: u32 = 1;

/// Trees that earlier versions wrote and nothing reads: removed at open. Removing one is no
/// change of layout (an older flotillad finds it empty and carries on).
const RETIRED_TREES: &[&str] = &["log_offsets"];

impl Store {
    pub(super) fn migrate(&self) -> Result<()> {
        let found = match self.meta.get("schema_version")? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0),
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for tree in RETIRED_TREES {
            self.db.drop_tree(tree)?;
        }
        // Version 0 is an empty store; there is nothing older to migrate from yet.
        if found < SCHEMA_VERSION {
            self.meta
                .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
            self.db.flush()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .meta
            .get("schema_version")?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }
}
