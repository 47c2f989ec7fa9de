//! Bottom layer, store: users and their key pairs, by uid.

use super::{decode, encode, Result, Store};
use flotilla_protocol::model::User;

impl Store {
    // ---- users ----

    pub fn get_user(&self, uid: u32) -> Result<Option<User>> {
        match self.users.get(uid.to_be_bytes())? {
            Some(v) => Ok(Some(decode("users", &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_user(&self, user: &User) -> Result<()> {
        self.writing(|| {
            self.users.insert(user.uid.to_be_bytes(), encode(user))?;
            Ok(())
        })
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.users
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("users", &v)
            })
            .collect()
    }
}
