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

    /// After a user's round: clients that will buy in a later round keep their signing key; the
    /// others keep only the seed. Nothing else a client does after its purchase's round signs a
    /// request: plays, the final checks and receiving a move need no key ([`Device`]).
    pub(super) fn settle(self, user: &mut SimUser, round: u32) {
        for (j, (c, derived)) in user.clients.iter_mut().zip(self.derived).enumerate() {
            let will_buy = user
                .holdings
                .iter()
                .any(|h| usize::from(h.holder) == j && h.license.is_none() && h.round > round);
            if will_buy {
                if c.key.is_none() {
                    c.key = derived.map(Box::new);
                }
            } else {
                c.key = None;
            }
        }
    }
}

/// A client in use: restored without its signing key until it must sign.
#[allow(
    clippy::large_enum_variant,
    reason = "a user's few clients in use, on the stack of one user's round"
)]
enum Active {
    Device(Device),
    Client(Client),
}

impl Active {
    fn device(&mut self) -> &mut Device {
        match self {
            Self::Device(d) => d,
            Self::Client(c) => c,
        }
    }

    fn into_state(self) -> ClientState {
        match self {
            Self::Device(d) => d.into_state(),
            Self::Client(c) => c.into_state(),
        }
    }
}

/// One user's clients in use: each restored once, when first needed (without its signing key
/// unless it signs), and parked when the user is done ([`Session::finish`]).
pub(crate) struct Session<'c> {
    keys: Keys<'c>,
    active: Vec<Option<Active>>,
}

impl<'c> Session<'c> {
    /// A session for user `u`, which has `clients` clients.
    pub(super) fn new(cfg: &'c SimConfig, u: u64, clients: usize) -> Self {
        Self {
            keys: Keys::new(cfg, u, clients),
            active: (0..clients).map(|_| None).collect(),
        }
    }

    /// Restores client `j` if it is not in use, with its signing key if `signs`; gives a client
    /// in use without its key the key when `signs`.
    fn restore<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        j: usize,
        signs: bool,
    ) -> Result<&mut Active, SimError> {
        let Self { keys, active } = self;
        let slot = active
            .get_mut(j)
            .ok_or(SimError::Internal("client index"))?;
        let sim = user
            .clients
            .get_mut(j)
            .ok_or(SimError::Internal("client index"))?;
        let next = match slot.take() {
            None if signs => Active::Client(engine.restore(sim, keys.get(j, sim)?)?),
            None => Active::Device(engine.restore_device(sim)?),
            Some(Active::Device(device)) if signs => {
                Active::Client(Client::from_device(device, keys.get(j, sim)?).map_err(|(e, _)| e)?)
            }
            Some(active) => active,
        };
        Ok(slot.insert(next))
    }

    /// Client `j` with its signing key, restored if it was not in use.
    pub(super) fn client<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        j: u8,
    ) -> Result<&mut Client, SimError> {
        match self.restore(engine, user, usize::from(j), true)? {
            Active::Client(c) => Ok(c),
            Active::Device(_) => Err(SimError::Internal("a client without its key")),
        }
    }

    /// Client `j`'s device (its signing key only if it was restored with it), restored if it was
    /// not in use.
    pub(super) fn device<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        j: u8,
    ) -> Result<&mut Device, SimError> {
        Ok(self.restore(engine, user, usize::from(j), false)?.device())
    }

    /// The source `a` of a move, with its signing key, and the destination `b` (distinct),
    /// restored if they were not in use.
    pub(super) fn pair<R: Registry>(
        &mut self,
        engine: &Engine<'_, R>,
        user: &mut SimUser,
        a: u8,
        b: u8,
    ) -> Result<(&mut Client, &mut Device), SimError> {
        let (a, b) = (usize::from(a), usize::from(b));
        if a == b {
            return Err(SimError::Internal("a move to the same client"));
        }
        self.restore(engine, user, a, true)?;
        self.restore(engine, user, b, false)?;
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = self.active.split_at_mut(hi);
        let (Some(Some(x)), Some(Some(y))) = (left.get_mut(lo), right.first_mut()) else {
            return Err(SimError::Internal("client index"));
        };
        let (source, destination) = if a < b { (x, y) } else { (y, x) };
        let Active::Client(source) = source else {
            return Err(SimError::Internal("a source without its key"));
        };
        Ok((source, destination.device()))
    }

    /// Parks every client in use; after a round (`Some(round)`), decides which signing keys
    /// the user's clients keep ([`Keys::settle`]).
    pub(super) fn finish(self, user: &mut SimUser, round: Option<u32>) {
        for (sim, client) in user.clients.iter_mut().zip(self.active) {
            if let Some(client) = client {
                park(sim, client.into_state());
            }
        }
        if let Some(round) = round {
            self.keys.settle(user, round);
        }
    }
}

/// Puts a client's state back in storage.
pub(super) fn park(c: &mut SimClient, mut state: ClientState) {
    state.compact();
    c.state = Some(state);
}
