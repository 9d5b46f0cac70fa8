//! The `bd` key-agreement plugin: the Burmester-Desmedt group key agreement
//! (EUROCRYPT '94; the variant TISSEC 7(1) 2004 measures), authenticated by signatures,
//! with key confirmation, robust to cascaded membership changes.
//!
//! # The protocol
//!
//! The members of a view sit on a ring in view order (member `i`'s neighbours are
//! `i - 1` and `i + 1`, modulo `n`). Every membership event, and every refresh, runs the
//! whole protocol afresh, in two rounds:
//!
//! 1. every member `i` draws a fresh exponent `r_i` and multicasts `z_i = g^(r_i)`;
//! 2. once it holds its neighbours' values, it multicasts
//!    `X_i = (z_(i+1) / z_(i-1))^(r_i) = z_(i+1)^(r_i) * (z_(i-1)^(r_i))^-1`.
//!
//! The key is `K = g^(r_1 r_2 + r_2 r_3 + ... + r_n r_1)`. Member `i` computes it from
//! `A_0 = z_(i-1)^(r_i) = g^(r_(i-1) r_i)` (which it already has from round 2) and the
//! `X`s: `A_j = A_(j-1) * X_(i+j-1) = g^(r_(i+j-1) r_(i+j))`, and `K = A_0 A_1 ... A_(n-1)`.
//! That is three exponentiations per member whatever `n`, plus `2n - 2` group
//! multiplications, where the paper's formula `K = z_(i-1)^(n r_i) X_i^(n-1) ... X_(i-2)`
//! spends `n - 1` small-exponent exponentiations: the product form needs only the group
//! operation ([`conclave_plugin_sdk::host::DhGroup::mul_elements`], ABI 1.2), and BD
//! refuses, at construction, a provider built before it. The chain is one call,
//! [`conclave_plugin_sdk::host::DhGroup::chain_product`] (ABI 1.4), so that a provider
//! keeps the running products in its own form (Ristretto255: each `X` decoded once and
//! the key encoded once, instead of a decoding and two encodings per link); from a
//! provider built before 1.4 it is the `2n - 2` multiplications one by one.
//!
//! Two members exchange no second round (`X_i` would be the identity): their key is
//! `A_0 = g^(r_1 r_2)`, a two-party Diffie-Hellman. A member alone draws a random key.
//!
//! A member sends its `X` only after its neighbours' `z`, and takes another member's `X`
//! only after that member's `z` (a reordered `X` is `OUT_OF_STEP`). It validates the
//! two `z`s it exponentiates (its neighbours') and every `X` it multiplies. The key's
//! epoch is one above the largest epoch named by the round-1 messages (every member's);
//! the key is reported after every member's MAC over the transcript (every `z` and `X`
//! in view order) has arrived: the kit's key confirmation, as in `gdh`, `ckd`, `tgdh`.
//!
//! Only the controller (the oldest member) may refresh: its round-1 message of the next
//! run starts everybody's.
//!
//! # Costs
//!
//! Per member and event, `n >= 3`: 3 exponentiations, 2 signatures, `2(n - 1)`
//! verifications, 3 multicasts (the two rounds and the confirmation), `2n - 1`
//! multiplications (one for `X_i`, `2n - 2` for the key), one element inversion and
//! `n + 1` validations (the two neighbours' `z`, the others' `X`). Against TISSEC 2004: the same two rounds
//! and three exponentiations; signatures are per message here (the paper signs the same
//! two), and the `2n` multicasts of an event are `3n` with the confirmations.

use std::collections::BTreeMap;

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::key_agreement::{Action, KeyAgreementConfig, KeyAgreementStats, MembershipView},
    implement::{KeyAgreementImpl, Plugin},
    ka_kit::{self, EarlyConfirmations, Envelope, Reader, Session, Writer, receive},
};

type Result<T> = std::result::Result<T, PluginError>;

/// The plugin's name, and its protocol's.
pub const NAME: &str = "bd";

/// Length of the random key of a member alone.
const ALONE_SECRET_LEN: usize = 32;

mod step {
    /// Round 1: `z_i = g^(r_i)`.
    pub const SHARE: u8 = 1;
    /// Round 2: `X_i`.
    pub const CROSS: u8 = 2;
    /// Key confirmation.
    pub const CONFIRM: u8 = 3;
}

/// The plugin (marker type).
pub struct BdPlugin;

impl Plugin for BdPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::KeyAgreement;
    const DESCRIPTION: &'static str = "Burmester-Desmedt: two rounds, three exponentiations per member at any size, signed, key-confirmed, cascade-robust";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::KeyAgreement, NAME)]
    }

    fn check_options(options: &conclave_plugin_sdk::api::Options) -> Result<()> {
        ka_kit::refuse_options(NAME, options)
    }

    fn new_key_agreement(config: &KeyAgreementConfig) -> Result<Box<dyn KeyAgreementImpl>> {
        Self::check_options(&config.options)?;
        Ok(Box::new(Bd::new(config)?))
    }
}

conclave_plugin_sdk::builtin_plugin!(BdPlugin);

fn internal(what: &str) -> PluginError {
    PluginError::new(ErrorCode::INTERNAL, format!("bd: {what}"))
}

/// What a completed agreement leaves behind: the view it keyed (for refreshes).
struct Confirmed {
    view_id: Vec<u8>,
}

/// One run of the protocol.
#[derive(Default)]
struct Running {
    /// This member's exponent `r_i`.
    share: Option<SecretBytes>,
    /// This member's place on the ring, and its neighbours.
    index: usize,
    left: String,
    right: String,
    /// Round-1 values received (this member's too).
    z: BTreeMap<String, Vec<u8>>,
    /// Round-2 values received (this member's too).
    x: BTreeMap<String, Vec<u8>>,
    /// `A_0 = z_(i-1)^(r_i)`, once computed (this member's round 2 is then done).
    a0: Option<SecretBytes>,
    /// The largest epoch named by a round-1 message.
    max_epoch: u64,
    early: EarlyConfirmations,
}

impl ka_kit::Running for Running {
    fn early(&mut self) -> &mut EarlyConfirmations {
        &mut self.early
    }
}

type Phase = ka_kit::Phase<Running, Confirmed>;

/// One member's Burmester-Desmedt state machine.
pub struct Bd {
    s: Session,
    cs: Option<Confirmed>,
    phase: Phase,
}

/// The one group element a round's body carries.
fn parse_element(body: &[u8], what: &'static str) -> Result<Vec<u8>> {
    let mut r = Reader::new(body, what);
    let e = r.bytes16()?.to_vec();
    r.finish()?;
    Ok(e)
}

fn element_body(e: &[u8]) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes16(e)?;
    Ok(w.finish())
}

impl Bd {
    /// A state machine for `config`. Fails with `UNSUPPORTED` when the provider cannot
    /// multiply group elements (built against an ABI before 1.2).
    pub fn new(config: &KeyAgreementConfig) -> Result<Self> {
        let s = Session::new(NAME, config, b"")?.with_mac_confirmation(step::CONFIRM);
        let g = s.dh().generator();
        s.dh().mul_elements(&g, &g).map_err(|e| {
            PluginError::new(
                e.code,
                format!(
                    "bd needs the group operation of {}: {}",
                    s.dh().name(),
                    e.message
                ),
            )
        })?;
        Ok(Self {
            s,
            cs: None,
            phase: Phase::Idle,
        })
    }

    fn running(&mut self) -> Result<&mut Running> {
        self.phase.running()
    }

    /// A member alone: a random key of its own.
    fn alone(&mut self) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let secret = self.s.provider().random_bytes(ALONE_SECRET_LEN)?;
        let epoch = self.s.last_epoch() + 1;
        let schedule = self
            .s
            .schedule(secret.expose(), epoch, std::slice::from_ref(&me))?;
        self.cs = Some(Confirmed {
            view_id: self.s.current()?.view.view_id.to_vec(),
        });
        self.phase = Phase::Idle;
        Ok(vec![self.s.key_ready(schedule)?])
    }

    /// Starts a run: a fresh exponent, and round 1.
    fn start(&mut self) -> Result<Vec<Action>> {
        let info = self.s.current()?;
        let n = info.members.len();
        if n == 1 {
            return self.alone();
        }
        let me = self.s.me().to_string();
        let index = info
            .rank(&me)
            .ok_or_else(|| internal("this member is not in its own view"))?;
        let left = info.members[(index + n - 1) % n].clone();
        let right = info.members[(index + 1) % n].clone();
        let share = self.s.dh().random_scalar()?;
        let z = self.s.dh().exp_generator(share.expose())?;
        let epoch = self.s.last_epoch();
        let send = self.s.seal(step::SHARE, None, epoch, element_body(&z)?)?;
        let mut running = Running {
            share: Some(share),
            index,
            left,
            right,
            max_epoch: epoch,
            ..Running::default()
        };
        running.z.insert(me, z);
        self.phase = Phase::Running(running);
        Ok(vec![send])
    }

    fn handle(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        match env.step {
            step::CONFIRM => return self.phase.on_confirm(&mut self.s, env, &mut self.cs),
            step::SHARE | step::CROSS => {}
            other => {
                return Err(PluginError::new(
                    ErrorCode::BAD_MESSAGE,
                    format!("bd: unknown step {other} from {}", env.sender),
                ));
            }
        }
        if env.sender == self.s.me() {
            // The self-delivery of a multicast: applied when it was sent.
            return Ok(Vec::new());
        }
        let run = self.s.run();
        let refresh = match &self.phase {
            Phase::Running(_) if env.run == run => false,
            Phase::Idle if env.run == run + 1 && env.step == step::SHARE => true,
            _ => return Err(self.s.out_of_step(env, "not running an agreement")),
        };
        if env.step == step::SHARE {
            self.on_share(env, refresh)
        } else {
            self.on_cross(env)
        }
    }

    /// Another member's round 1 (of the next run when it starts a refresh). Every check
    /// comes before any change.
    fn on_share(&mut self, env: &Envelope, refresh: bool) -> Result<Vec<Action>> {
        let z = parse_element(&env.body, "bd round 1")?;
        let mut actions = Vec::new();
        if refresh {
            let info = self.s.current()?;
            if env.sender != info.oldest() {
                return Err(self
                    .s
                    .out_of_step(env, "accepting refreshes from the controller only"));
            }
            let keyed = self
                .cs
                .as_ref()
                .is_some_and(|cs| cs.view_id.as_slice() == info.view.view_id.as_slice());
            if !keyed {
                return Err(self
                    .s
                    .out_of_step(env, "without a key of this view to refresh"));
            }
            // Validated before the run starts, so that a refusal leaves nothing behind.
            if self.neighbour_after_refresh(&env.sender)? {
                self.s.validate(&z, &env.sender)?;
            }
            self.s.next_run();
            actions = self.start()?;
        } else {
            let r = self.running()?;
            if r.left == env.sender || r.right == env.sender {
                self.s.validate(&z, &env.sender)?;
            }
        }
        let r = self.running()?;
        r.max_epoch = r.max_epoch.max(env.epoch);
        r.z.insert(env.sender.clone(), z);
        actions.extend(self.progress()?);
        Ok(actions)
    }

    /// Whether `who` is this member's neighbour on the ring of the current view.
    fn neighbour_after_refresh(&self, who: &str) -> Result<bool> {
        let info = self.s.current()?;
        let n = info.members.len();
        let i = info
            .rank(self.s.me())
            .ok_or_else(|| internal("this member is not in its own view"))?;
        Ok(info.members[(i + n - 1) % n] == who || info.members[(i + 1) % n] == who)
    }

    /// Another member's round 2.
    fn on_cross(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let n = self.s.current()?.members.len();
        if n == 2 {
            return Err(self
                .s
                .out_of_step(env, "in a group of two, which has no second round"));
        }
        if !self.running()?.z.contains_key(&env.sender) {
            return Err(self
                .s
                .out_of_step(env, "waiting for the sender's first-round value"));
        }
        let x = parse_element(&env.body, "bd round 2")?;
        self.s.validate(&x, &env.sender)?;
        self.running()?.x.insert(env.sender.clone(), x);
        self.progress()
    }

    /// Sends round 2 once the neighbours' values are in, and computes the key once
    /// every round-2 value is.
    fn progress(&mut self) -> Result<Vec<Action>> {
        let n = self.s.current()?.members.len();
        let Phase::Running(r) = &mut self.phase else {
            return Ok(Vec::new());
        };
        let mut actions = Vec::new();
        if r.a0.is_none()
            && let (Some(zl), Some(zr)) = (r.z.get(&r.left), r.z.get(&r.right))
        {
            let share = r
                .share
                .as_ref()
                .ok_or_else(|| internal("a run without an exponent"))?;
            let dh = self.s.dh();
            let a0 = dh.exp(zl, share.expose())?;
            if n > 2 {
                let toward_right = dh.exp(zr, share.expose())?;
                let inverse = dh.invert_element(a0.expose())?;
                let x = dh
                    .mul_elements(toward_right.expose(), inverse.expose())?
                    .expose()
                    .to_vec();
                let body = element_body(&x)?;
                let epoch = self.s.last_epoch();
                actions.push(self.s.seal(step::CROSS, None, epoch, body)?);
                r.x.insert(self.s.me().to_string(), x);
            }
            r.a0 = Some(a0);
        }
        let complete = r.a0.is_some() && (n == 2 || r.x.len() == n);
        if complete {
            actions.extend(self.finish()?);
        }
        Ok(actions)
    }

    /// The key from `A_0` and the round-2 values, then its confirmation.
    fn finish(&mut self) -> Result<Vec<Action>> {
        let info = self.s.current()?;
        let members = info.members.clone();
        let view_id = info.view.view_id.to_vec();
        let source = info.oldest().to_string();
        let n = members.len();
        let Phase::Running(r) = &self.phase else {
            return Err(internal("no run to finish"));
        };
        let a0 = r.a0.as_ref().ok_or_else(|| internal("no A_0"))?;
        // Two members: the key is A_0 (no second round). Otherwise the product of
        // A_0 ... A_(n-1), A_j = A_(j-1) X_(i+j-1): one call, the provider keeping the
        // running products in its own form.
        let factors = if n > 2 {
            (1..n)
                .map(|j| {
                    r.x.get(&members[(r.index + j - 1) % n])
                        .map(Vec::as_slice)
                        .ok_or_else(|| internal("a missing round-2 value"))
                })
                .collect::<Result<Vec<&[u8]>>>()?
        } else {
            Vec::new()
        };
        let key = self.s.dh().chain_product(a0.expose(), &factors)?;
        let mut transcript = Writer::new();
        for m in &members {
            let z =
                r.z.get(m)
                    .ok_or_else(|| internal("a missing round-1 value"))?;
            transcript.bytes16(z)?;
        }
        for m in &members {
            if let Some(x) = r.x.get(m) {
                transcript.bytes16(x)?;
            }
        }
        let transcript = transcript.finish();
        let epoch = r.max_epoch.max(self.s.last_epoch()) + 1;
        let schedule = self.s.schedule(key.expose(), epoch, &members)?;
        let pending = Confirmed { view_id };
        self.phase.confirm(
            &mut self.s,
            schedule,
            &source,
            &transcript,
            step::CONFIRM,
            pending,
            &mut self.cs,
        )
    }
}

impl KeyAgreementImpl for Bd {
    fn algorithm(&self) -> String {
        NAME.into()
    }

    fn on_view(&mut self, view: &MembershipView) -> Result<Vec<Action>> {
        self.s.install_view(view)?;
        self.phase = Phase::Idle;
        self.start()
    }

    fn on_message(&mut self, sender: &str, payload: &[u8]) -> Result<Vec<Action>> {
        receive(self, |b| &mut b.s, sender, payload, true, Self::handle)
    }

    fn refresh(&mut self) -> Result<Vec<Action>> {
        let keyed_view = self.cs.as_ref().map(|cs| cs.view_id.clone());
        let controller = self.s.current()?.oldest().to_string();
        self.s.may_refresh(
            keyed_view.as_deref(),
            self.phase.is_idle(),
            &controller,
            false,
        )?;
        self.s.next_run();
        self.start()
    }

    fn stats(&self) -> KeyAgreementStats {
        self.s.stats()
    }
}
