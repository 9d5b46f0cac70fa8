//! The `gdh` key-agreement plugin: Cliques group Diffie-Hellman (section 4 of the Secure
//! Spread paper), authenticated by signatures, with key confirmation, robust to cascaded
//! membership changes.
//!
//! Every member holds a secret share `x_i`; the group secret is `g^(x_1 ... x_n)`. After
//! each agreement every member holds the *partial keys* `P_i = g^(prod of all shares but
//! x_i)` that the controller broadcast, and computes the secret as `P_i^(x_i)`.
//!
//! # Which protocol runs on a view
//!
//! The *base group* of a view is the component of its oldest member: the members that
//! came from the oldest member's previous view (view synchrony makes every member agree
//! on it, and makes them all agree on whether the previous agreement completed). Let `J`
//! be the other members (joiners, or members of other components in a merge).
//!
//! | base group's previous agreement | `J` | protocol | controller |
//! |---|---|---|---|
//! | completed | empty | **leave** (4.3): the newest member refreshes its share and broadcasts new partial keys | newest |
//! | completed | one member | **join** (4.1): the newest base member refreshes its share and hands the partial keys to the joiner, who adds its share and broadcasts them | the joiner |
//! | completed | several | **merge** (4.2): the newest base member refreshes, the token passes through `J` in join order, the last one broadcasts it, every other member factors its share out, the last one broadcasts the partial keys | last of `J` |
//! | abandoned, or none | any | **initial agreement**: a merge into the oldest member alone, with everyone else fresh | newest |
//!
//! A view that arrives during an agreement abandons it (pending shares are wiped), and
//! the next view then runs the initial agreement: the robust GDH of Amir et al. (ICDCS
//! 2001) in its simplest, always-safe form. Table 1's partition + merge is the merge row:
//! members that left are dropped from the partial keys.
//!
//! # Messages
//!
//! All messages go through [`conclave_plugin_sdk::ka_kit`]: signed, bound to the group,
//! view, run, step, sender, receiver and parameters, and checked in a fixed order. After
//! the partial keys every member multicasts a key-confirmation MAC; the key is reported
//! once every member's MAC has arrived.
//!
//! # Options
//!
//! `any_member_refresh = "true"`: any member may refresh the key (by updating its own
//! share, section 4.4), not only the controller. Concurrent refreshes resolve to the
//! newest refresher's, at every member.

use std::collections::{BTreeMap, BTreeSet};

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::key_agreement::{Action, KeyAgreementConfig, KeyAgreementStats, MembershipView},
    implement::{KeyAgreementImpl, Plugin},
    ka_kit::{self, EarlyConfirmations, Envelope, Reader, Session, Writer, receive},
};

type Result<T> = std::result::Result<T, PluginError>;

/// The plugin's name, and its protocol's.
pub const NAME: &str = "gdh";

mod step {
    pub const UPFLOW: u8 = 1;
    pub const JOIN: u8 = 2;
    pub const BROADCAST: u8 = 3;
    pub const FACTOR_OUT: u8 = 4;
    pub const PARTIALS: u8 = 5;
    pub const CONFIRM: u8 = 6;
}

/// The plugin (marker type).
pub struct GdhPlugin;

impl Plugin for GdhPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::KeyAgreement;
    const DESCRIPTION: &'static str =
        "Cliques GDH: contributory group Diffie-Hellman, signed, key-confirmed, cascade-robust";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::KeyAgreement, NAME)]
    }

    fn check_options(options: &conclave_plugin_sdk::api::Options) -> Result<()> {
        parse_options(options).map(|_| ())
    }

    fn new_key_agreement(config: &KeyAgreementConfig) -> Result<Box<dyn KeyAgreementImpl>> {
        Ok(Box::new(Gdh::new(config)?))
    }
}

conclave_plugin_sdk::builtin_plugin!(GdhPlugin);

/// The state a completed agreement leaves behind.
struct Confirmed {
    view_id: Vec<u8>,
    partials: BTreeMap<String, Vec<u8>>,
    share: SecretBytes,
    controller: String,
    /// Kept by the member that broadcast the partial keys: for every other member `i`,
    /// `g^(product of all shares but i's and this member's)`. With them this member
    /// refreshes its share with short exponents (`base_i^x'`) instead of raising every
    /// partial key to `x'/x`, a full-size exponent (8 times the cost in ffdhe2048).
    bases: Option<BTreeMap<String, Vec<u8>>>,
}

/// The new controller of a merge, collecting factored-out tokens.
struct Collect {
    token: Vec<u8>,
    expected: BTreeSet<String>,
    got: BTreeMap<String, Vec<u8>>,
    max_epoch: u64,
}

#[derive(Default)]
struct Running {
    /// The share this member's partial key will be raised to, once known.
    share: Option<SecretBytes>,
    upflow_done: bool,
    factored_out: bool,
    collect: Option<Collect>,
    /// Confirmations that arrived before this member had the key.
    early: EarlyConfirmations,
}

impl ka_kit::Running for Running {
    fn early(&mut self) -> &mut EarlyConfirmations {
        &mut self.early
    }
}

type Phase = ka_kit::Phase<Running, Confirmed>;

/// One member's GDH state machine.
pub struct Gdh {
    s: Session,
    any_member_refresh: bool,
    cs: Option<Confirmed>,
    phase: Phase,
}

fn parse_options(options: &conclave_plugin_sdk::api::Options) -> Result<bool> {
    let mut any = false;
    for e in options.entries.iter() {
        match (e.key.as_str(), e.value.as_str()) {
            ("any_member_refresh", "true") => any = true,
            ("any_member_refresh", "false") => any = false,
            ("any_member_refresh", v) => {
                return Err(PluginError::new(
                    ErrorCode::BAD_CONFIG,
                    format!("gdh: any_member_refresh must be \"true\" or \"false\", not {v:?}"),
                ));
            }
            (k, _) => {
                return Err(PluginError::new(
                    ErrorCode::BAD_CONFIG,
                    format!("gdh: unknown option {k:?} (known: any_member_refresh)"),
                ));
            }
        }
    }
    Ok(any)
}

fn partials_body(members: &[String], partials: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.names(members)?;
    for m in members {
        let p = partials.get(m).ok_or_else(|| {
            PluginError::new(ErrorCode::INTERNAL, format!("no partial key for {m}"))
        })?;
        w.bytes16(p)?;
    }
    Ok(w.finish())
}

impl Gdh {
    /// A state machine for `config`.
    pub fn new(config: &KeyAgreementConfig) -> Result<Self> {
        let any_member_refresh = parse_options(&config.options)?;
        let extra: &[u8] = if any_member_refresh {
            b"any_member_refresh=true"
        } else {
            b"any_member_refresh=false"
        };
        Ok(Self {
            s: Session::new(NAME, config, extra)?.with_mac_confirmation(step::CONFIRM),
            any_member_refresh,
            cs: None,
            phase: Phase::Idle,
        })
    }

    fn dh_exp(&self, element: &[u8], scalar: &SecretBytes) -> Result<SecretBytes> {
        self.s.dh().exp(element, scalar.expose())
    }

    /// `x' / x mod q`: raising a partial key to it replaces the share `x` by `x'`.
    fn refresh_ratio_for(&self, old: &SecretBytes, fresh: &SecretBytes) -> Result<SecretBytes> {
        let dh = self.s.dh();
        let inv = dh.invert_scalar(old.expose())?;
        dh.mul_scalars(fresh.expose(), inv.expose())
    }

    /// The completed state, if it belongs to the view just before the current one.
    fn valid_cs(&self, previous_view: Option<&[u8]>) -> bool {
        matches!((&self.cs, previous_view), (Some(cs), Some(prev)) if cs.view_id == prev)
    }

    fn start(&mut self, previous_view: Option<Vec<u8>>) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let me = self.s.me().to_string();
        if info.members.len() == 1 {
            return self.alone();
        }
        self.phase = Phase::Running(Running::default());
        if !info.with_oldest() {
            // A joiner: wait for the token (or the join message).
            return Ok(Vec::new());
        }
        let valid = self.valid_cs(previous_view.as_deref());
        if !valid {
            // Initial agreement: a merge into the oldest member alone.
            let chain: Vec<String> = info.members[1..].to_vec();
            if me != info.oldest() {
                return Ok(Vec::new());
            }
            let x = self.s.dh().random_scalar()?;
            let token = self.s.dh().exp_generator(x.expose())?;
            let action = self.upflow(&chain, &me, &token, self.s.last_epoch())?;
            self.running()?.share = Some(x);
            return Ok(vec![action]);
        }
        let base = info.stayed();
        let cs = self
            .cs
            .as_ref()
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no state"))?;
        let joiners: Vec<String> = info
            .members
            .iter()
            .filter(|m| !info.was_member(m))
            .cloned()
            .collect();
        let controller = base.last().cloned().unwrap_or_default();
        let my_share = SecretBytes::copy_from(cs.share.expose());
        if me != controller {
            self.running()?.share = Some(my_share);
            return Ok(Vec::new());
        }
        match joiners.len() {
            0 => {
                // Leave, partition, or no change: refresh and broadcast.
                let (share, actions) = self.refresh_partials(&info.members)?;
                let _ = share;
                Ok(actions)
            }
            1 => {
                // Join (4.1): a fresh share, every partial key handed to the joiner.
                let fresh = self.s.dh().random_scalar()?;
                let cs = self
                    .cs
                    .as_ref()
                    .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no state"))?;
                let partial = |m: &String| {
                    cs.partials.get(m).ok_or_else(|| {
                        PluginError::new(ErrorCode::INTERNAL, format!("no partial key for {m}"))
                    })
                };
                let covering = cs
                    .bases
                    .as_ref()
                    .filter(|b| base.iter().all(|m| *m == me || b.contains_key(m)));
                let ratio = match covering {
                    Some(_) => None,
                    None => Some(self.refresh_ratio_for(&my_share, &fresh)?),
                };
                let mut w = Writer::new();
                w.names(&base)?;
                for m in &base {
                    if *m == me {
                        w.bytes16(partial(m)?)?;
                    } else if let (Some(bases), None) = (covering, &ratio) {
                        w.bytes16(self.dh_exp(&bases[m], &fresh)?.expose())?;
                    } else if let Some(ratio) = &ratio {
                        let p = partial(m)?;
                        self.s.validate(p, &cs.controller)?;
                        w.bytes16(self.dh_exp(p, ratio)?.expose())?;
                    }
                }
                // The joiner's partial key is the new group secret of the old members:
                // this member's partial raised to its fresh share.
                let joiner_partial = self.dh_exp(partial(&me)?, &fresh)?;
                w.bytes16(joiner_partial.expose())?;
                let epoch = self.s.last_epoch();
                let action = self
                    .s
                    .seal(step::JOIN, Some(&joiners[0]), epoch, w.finish())?;
                self.running()?.share = Some(fresh);
                Ok(vec![action])
            }
            _ => {
                // Merge (4.2): a fresh share; the token (the old members' secret with it)
                // goes up the chain of joiners.
                let fresh = self.s.dh().random_scalar()?;
                let cs = self
                    .cs
                    .as_ref()
                    .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no state"))?;
                let mine = cs
                    .partials
                    .get(&me)
                    .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no own partial key"))?;
                let token = self.dh_exp(mine, &fresh)?;
                let action = self.upflow(&joiners, &me, token.expose(), self.s.last_epoch())?;
                self.running()?.share = Some(fresh);
                Ok(vec![action])
            }
        }
    }

    /// A group of one: the key is this member's alone, nothing to agree on.
    fn alone(&mut self) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let x = self.s.dh().random_scalar()?;
        let g = self.s.dh().generator();
        let secret = self.dh_exp(&g, &x)?;
        let epoch = self.s.last_epoch() + 1;
        let schedule = self
            .s
            .schedule(secret.expose(), epoch, std::slice::from_ref(&me))?;
        let view_id = self.s.current()?.view.view_id.to_vec();
        self.cs = Some(Confirmed {
            view_id,
            partials: BTreeMap::from([(me.clone(), g)]),
            share: x,
            controller: me,
            bases: Some(BTreeMap::new()),
        });
        self.phase = Phase::Idle;
        Ok(vec![self.s.key_ready(schedule)?])
    }

    fn running(&mut self) -> Result<&mut Running> {
        self.phase.running()
    }

    fn upflow(
        &mut self,
        chain: &[String],
        origin: &str,
        token: &[u8],
        epoch: u64,
    ) -> Result<Action> {
        let me = self.s.me().to_string();
        let next = if origin == me {
            chain.first()
        } else {
            chain
                .iter()
                .position(|m| *m == me)
                .and_then(|k| chain.get(k + 1))
        }
        .cloned()
        .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "gdh: no next member in the chain"))?;
        let mut w = Writer::new();
        w.names(chain)?;
        w.bytes8(origin.as_bytes())?;
        w.bytes16(token)?;
        self.s.seal(step::UPFLOW, Some(&next), epoch, w.finish())
    }

    /// The controller's leave or refresh: a fresh share, every other partial key raised
    /// to `x'/x`, broadcast. Starts confirming.
    fn refresh_partials(&mut self, members: &[String]) -> Result<(SecretBytes, Vec<Action>)> {
        let me = self.s.me().to_string();
        let fresh = self.s.dh().random_scalar()?;
        let cs = self
            .cs
            .as_ref()
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no state"))?;
        let covering = cs
            .bases
            .as_ref()
            .filter(|b| members.iter().all(|m| *m == me || b.contains_key(m)))
            .cloned();
        let mut partials = BTreeMap::new();
        let kept = match covering {
            // This member broadcast the last partial keys: short exponents.
            Some(bases) => {
                for m in members {
                    let p = if *m == me {
                        cs.partials.get(m).cloned().ok_or_else(|| {
                            PluginError::new(ErrorCode::INTERNAL, "no own partial key")
                        })?
                    } else {
                        self.dh_exp(&bases[m], &fresh)?.expose().to_vec()
                    };
                    partials.insert(m.clone(), p);
                }
                Some(
                    bases
                        .into_iter()
                        .filter(|(m, _)| members.contains(m))
                        .collect(),
                )
            }
            // A new controller: every other partial key raised to x'/x.
            None => {
                let ratio = self.refresh_ratio_for(&cs.share, &fresh)?;
                for m in members {
                    let p = cs.partials.get(m).ok_or_else(|| {
                        PluginError::new(ErrorCode::INTERNAL, format!("no partial key for {m}"))
                    })?;
                    let p = if *m == me {
                        p.clone()
                    } else {
                        self.s.validate(p, &cs.controller)?;
                        self.dh_exp(p, &ratio)?.expose().to_vec()
                    };
                    partials.insert(m.clone(), p);
                }
                None
            }
        };
        let epoch = self.s.last_epoch() + 1;
        let actions = self.broadcast_partials(
            members,
            partials,
            SecretBytes::copy_from(fresh.expose()),
            epoch,
            kept,
        )?;
        Ok((fresh, actions))
    }

    /// Broadcasts the partial keys as their controller and starts confirming.
    fn broadcast_partials(
        &mut self,
        members: &[String],
        partials: BTreeMap<String, Vec<u8>>,
        share: SecretBytes,
        epoch: u64,
        bases: Option<BTreeMap<String, Vec<u8>>>,
    ) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let body = partials_body(members, &partials)?;
        let mine = partials
            .get(&me)
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no own partial key"))?;
        let secret = self.dh_exp(mine, &share)?;
        let send = self.s.seal(step::PARTIALS, None, epoch, body.clone())?;
        let mut actions = vec![send];
        actions.extend(self.confirm(members, partials, share, secret, epoch, &me, &body, bases)?);
        Ok(actions)
    }

    /// Enters the confirmation round for a computed secret: multicasts this member's MAC
    /// and checks the confirmations that arrived early.
    #[allow(clippy::too_many_arguments)]
    fn confirm(
        &mut self,
        members: &[String],
        partials: BTreeMap<String, Vec<u8>>,
        share: SecretBytes,
        secret: SecretBytes,
        epoch: u64,
        source: &str,
        partials_bytes: &[u8],
        bases: Option<BTreeMap<String, Vec<u8>>>,
    ) -> Result<Vec<Action>> {
        let schedule = self.s.schedule(secret.expose(), epoch, members)?;
        let pending = Confirmed {
            view_id: self.s.current()?.view.view_id.to_vec(),
            partials,
            share,
            controller: source.to_string(),
            bases,
        };
        self.phase.confirm(
            &mut self.s,
            schedule,
            source,
            partials_bytes,
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
            step::UPFLOW => self.on_upflow(env),
            step::JOIN => self.on_join(env),
            step::BROADCAST => self.on_broadcast(env),
            step::FACTOR_OUT => self.on_factor_out(env),
            step::PARTIALS => self.on_partials(env),
            step::CONFIRM => self.phase.on_confirm(&mut self.s, env, &mut self.cs),
            other => Err(PluginError::new(
                ErrorCode::BAD_MESSAGE,
                format!("gdh: unknown step {other} from {}", env.sender),
            )),
        }
    }

    fn expect_running(&self, env: &Envelope, what: &str) -> Result<&Running> {
        match &self.phase {
            Phase::Running(r) if env.run == self.s.run() => Ok(r),
            _ => Err(self.s.out_of_step(env, what)),
        }
    }

    fn on_upflow(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        if self
            .expect_running(env, "not waiting for the token")?
            .upflow_done
        {
            return Err(self.s.out_of_step(env, "past the upflow"));
        }
        let mut r = Reader::new(&env.body, "gdh upflow");
        let chain = r.names()?;
        let origin = r.str8()?;
        let token = r.bytes16()?.to_vec();
        r.finish()?;
        let me = self.s.me().to_string();
        let info = self.s.current()?;
        let k = chain
            .iter()
            .position(|m| *m == me)
            .ok_or_else(|| self.s.out_of_step(env, "not in the token's chain"))?;
        let expected_sender = if k == 0 { &origin } else { &chain[k - 1] };
        if env.sender != *expected_sender
            || !info.contains(&origin)
            || !chain.iter().all(|m| info.contains(m))
        {
            return Err(self
                .s
                .out_of_step(env, "expecting the token from its predecessor"));
        }
        self.s.validate(&token, &env.sender)?;
        let x = self.s.dh().random_scalar()?;
        let max_epoch = env.epoch.max(self.s.last_epoch());
        let mut actions = Vec::new();
        if k + 1 < chain.len() {
            let next = self.dh_exp(&token, &x)?;
            actions.push(self.upflow(&chain, &origin, next.expose(), max_epoch)?);
        } else {
            // The last of the chain: broadcast the token as received; every other member
            // factors its share out of it.
            let expected: BTreeSet<String> =
                info.members.iter().filter(|m| **m != me).cloned().collect();
            let mut w = Writer::new();
            w.bytes16(&token)?;
            w.names(&expected.iter().collect::<Vec<_>>())?;
            actions.push(self.s.seal(step::BROADCAST, None, max_epoch, w.finish())?);
            self.running()?.collect = Some(Collect {
                token,
                expected,
                got: BTreeMap::new(),
                max_epoch,
            });
        }
        let running = self.running()?;
        running.share = Some(x);
        running.upflow_done = true;
        Ok(actions)
    }

    fn on_join(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        if self.expect_running(env, "not waiting to join")?.upflow_done {
            return Err(self.s.out_of_step(env, "past the join"));
        }
        let mut r = Reader::new(&env.body, "gdh join");
        let old = r.names()?;
        let mut partials = BTreeMap::new();
        for m in &old {
            partials.insert(m.clone(), r.bytes16()?.to_vec());
        }
        let k_r = r.bytes16()?.to_vec();
        r.finish()?;
        let me = self.s.me().to_string();
        let info = self.s.current()?;
        let mut all: Vec<String> = old.clone();
        all.push(me.clone());
        let same_set = {
            let a: BTreeSet<&String> = all.iter().collect();
            let b: BTreeSet<&String> = info.members.iter().collect();
            a == b && all.len() == info.members.len()
        };
        if !same_set || old.last() != Some(&env.sender) {
            return Err(self
                .s
                .out_of_step(env, "expecting a join from the newest old member"));
        }
        let members = info.members.clone();
        for p in partials.values() {
            self.s.validate(p, &env.sender)?;
        }
        self.s.validate(&k_r, &env.sender)?;
        let x = self.s.dh().random_scalar()?;
        let mut new_partials = BTreeMap::new();
        for (m, p) in &partials {
            new_partials.insert(m.clone(), self.dh_exp(p, &x)?.expose().to_vec());
        }
        new_partials.insert(me, k_r);
        let epoch = env.epoch.max(self.s.last_epoch()) + 1;
        self.running()?.upflow_done = true;
        // The partial keys as received are this member's bases for later refreshes.
        self.broadcast_partials(&members, new_partials, x, epoch, Some(partials))
    }

    fn on_broadcast(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let running = self.expect_running(env, "not waiting for the token broadcast")?;
        if running.factored_out || running.collect.is_some() {
            return Err(self.s.out_of_step(env, "past the token broadcast"));
        }
        let share = running
            .share
            .as_ref()
            .map(|s| SecretBytes::copy_from(s.expose()))
            .ok_or_else(|| self.s.out_of_step(env, "without a share yet"))?;
        let mut r = Reader::new(&env.body, "gdh broadcast");
        let token = r.bytes16()?.to_vec();
        let expected = r.names()?;
        r.finish()?;
        let me = self.s.me().to_string();
        if !expected.contains(&me) || env.sender == me {
            return Err(self.s.out_of_step(env, "not asked to factor out"));
        }
        self.s.validate(&token, &env.sender)?;
        let inv = self.s.dh().invert_scalar(share.expose())?;
        let out = self.dh_exp(&token, &inv)?;
        let mut w = Writer::new();
        w.bytes16(out.expose())?;
        let epoch = self.s.last_epoch();
        let action = self
            .s
            .seal(step::FACTOR_OUT, Some(&env.sender), epoch, w.finish())?;
        self.running()?.factored_out = true;
        Ok(vec![action])
    }

    fn on_factor_out(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let running = self.expect_running(env, "not collecting factored-out tokens")?;
        let Some(collect) = &running.collect else {
            return Err(self.s.out_of_step(env, "not the new controller"));
        };
        if !collect.expected.contains(&env.sender) || collect.got.contains_key(&env.sender) {
            return Err(self.s.out_of_step(env, "not expecting this member's token"));
        }
        let mut r = Reader::new(&env.body, "gdh factor-out");
        let value = r.bytes16()?.to_vec();
        r.finish()?;
        self.s.validate(&value, &env.sender)?;
        let collect = self
            .running()?
            .collect
            .as_mut()
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no collection"))?;
        collect.got.insert(env.sender.clone(), value);
        collect.max_epoch = collect.max_epoch.max(env.epoch);
        if collect.got.len() < collect.expected.len() {
            return Ok(Vec::new());
        }
        let running = self.running()?;
        let collect = running
            .collect
            .take()
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no collection"))?;
        let share = running
            .share
            .as_ref()
            .map(|s| SecretBytes::copy_from(s.expose()))
            .ok_or_else(|| PluginError::new(ErrorCode::INTERNAL, "no share"))?;
        let me = self.s.me().to_string();
        let members = self.s.current()?.members.clone();
        let mut partials = BTreeMap::new();
        for (m, v) in &collect.got {
            partials.insert(m.clone(), self.dh_exp(v, &share)?.expose().to_vec());
        }
        partials.insert(me, collect.token);
        let epoch = collect.max_epoch.max(self.s.last_epoch()) + 1;
        // The factored-out tokens are this member's bases for later refreshes.
        self.broadcast_partials(&members, partials, share, epoch, Some(collect.got))
    }

    fn parse_partials(&self, env: &Envelope) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut r = Reader::new(&env.body, "gdh partial keys");
        let members = r.names()?;
        let mut partials = BTreeMap::new();
        for m in &members {
            partials.insert(m.clone(), r.bytes16()?.to_vec());
        }
        r.finish()?;
        if members != self.s.current()?.members {
            return Err(self
                .s
                .out_of_step(env, "expecting partial keys for exactly the view's members"));
        }
        // Only this member's partial key meets its secret share now; the others are
        // validated if this member ever raises them (as controller of a later refresh
        // or join), so a member does n validations per event, not n^2 for the group.
        let mine = partials
            .get(self.s.me())
            .ok_or_else(|| self.s.out_of_step(env, "missing from the partial keys"))?;
        self.s.validate(mine, &env.sender)?;
        Ok(partials)
    }

    fn on_partials(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let run = self.s.run();
        let info = self.s.current()?.clone();
        // Which share applies, and is this a refresh by another member?
        let (share, refresh) = match &self.phase {
            Phase::Running(r) if env.run == run => match &r.share {
                Some(s) if r.collect.is_none() => (SecretBytes::copy_from(s.expose()), false),
                _ => return Err(self.s.out_of_step(env, "not expecting partial keys")),
            },
            Phase::Idle if env.run == run + 1 => {
                let cs = self
                    .cs
                    .as_ref()
                    .filter(|cs| cs.view_id.as_slice() == info.view.view_id.as_slice())
                    .ok_or_else(|| {
                        self.s
                            .out_of_step(env, "without a key of this view to refresh")
                    })?;
                if !self.any_member_refresh && env.sender != cs.controller {
                    return Err(self
                        .s
                        .out_of_step(env, "accepting refreshes from the controller only"));
                }
                (SecretBytes::copy_from(cs.share.expose()), true)
            }
            Phase::Confirming(c)
                if env.run == run && run > 0 && info.rank(&env.sender) > info.rank(&c.source) =>
            {
                // Concurrent refreshes: the newest refresher's wins, at every member.
                let cs = self
                    .cs
                    .as_ref()
                    .ok_or_else(|| self.s.out_of_step(env, "without a key to refresh"))?;
                (SecretBytes::copy_from(cs.share.expose()), false)
            }
            _ => return Err(self.s.out_of_step(env, "not expecting partial keys")),
        };
        if env.epoch <= self.s.last_epoch() {
            return Err(self
                .s
                .out_of_step(env, "at a later epoch than the one proposed"));
        }
        let partials = self.parse_partials(env)?;
        let mine = partials
            .get(&me)
            .ok_or_else(|| self.s.out_of_step(env, "missing from the partial keys"))?;
        let secret = self.dh_exp(mine, &share)?;
        if refresh {
            self.s.next_run();
            self.phase = Phase::Running(Running::default());
        }
        self.confirm(
            &info.members,
            partials,
            share,
            secret,
            env.epoch,
            &env.sender,
            &env.body,
            None,
        )
    }
}

impl KeyAgreementImpl for Gdh {
    fn algorithm(&self) -> String {
        NAME.into()
    }

    fn on_view(&mut self, view: &MembershipView) -> Result<Vec<Action>> {
        let previous = self.s.view().map(|v| v.view.view_id.to_vec());
        self.s.install_view(view)?;
        // Abandon whatever was running: its pending shares are dropped (and wiped).
        self.phase = Phase::Idle;
        self.start(previous)
    }

    fn on_message(&mut self, sender: &str, payload: &[u8]) -> Result<Vec<Action>> {
        receive(self, |g| &mut g.s, sender, payload, true, Self::handle)
    }

    fn refresh(&mut self) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let (keyed_view, controller) = match &self.cs {
            Some(cs) => (Some(cs.view_id.as_slice()), cs.controller.as_str()),
            None => (None, ""),
        };
        self.s.may_refresh(
            keyed_view,
            self.phase.is_idle(),
            controller,
            self.any_member_refresh,
        )?;
        if info.members.len() == 1 {
            return self.alone();
        }
        self.s.next_run();
        self.phase = Phase::Running(Running::default());
        let (_, actions) = self.refresh_partials(&info.members)?;
        Ok(actions)
    }

    fn stats(&self) -> KeyAgreementStats {
        self.s.stats()
    }
}
