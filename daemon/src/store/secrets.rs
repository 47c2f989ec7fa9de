//! Bottom layer, store: the daemon's secrets, by name. Values arrive sealed with the daemon's
//! key ([`crate::sealing`]); this tree never holds a value in clear.

use super::{decode, encode, Result, Store};
use flotilla_protocol::model::Secret;

impl Store {
    // ---- secrets ----

    pub fn get_secret(&self, name: &str) -> Result<Option<Secret>> {
        match self.secrets.get(name.as_bytes())? {
            Some(v) => Ok(Some(decode("secrets", &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_secret(&self, secret: &Secret) -> Result<()> {
        self.writing(|| {
            self.secrets
                .insert(secret.name.as_bytes(), encode(secret))?;
            Ok(())
        })
    }

    /// Removes a secret; `false` when there was none of that name.
    pub fn delete_secret(&self, name: &str) -> Result<bool> {
        self.writing(|| Ok(self.secrets.remove(name.as_bytes())?.is_some()))
    }

    /// Every secret, by name.
    pub fn list_secrets(&self) -> Result<Vec<Secret>> {
        self.secrets
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("secrets", &v)
            })
            .collect()
    }
}
