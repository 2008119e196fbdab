//! People: accounts (`users`, by name), web sessions (`sessions`) and API
//! tokens (`api_tokens`), both keyed by the SHA-256 of the secret so the
//! database never holds a usable credential, and the audit log (`audit`,
//! by a big-endian sequence number, oldest first).

use super::records::{decode, encode, ApiToken, Session, User};
use super::{corrupt, Result, Store};
use kha_core::view::AuditEntry;
use kha_core::Millis;

impl Store {
    // ---- users

    pub fn get_user(&self, name: &str) -> Result<Option<User>> {
        self.users
            .get(name)?
            .map(|v| decode(&v).map_err(corrupt("users")))
            .transpose()
    }

    /// Adds a user unless the name is taken; false if it is.
    pub fn add_user(&self, u: &User) -> Result<bool> {
        let _gate = self.gate.enter();
        let r = self.users.compare_and_swap(
            u.name.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(u)),
        )?;
        Ok(r.is_ok())
    }

    pub fn put_user(&self, u: &User) -> Result<()> {
        let _gate = self.gate.enter();
        self.users.insert(u.name.as_bytes(), encode(u))?;
        Ok(())
    }

    /// Changes a user atomically: `f` sees the current record (None: no such
    /// user) and returns the new one, or None to leave it alone.
    pub fn update_user<F>(&self, name: &str, mut f: F) -> Result<Option<User>>
    where
        F: FnMut(User) -> Option<User>,
    {
        let _gate = self.gate.enter();
        let mut out = None;
        let mut bad = None;
        self.users.fetch_and_update(name, |old| {
            let old = old?;
            match decode::<User>(old) {
                Ok(u) => match f(u) {
                    Some(n) => {
                        let bytes = encode(&n);
                        out = Some(n);
                        Some(bytes)
                    }
                    None => Some(old.to_vec()),
                },
                Err(e) => {
                    bad = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(corrupt("users")(e));
        }
        Ok(out)
    }

    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let _gate = self.gate.enter();
        Ok(self.users.remove(name)?.is_some())
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.users
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("users")))
            .collect()
    }

    pub fn has_users(&self) -> Result<bool> {
        Ok(!self.users.is_empty())
    }

    pub fn user_by_github_id(&self, id: u64) -> Result<Option<User>> {
        Ok(self
            .list_users()?
            .into_iter()
            .find(|u| u.github_id == id && id != 0))
    }

    // ---- sessions

    pub fn get_session(&self, key: &str) -> Result<Option<Session>> {
        self.sessions
            .get(key)?
            .map(|v| decode(&v).map_err(corrupt("sessions")))
            .transpose()
    }

    pub fn put_session(&self, key: &str, s: &Session) -> Result<()> {
        let _gate = self.gate.enter();
        self.sessions.insert(key, encode(s))?;
        Ok(())
    }

    pub fn remove_session(&self, key: &str) -> Result<()> {
        let _gate = self.gate.enter();
        self.sessions.remove(key)?;
        Ok(())
    }

    /// Removes every session `drop` picks (a disabled user's, expired ones);
    /// returns how many went.
    pub fn remove_sessions(&self, drop: impl Fn(&Session) -> bool) -> Result<usize> {
        let _gate = self.gate.enter();
        let mut n = 0;
        for kv in self.sessions.iter() {
            let (k, v) = kv?;
            let gone = match decode::<Session>(&v) {
                Ok(s) => drop(&s),
                // A record this version cannot read is no session.
                Err(_) => true,
            };
            if gone {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    // ---- API tokens

    pub fn get_api_token(&self, key: &str) -> Result<Option<ApiToken>> {
        self.api_tokens
            .get(key)?
            .map(|v| decode(&v).map_err(corrupt("api_tokens")))
            .transpose()
    }

    pub fn put_api_token(&self, key: &str, t: &ApiToken) -> Result<()> {
        let _gate = self.gate.enter();
        self.api_tokens.insert(key, encode(t))?;
        Ok(())
    }

    /// Every token with its key (the hash), for listing and revoking by id.
    pub fn list_api_tokens(&self) -> Result<Vec<(String, ApiToken)>> {
        self.api_tokens
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let t = decode(&v).map_err(corrupt("api_tokens"))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), t))
            })
            .collect()
    }

    pub fn remove_api_token(&self, key: &str) -> Result<()> {
        let _gate = self.gate.enter();
        self.api_tokens.remove(key)?;
        Ok(())
    }

    // ---- audit log

    /// Appends an entry; its sequence number is given here.
    pub fn audit(&self, mut e: AuditEntry, now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        let seq = self.next_id()?;
        e.seq = seq;
        e.at_ms = now;
        self.audit.insert(seq.to_be_bytes(), encode(&e))?;
        Ok(())
    }

    /// Entries newest first: skip `skip`, take `take`; and the total.
    pub fn audit_page(&self, skip: usize, take: usize) -> Result<(Vec<AuditEntry>, u64)> {
        let total = self.audit.len() as u64;
        let entries = self
            .audit
            .iter()
            .rev()
            .skip(skip)
            .take(take)
            .map(|kv| decode(&kv?.1).map_err(corrupt("audit")))
            .collect::<Result<_>>()?;
        Ok((entries, total))
    }
}
