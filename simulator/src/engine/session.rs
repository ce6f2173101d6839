//! A user's clients while the user acts: restored when first needed, kept as `Client`s until
//! the user is done, then put back in storage (a device stays on while it is used, rather than
//! saving and reloading its state at every action).

use super::*;

/// The signing keys of one user's clients, derived from their seeds when first needed in a
/// round. An Ed25519 signing key takes 224 bytes with its expanded public key; the seed takes 32,
/// which is what lets millions of clients fit.
pub(crate) struct Keys<'c> {
    cfg: &'c SimConfig,
    user: u64,
    derived: Vec<Option<SigningKey>>,
}

impl<'c> Keys<'c> {
    /// The keys of user `u`, which has `clients` clients.
    pub(super) fn new(cfg: &'c SimConfig, user: u64, clients: usize) -> Self {
        Self {
            cfg,
            user,
            derived: vec![None; clients],
        }
    }

    /// Client `j`'s signing key: the one it keeps, or one derived from its seed.
    pub(super) fn get(&mut self, j: usize, c: &SimClient) -> Result<SigningKey, SimError> {
        if let Some(key) = &c.key {
            return Ok((**key).clone());
        }
        let slot = self
            .derived
            .get_mut(j)
            .ok_or(SimError::Internal("client index"))?;
        Ok(slot
            .get_or_insert_with(|| {
                SigningKey::from_bytes(&crate::workload::key_seed(self.cfg, self.user, j))
            })
            .clone())
    }

    /// After a user's round: clients that hold a license or will buy one keep their signing
    /// key; the others keep only the seed.
    pub(super) fn settle(self, user: &mut SimUser, round: u32) {
        for (j, (c, derived)) in user.clients.iter_mut().zip(self.derived).enumerate() {
            let holds = c.state.as_ref().is_some_and(ClientState::holds_licenses);
            let will_buy = user
                .holdings
                .iter()
                .any(|h| usize::from(h.holder) == j && h.license.is_none() && h.round > round);
            if holds || will_buy {
                if c.key.is_none() {
                    c.key = derived.map(Box::new);
                }
            } else {
                c.key = None;
            }
        }
    }
}

/// One user's clients in use: each restored once, when first needed, and parked when the user is
/// done ([`Session::finish`]).
pub(crate) struct Session<'c> {
    keys: Keys<'c>,
    active: Vec<Option<Client>>,
}

impl<'c> Session<'c> {
    /// A session for user `u`, which has `clients` clients.
    pub(super) fn new(cfg: &'c SimConfig, u: u64, clients: usize) -> Self {
        Self {
            keys: Keys::new(cfg, u, clients),
            active: (0..clients).map(|_| None).collect(),
        }
    }

    fn restore<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        j: usize,
    ) -> Result<(), SimError> {
        let Self { keys, active } = self;
        let slot = active
            .get_mut(j)
            .ok_or(SimError::Internal("client index"))?;
        if slot.is_none() {
            let sim = user
                .clients
                .get_mut(j)
                .ok_or(SimError::Internal("client index"))?;
            let key = keys.get(j, sim)?;
            *slot = Some(engine.restore(sim, key)?);
        }
        Ok(())
    }

    /// Client `j`, restored if it was not in use.
    pub(super) fn client<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        j: u8,
    ) -> Result<&mut Client, SimError> {
        let j = usize::from(j);
        self.restore(engine, user, j)?;
        self.active
            .get_mut(j)
            .and_then(Option::as_mut)
            .ok_or(SimError::Internal("client index"))
    }

    /// Clients `a` and `b` (distinct), restored if they were not in use.
    pub(super) fn pair<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        a: u8,
        b: u8,
    ) -> Result<(&mut Client, &mut Client), SimError> {
        let (a, b) = (usize::from(a), usize::from(b));
        if a == b {
            return Err(SimError::Internal("a move to the same client"));
        }
        self.restore(engine, user, a)?;
        self.restore(engine, user, b)?;
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = self.active.split_at_mut(hi);
        let (Some(Some(x)), Some(Some(y))) = (left.get_mut(lo), right.first_mut()) else {
            return Err(SimError::Internal("client index"));
        };
        Ok(if a < b { (x, y) } else { (y, x) })
    }

    /// Parks every client in use; after a round (`Some(round)`), decides which signing keys
    /// the user's clients keep ([`Keys::settle`]).
    pub(super) fn finish(self, user: &mut SimUser, round: Option<u32>) {
        for (sim, client) in user.clients.iter_mut().zip(self.active) {
            if let Some(client) = client {
                park(sim, client);
            }
        }
        if let Some(round) = round {
            self.keys.settle(user, round);
        }
    }
}

/// Puts a client back in storage.
pub(super) fn park(c: &mut SimClient, client: Client) {
    let mut state = client.into_state();
    state.compact();
    c.state = Some(state);
}
