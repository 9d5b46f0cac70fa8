//! The `ckd` key-agreement plugin: centralized key distribution, as in the appendix of
//! the Secure Spread paper, authenticated by signatures, with key confirmation, robust to
//! cascaded membership changes.
//!
//! The controller is the oldest member. It shares a pairwise key with every member,
//! established by an authenticated two-party Diffie-Hellman exchange and kept while both
//! stay; at each change it draws a fresh random group secret and sends it to every member
//! wrapped (AEAD) under their pairwise key.
//!
//! # Which protocol runs on a view
//!
//! | the controller | members without a pairwise key | messages |
//! |---|---|---|
//! | same as in the previous view, whose agreement completed | none (leave, partition, refresh) | one multicast: the wrapped secret |
//! | same, previous agreement completed | the joiners | `hello` (multicast: the controller's DH value and who must answer), one `response` per joiner (unicast: its DH value), the wrapped secret |
//! | new (the old one left or crashed), or the previous agreement did not complete | everyone | the same, with every member answering |
//!
//! View synchrony makes the controller's judgement safe: members that move together
//! delivered the same messages, so they agree on whether the previous agreement
//! completed, and everyone learns from `hello` whether it must answer.
//!
//! Each pairwise DH value is fresh (the controller's for as long as it stays controller,
//! a member's for each exchange); the wrapping key is HKDF-SHA256 of the DH result, the
//! group, both names and the parameters. Wrapping uses an AEAD of the provider
//! (`aes-256-gcm` unless the option `wrap` names `chacha20-poly1305`), with a random
//! nonce, and binds the group, view, run, epoch and member.

use std::collections::{BTreeMap, BTreeSet};

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::key_agreement::{Action, KeyAgreementConfig, KeyAgreementStats, MembershipView},
    implement::{KeyAgreementImpl, Plugin},
    ka_kit::{self, EarlyConfirmations, Envelope, KDF, Reader, Session, Writer, receive},
};

type Result<T> = std::result::Result<T, PluginError>;

/// The plugin's name, and its protocol's.
pub const NAME: &str = "ckd";

const SECRET_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const WRAP_KEY_LEN: usize = 32;

mod step {
    pub const HELLO: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const DISTRIBUTE: u8 = 3;
    pub const CONFIRM: u8 = 4;
}

/// The plugin (marker type).
pub struct CkdPlugin;

impl Plugin for CkdPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::KeyAgreement;
    const DESCRIPTION: &'static str = "centralized key distribution: the oldest member wraps a fresh secret under pairwise DH keys";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::KeyAgreement, NAME)]
    }

    fn check_options(options: &conclave_plugin_sdk::api::Options) -> Result<()> {
        parse_wrap(options).map(|_| ())
    }

    fn new_key_agreement(config: &KeyAgreementConfig) -> Result<Box<dyn KeyAgreementImpl>> {
        Ok(Box::new(Ckd::new(config)?))
    }
}

conclave_plugin_sdk::builtin_plugin!(CkdPlugin);

/// What a completed agreement leaves behind.
struct Confirmed {
    view_id: Vec<u8>,
    controller: String,
    /// The controller's: its DH share and public value, and a wrapping key per member.
    /// A member's: the wrapping key it shares with the controller.
    share: Option<SecretBytes>,
    public: Vec<u8>,
    wrap_keys: BTreeMap<String, SecretBytes>,
}

#[derive(Default)]
struct Running {
    /// The controller's: members whose response is awaited.
    awaiting: BTreeSet<String>,
    /// The controller's share and public value for this agreement.
    share: Option<SecretBytes>,
    public: Vec<u8>,
    /// Wrapping keys known so far (kept ones and new ones).
    wrap_keys: BTreeMap<String, SecretBytes>,
    max_epoch: u64,
    answered: bool,
    early: EarlyConfirmations,
}

impl ka_kit::Running for Running {
    fn early(&mut self) -> &mut EarlyConfirmations {
        &mut self.early
    }
}

type Phase = ka_kit::Phase<Running, Confirmed>;

/// One member's CKD state machine.
pub struct Ckd {
    s: Session,
    wrap: &'static str,
    cs: Option<Confirmed>,
    phase: Phase,
}

fn internal(what: &str) -> PluginError {
    PluginError::new(ErrorCode::INTERNAL, format!("ckd: {what}"))
}

fn copy(s: &SecretBytes) -> SecretBytes {
    SecretBytes::copy_from(s.expose())
}

/// The `wrap` option: the AEAD that wraps the group key for each member.
fn parse_wrap(options: &conclave_plugin_sdk::api::Options) -> Result<&'static str> {
    let mut wrap = "aes-256-gcm";
    for e in options.entries.iter() {
        match (e.key.as_str(), e.value.as_str()) {
            ("wrap", "aes-256-gcm") => wrap = "aes-256-gcm",
            ("wrap", "chacha20-poly1305") => wrap = "chacha20-poly1305",
            ("wrap", v) => {
                return Err(PluginError::new(
                    ErrorCode::BAD_CONFIG,
                    format!("ckd: wrap must be aes-256-gcm or chacha20-poly1305, not {v:?}"),
                ));
            }
            (k, _) => {
                return Err(PluginError::new(
                    ErrorCode::BAD_CONFIG,
                    format!("ckd: unknown option {k:?} (known: wrap)"),
                ));
            }
        }
    }
    Ok(wrap)
}

impl Ckd {
    /// A state machine for `config`.
    pub fn new(config: &KeyAgreementConfig) -> Result<Self> {
        let wrap = parse_wrap(&config.options)?;
        let s = Session::new(NAME, config, format!("wrap={wrap}").as_bytes())?
            .with_mac_confirmation(step::CONFIRM);
        // Fail now, not at the first view, if the provider cannot wrap.
        s.provider().aead(wrap, &[0u8; WRAP_KEY_LEN])?;
        Ok(Self {
            s,
            wrap,
            cs: None,
            phase: Phase::Idle,
        })
    }

    fn running(&mut self) -> Result<&mut Running> {
        self.phase.running()
    }

    /// The wrapping key of the controller `ctl` and `member` from their DH result.
    fn wrap_key(&self, dh_result: &[u8], ctl: &str, member: &str) -> Result<SecretBytes> {
        let mut info = Writer::new();
        info.bytes16(self.s.group().as_bytes())?;
        info.bytes8(ctl.as_bytes())?;
        info.bytes8(member.as_bytes())?;
        info.raw(self.s.params());
        self.s.provider().hkdf(
            KDF,
            b"conclave/ckd/pairwise/v1",
            dh_result,
            &info.finish(),
            WRAP_KEY_LEN,
        )
    }

    fn wrap_aad(&self, epoch: u64, member: &str) -> Result<Vec<u8>> {
        let view = self.s.current()?;
        let mut w = Writer::new();
        w.bytes16(self.s.group().as_bytes())?;
        w.bytes16(&view.view.view_id)?;
        w.u32(self.s.run()).u64(epoch);
        w.bytes8(member.as_bytes())?;
        Ok(w.finish())
    }

    fn valid_cs(&self, previous_view: Option<&[u8]>) -> bool {
        matches!((&self.cs, previous_view), (Some(cs), Some(prev)) if cs.view_id == prev)
    }

    fn start(&mut self, previous_view: Option<Vec<u8>>) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let me = self.s.me().to_string();
        let ctl = info.oldest().to_string();
        let valid = self.valid_cs(previous_view.as_deref());
        let mut running = Running::default();
        if me != ctl {
            // A member keeps its wrapping key only if the controller is unchanged and
            // their last agreement completed; `hello` says whether it must answer.
            if valid
                && let Some(cs) = &self.cs
                && cs.controller == ctl
                && let Some(k) = cs.wrap_keys.get(&ctl)
            {
                running.wrap_keys.insert(ctl.clone(), copy(k));
            }
            self.phase = Phase::Running(running);
            return Ok(Vec::new());
        }
        if info.members.len() == 1 {
            self.phase = Phase::Running(running);
            return self.distribute(self.s.last_epoch() + 1);
        }
        let kept = self
            .cs
            .as_ref()
            .filter(|cs| valid && cs.controller == me && cs.share.is_some());
        match kept {
            Some(cs) => {
                running.share = cs.share.as_ref().map(copy);
                running.public = cs.public.clone();
                for m in &info.members {
                    if let Some(k) = cs.wrap_keys.get(m) {
                        running.wrap_keys.insert(m.clone(), copy(k));
                    }
                }
            }
            None => {
                let x = self.s.dh().random_scalar()?;
                running.public = self.s.dh().exp_generator(x.expose())?;
                running.share = Some(x);
            }
        }
        running.awaiting = info
            .members
            .iter()
            .filter(|m| **m != me && !running.wrap_keys.contains_key(*m))
            .cloned()
            .collect();
        running.max_epoch = self.s.last_epoch();
        if running.awaiting.is_empty() {
            self.phase = Phase::Running(running);
            return self.distribute(self.s.last_epoch() + 1);
        }
        let mut w = Writer::new();
        w.bytes16(&running.public)?;
        w.names(&running.awaiting.iter().collect::<Vec<_>>())?;
        let hello = self
            .s
            .seal(step::HELLO, None, self.s.last_epoch(), w.finish())?;
        self.phase = Phase::Running(running);
        Ok(vec![hello])
    }

    /// The controller draws the group secret, wraps it for every member and starts
    /// confirming.
    fn distribute(&mut self, epoch: u64) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let me = self.s.me().to_string();
        let secret = self.s.provider().random_bytes(SECRET_LEN)?;
        let running = self.running()?;
        let wrap_keys: BTreeMap<String, SecretBytes> = running
            .wrap_keys
            .iter()
            .map(|(m, k)| (m.clone(), copy(k)))
            .collect();
        let (share, public) = (running.share.as_ref().map(copy), running.public.clone());
        let others: Vec<String> = info.members.iter().filter(|m| **m != me).cloned().collect();
        let mut w = Writer::new();
        w.names(&others)?;
        for m in &others {
            let key = wrap_keys
                .get(m)
                .ok_or_else(|| internal(&format!("no wrapping key for {m}")))?;
            let nonce = self.s.provider().random_bytes(NONCE_LEN)?;
            let mut aead = self.s.provider().aead(self.wrap, key.expose())?;
            let wrapped = aead.seal(nonce.expose(), &self.wrap_aad(epoch, m)?, secret.expose())?;
            w.raw(nonce.expose());
            w.bytes16(&wrapped)?;
        }
        let body = w.finish();
        let send = self.s.seal(step::DISTRIBUTE, None, epoch, body.clone())?;
        let pending = Confirmed {
            view_id: info.view.view_id.to_vec(),
            controller: me.clone(),
            share,
            public,
            wrap_keys,
        };
        let mut actions = vec![send];
        actions.extend(self.confirm(secret, epoch, &me, &body, pending)?);
        Ok(actions)
    }

    fn confirm(
        &mut self,
        secret: SecretBytes,
        epoch: u64,
        source: &str,
        body: &[u8],
        pending: Confirmed,
    ) -> Result<Vec<Action>> {
        let members = self.s.current()?.members.clone();
        let schedule = self.s.schedule(secret.expose(), epoch, &members)?;
        self.phase.confirm(
            &mut self.s,
            schedule,
            source,
            body,
            step::CONFIRM,
            pending,
            &mut self.cs,
        )
    }

    fn handle(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        if env.sender == self.s.me() && env.step != step::CONFIRM {
            // The self-delivery of a multicast: only confirmations matter.
            return Ok(Vec::new());
        }
        match env.step {
            step::HELLO => self.on_hello(env),
            step::RESPONSE => self.on_response(env),
            step::DISTRIBUTE => self.on_distribute(env),
            step::CONFIRM => self.phase.on_confirm(&mut self.s, env, &mut self.cs),
            other => Err(PluginError::new(
                ErrorCode::BAD_MESSAGE,
                format!("ckd: unknown step {other} from {}", env.sender),
            )),
        }
    }

    fn on_hello(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let info = self.s.current()?;
        let ctl = info.oldest().to_string();
        match &self.phase {
            Phase::Running(r) if env.run == self.s.run() && !r.answered && me != ctl => {}
            _ => {
                return Err(self
                    .s
                    .out_of_step(env, "not waiting for the controller's hello"));
            }
        }
        if env.sender != ctl {
            return Err(self
                .s
                .out_of_step(env, "expecting hello from the oldest member"));
        }
        let mut r = Reader::new(&env.body, "ckd hello");
        let public = r.bytes16()?.to_vec();
        let asked = r.names()?;
        r.finish()?;
        if !asked.contains(&me) {
            self.running()?.answered = true;
            return Ok(Vec::new());
        }
        self.s.validate(&public, &env.sender)?;
        let y = self.s.dh().random_scalar()?;
        let mine = self.s.dh().exp_generator(y.expose())?;
        let shared = self.s.dh().exp(&public, y.expose())?;
        let key = self.wrap_key(shared.expose(), &ctl, &me)?;
        let mut w = Writer::new();
        w.bytes16(&mine)?;
        let response = self
            .s
            .seal(step::RESPONSE, Some(&ctl), self.s.last_epoch(), w.finish())?;
        let running = self.running()?;
        running.wrap_keys.insert(ctl, key);
        running.answered = true;
        Ok(vec![response])
    }

    fn on_response(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let share = match &self.phase {
            Phase::Running(r) if env.run == self.s.run() && r.awaiting.contains(&env.sender) => r
                .share
                .as_ref()
                .map(copy)
                .ok_or_else(|| internal("controller without a share"))?,
            _ => {
                return Err(self
                    .s
                    .out_of_step(env, "not awaiting this member's response"));
            }
        };
        let mut r = Reader::new(&env.body, "ckd response");
        let theirs = r.bytes16()?.to_vec();
        r.finish()?;
        self.s.validate(&theirs, &env.sender)?;
        let shared = self.s.dh().exp(&theirs, share.expose())?;
        let key = self.wrap_key(shared.expose(), &me, &env.sender)?;
        let running = self.running()?;
        running.awaiting.remove(&env.sender);
        running.wrap_keys.insert(env.sender.clone(), key);
        running.max_epoch = running.max_epoch.max(env.epoch);
        if !running.awaiting.is_empty() {
            return Ok(Vec::new());
        }
        let epoch = running.max_epoch.max(self.s.last_epoch()) + 1;
        self.distribute(epoch)
    }

    fn on_distribute(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let info = self.s.current()?.clone();
        let ctl = info.oldest().to_string();
        if env.sender != ctl {
            return Err(self
                .s
                .out_of_step(env, "expecting the secret from the oldest member"));
        }
        let run = self.s.run();
        let (key, refresh) = match &self.phase {
            Phase::Running(r) if env.run == run => (r.wrap_keys.get(&ctl).map(copy), false),
            Phase::Idle if env.run == run + 1 => (
                self.cs
                    .as_ref()
                    .filter(|cs| cs.view_id.as_slice() == info.view.view_id.as_slice())
                    .and_then(|cs| cs.wrap_keys.get(&ctl))
                    .map(copy),
                true,
            ),
            _ => return Err(self.s.out_of_step(env, "not expecting the group secret")),
        };
        let key = key.ok_or_else(|| {
            self.s
                .out_of_step(env, "without a pairwise key with the controller")
        })?;
        if env.epoch <= self.s.last_epoch() {
            return Err(self
                .s
                .out_of_step(env, "at a later epoch than the one proposed"));
        }
        let mut r = Reader::new(&env.body, "ckd distribution");
        let names = r.names()?;
        let mut mine = None;
        for m in &names {
            let nonce = r.take(NONCE_LEN)?;
            let wrapped = r.bytes16()?;
            if *m == me {
                mine = Some((nonce.to_vec(), wrapped.to_vec()));
            }
        }
        r.finish()?;
        let expected: Vec<&String> = info.members.iter().filter(|m| **m != ctl).collect();
        if names.iter().collect::<Vec<_>>() != expected {
            return Err(self
                .s
                .out_of_step(env, "expecting the secret for exactly the view's members"));
        }
        let (nonce, wrapped) =
            mine.ok_or_else(|| self.s.out_of_step(env, "missing from the distribution"))?;
        // The run the secret is for: the next one when this is a refresh.
        let aad = {
            let view = self.s.current()?;
            let mut w = Writer::new();
            w.bytes16(self.s.group().as_bytes())?;
            w.bytes16(&view.view.view_id)?;
            w.u32(env.run).u64(env.epoch);
            w.bytes8(me.as_bytes())?;
            w.finish()
        };
        let mut aead = self.s.provider().aead(self.wrap, key.expose())?;
        let secret = aead.open(&nonce, &aad, &wrapped).map_err(|_| {
            PluginError::new(
                ErrorCode::AUTHENTICATION_FAILED,
                format!("ckd: the secret from {ctl} does not open under our pairwise key"),
            )
        })?;
        if refresh {
            self.s.next_run();
            self.phase = Phase::Running(Running::default());
        }
        let pending = Confirmed {
            view_id: info.view.view_id.to_vec(),
            controller: ctl.clone(),
            share: None,
            public: Vec::new(),
            wrap_keys: BTreeMap::from([(ctl.clone(), key)]),
        };
        self.confirm(secret, env.epoch, &ctl, &env.body, pending)
    }
}

impl KeyAgreementImpl for Ckd {
    fn algorithm(&self) -> String {
        NAME.into()
    }

    fn on_view(&mut self, view: &MembershipView) -> Result<Vec<Action>> {
        let previous = self.s.view().map(|v| v.view.view_id.to_vec());
        self.s.install_view(view)?;
        self.phase = Phase::Idle;
        self.start(previous)
    }

    fn on_message(&mut self, sender: &str, payload: &[u8]) -> Result<Vec<Action>> {
        receive(self, |c| &mut c.s, sender, payload, true, Self::handle)
    }

    fn refresh(&mut self) -> Result<Vec<Action>> {
        let (keyed_view, controller) = match &self.cs {
            Some(cs) => (Some(cs.view_id.as_slice()), cs.controller.as_str()),
            None => (None, ""),
        };
        self.s
            .may_refresh(keyed_view, self.phase.is_idle(), controller, false)?;
        let cs = self
            .cs
            .as_ref()
            .ok_or_else(|| internal("a refreshable key without its state"))?;
        let running = Running {
            share: cs.share.as_ref().map(copy),
            public: cs.public.clone(),
            wrap_keys: cs
                .wrap_keys
                .iter()
                .map(|(m, k)| (m.clone(), copy(k)))
                .collect(),
            ..Running::default()
        };
        self.s.next_run();
        self.phase = Phase::Running(running);
        self.distribute(self.s.last_epoch() + 1)
    }

    fn stats(&self) -> KeyAgreementStats {
        self.s.stats()
    }
}
