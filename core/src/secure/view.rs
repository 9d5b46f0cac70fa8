//! The secure view of one group: which members of the engine's view take part in the key
//! agreement. A sans-IO state machine: no clock (time is an argument), no I/O, no crypto
//! (the shell authenticates control messages before they come here).
//!
//! # Rules
//!
//! Every input below arrives in the engine's agreed order (control messages are agreed
//! multicasts), so every member that takes the same inputs takes the same decisions at
//! the same point of the order: no timing guesses decide who is in.
//!
//! * **A view starts stage 0, round 0.** Members that this member's policy refuses
//!   outright (no trusted key, not in the rule's `members`) are excluded at once. Every
//!   other member is *expected* to announce its modules.
//! * **Announcing for a keyed secure view.** At a view's first stage, the members of a
//!   secure view that held a key when the view came and moved on together (in its
//!   secure view and in the new view, not among its joiners) announce once for all of
//!   them: the oldest of them in view order sends one announcement that names them
//!   and the engine view they moved from (they ran the same modules and hold the same
//!   last epoch). Everyone else (joiners, members left out before) announces for
//!   itself. A join thus costs two announcements, not one per member. Each member named
//!   checks what is said of it and asks for a switch (everyone announces itself) if it
//!   is wrong; one still waiting for it half-way to the timeout announces itself.
//! * **Different paths.** A member that kept its secure view without announcements
//!   (the fast path of [`SecureView::on_view`]) and hears an announcement of the stage
//!   from a member of it asks for a switch: that member came into the view by another
//!   path.
//! * **Collecting.** Each announcement classifies the members it speaks for: *admitted*
//!   (same modules as this member) or *other modules*; the first word on a member in
//!   the order stands. When every expected member has been announced, the round
//!   closes: the secure view is the admitted members, in view order, and the key
//!   agreement starts among them.
//! * **Timeout.** If a round has no key half-way to the agreement timeout, each of its
//!   candidates (admitted announcers while collecting, the secure view while agreeing)
//!   says it is alive; at the timeout each sends a *cut*: the candidates it heard from.
//!   The first cut delivered decides for everyone: the round ends, those kept are the
//!   next round's secure view, the others are excluded as *silent*.
//! * **Switch.** A *switch* from any member this member's policy admits starts a new
//!   stage: everyone applies its reloaded policy and announces again; members excluded
//!   as silent are not waited for, except the sender (a silent member comes back so).
//! * **Keyed.** A key for the current round ends it; later cuts of that round are moot.
//!
//! Messages for an older stage or round are moot (a race the order settled), not errors;
//! a message for a future stage or round, a cut from outside the candidates or one that
//! keeps outsiders is a security error and changes nothing.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::{Duration, Instant},
};

use conclave_plugin_sdk::{ErrorCode, PluginError};
use serde::{Deserialize, Serialize};

/// Why a member of the view is not in the secure view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusion {
    /// No trusted key (or a key of another signature algorithm) for its name.
    Untrusted,
    /// Trusted, but the group's rule does not list it in `members`.
    NotAllowed,
    /// It announced other modules than this member's policy gives the group.
    OtherModules,
    /// It did not take part before the agreement timeout.
    Silent,
    /// One of the policy's administrators (`[trust] admins`): it publishes policies
    /// into the group and takes no part in its keys.
    Administrator,
}

impl Exclusion {
    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Exclusion::Untrusted => "untrusted",
            Exclusion::NotAllowed => "not-allowed",
            Exclusion::OtherModules => "other-modules",
            Exclusion::Silent => "silent",
            Exclusion::Administrator => "administrator",
        }
    }

    /// Whether the member's policy standing refuses it (not something it can fix by
    /// announcing or answering).
    fn is_static(self) -> bool {
        matches!(
            self,
            Exclusion::Untrusted | Exclusion::NotAllowed | Exclusion::Administrator
        )
    }
}

/// Identifies one agreement: the stage and round it runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AgreementId {
    /// Module switches so far in the view.
    pub stage: u32,
    /// Cuts so far in the stage.
    pub round: u32,
}

/// What the shell must do, in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Announce this member's modules for the current stage (after applying a reloaded
    /// policy if `switched`).
    Announce {
        /// The stage began with a switch (not with a view).
        switched: bool,
    },
    /// Announce this member's modules and last epoch (no reloaded policy applied) for
    /// these members of its keyed secure view, in view order, this member first.
    AnnounceFor(Vec<String>),
    /// Multicast a liveness message for the current round.
    Alive,
    /// Multicast a cut for the current round keeping exactly these members.
    Cut(Vec<String>),
    /// Multicast a switch for the current stage (this member asks to come back).
    Rejoin,
    /// Multicast a switch for the current stage: a member of the secure view that this
    /// member kept without announcements (the fast path) announced, so it came into
    /// this view by another path (through views this member did not see), and everyone
    /// must announce itself.
    Diverged,
    /// Run the key agreement among `members` (view order; this member among them).
    Start {
        /// The agreement.
        id: AgreementId,
        /// The secure view.
        members: Vec<String>,
        /// The epoch that the stage's keys count up from: the highest epoch the secure
        /// view's members announced, while the stage has no key yet; `None` once it has
        /// one (every member of the secure view then had the same keys since, and counts
        /// on from its last epoch).
        base: Option<u64>,
    },
    /// A member is excluded (reported once per member and reason in a view).
    Excluded {
        /// Who.
        member: String,
        /// Why.
        reason: Exclusion,
    },
    /// This member is not in the secure view: it must hold no key.
    Out {
        /// Why.
        reason: Exclusion,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// No view yet.
    Idle,
    /// Waiting for announcements.
    Collecting {
        expected: BTreeSet<String>,
        /// How many of `expected` have not announced yet (the stage closes at 0,
        /// without a scan per announcement).
        waiting: usize,
        /// Members announced in this stage with this member's modules (and the last
        /// epoch announced for each), and with others.
        admitted: BTreeMap<String, u64>,
        other: BTreeSet<String>,
        /// The members whose announcement (of themselves, or for a keyed secure view)
        /// was taken in this stage.
        spoke: BTreeSet<String>,
    },
    /// The secure view is set; the key agreement runs.
    Agreeing { secure: Vec<String> },
    /// The secure view holds a key.
    Keyed { secure: Vec<String> },
    /// This member is not in the secure view.
    Out,
}

/// The secure-view state of one member in one group.
#[derive(Debug)]
pub struct SecureView {
    me: String,
    timeout: Duration,
    view_id: Vec<u8>,
    members: Vec<String>,
    /// `members`, for look-ups (each message's sender is checked against it).
    in_view: BTreeSet<String>,
    /// The last secure view set, for look-ups (while the phase has one, it is that).
    in_secure: BTreeSet<String>,
    stage: u32,
    round: u32,
    phase: Phase,
    /// Exclusions in force in this view (static ones for the view, silent until the
    /// member switches back in, other modules for the stage).
    excluded: BTreeMap<String, Exclusion>,
    /// The last exclusion reported per member in this view.
    reported: BTreeMap<String, Exclusion>,
    alive: BTreeSet<String>,
    round_start: Instant,
    sent_alive: bool,
    sent_cut: bool,
    rejoined: bool,
    /// Whether the current stage produced a key.
    stage_keyed: bool,
    /// The highest epoch announced by each member admitted in this stage.
    announced: BTreeMap<String, u64>,
    /// This stage's announcement of this member is one for its keyed secure view (by
    /// it or by another member of it): a reloaded policy is not applied in it.
    spoken_for: bool,
    /// The stage's secure view was kept without announcements (the fast path), and no
    /// member of it has announced since.
    fast: bool,
    /// This member announced itself, its keyed secure view's oldest member having not
    /// announced for it half-way to the timeout.
    sent_self: bool,
    out: VecDeque<Output>,
}

/// Who announces this member in a stage.
enum Speaker {
    /// This member, for itself.
    Itself,
    /// This member, for these members of its keyed secure view (itself first).
    For(Vec<String>),
    /// The oldest member of its keyed secure view, which is not this member.
    Another,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

impl SecureView {
    /// A member named `me` whose agreements may wait `timeout` for a member.
    pub fn new(me: &str, timeout: Duration, now: Instant) -> Self {
        Self {
            me: me.into(),
            timeout,
            view_id: Vec::new(),
            members: Vec::new(),
            in_view: BTreeSet::new(),
            in_secure: BTreeSet::new(),
            stage: 0,
            round: 0,
            phase: Phase::Idle,
            excluded: BTreeMap::new(),
            reported: BTreeMap::new(),
            alive: BTreeSet::new(),
            round_start: now,
            sent_alive: false,
            sent_cut: false,
            rejoined: false,
            stage_keyed: false,
            announced: BTreeMap::new(),
            spoken_for: false,
            fast: false,
            sent_self: false,
            out: VecDeque::new(),
        }
    }

    /// Changes the agreement timeout (a reloaded policy), from the next round on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The engine's current view id.
    pub fn view_id(&self) -> &[u8] {
        &self.view_id
    }

    /// The current stage and round.
    pub fn current(&self) -> AgreementId {
        AgreementId {
            stage: self.stage,
            round: self.round,
        }
    }

    /// The secure view, once the current round has one.
    pub fn secure(&self) -> Option<&[String]> {
        match &self.phase {
            Phase::Agreeing { secure } | Phase::Keyed { secure } => Some(secure),
            _ => None,
        }
    }

    /// Whether the current round holds a key.
    pub fn keyed(&self) -> bool {
        matches!(self.phase, Phase::Keyed { .. })
    }

    /// Whether this member is left out of the secure view.
    pub fn is_out(&self) -> bool {
        matches!(self.phase, Phase::Out)
    }

    /// Whether `member` is in the current secure view (asked for every message).
    pub fn admits(&self, member: &str) -> bool {
        self.secure().is_some() && self.in_secure.contains(member)
    }

    /// Why `member` is excluded, if it is.
    pub fn exclusion(&self, member: &str) -> Option<Exclusion> {
        self.excluded.get(member).copied()
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn exclude(&mut self, member: &str, reason: Exclusion) {
        self.excluded.insert(member.into(), reason);
        if self.reported.get(member) != Some(&reason) {
            self.reported.insert(member.into(), reason);
            if member != self.me {
                self.out.push_back(Output::Excluded {
                    member: member.into(),
                    reason,
                });
            }
        }
    }

    fn start_round(&mut self, now: Instant) {
        self.round_start = now;
        self.alive.clear();
        self.sent_alive = false;
        self.sent_cut = false;
    }

    /// A new engine view: `members` in view order (`joined` the new ones), with the
    /// exclusions this member's policy gives without hearing from them (untrusted, not
    /// allowed).
    ///
    /// **Fast path**: when nobody joined, the previous view ended keyed, and every
    /// member of the new view was in that keyed secure view or is refused outright, the
    /// secure view is the old one less those who left, at once, without announcements:
    /// every member of it moved from the same keyed view (view synchrony) and takes the
    /// same decision. A member that was left out of it (silent, other modules) prevents
    /// the fast path, so that it is heard again.
    pub fn on_view(
        &mut self,
        view_id: &[u8],
        members: &[String],
        joined: &[String],
        refused: &BTreeMap<String, Exclusion>,
        now: Instant,
    ) {
        let kept = match &self.phase {
            Phase::Keyed { secure }
                if joined.is_empty()
                    && members
                        .iter()
                        .all(|m| secure.contains(m) || refused.contains_key(m)) =>
            {
                Some(
                    members
                        .iter()
                        .filter(|m| secure.contains(m))
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            }
            _ => None,
        };
        // The members that held this member's key and moved on with it: the oldest
        // announces for them all. Not filtered by this member's refusals, so that each
        // of them names the same set (a receiver skips those it refuses).
        let keyed_with: Option<Vec<String>> = match &self.phase {
            Phase::Keyed { secure } if secure.contains(&self.me) && !joined.contains(&self.me) => {
                Some(
                    members
                        .iter()
                        .filter(|m| secure.contains(m) && !joined.contains(m))
                        .cloned()
                        .collect(),
                )
            }
            _ => None,
        };
        self.view_id = view_id.to_vec();
        self.members = members.to_vec();
        self.in_view = members.iter().cloned().collect();
        self.stage = 0;
        self.round = 0;
        self.excluded.clear();
        // An exclusion is reported again only if its member left and came back.
        self.reported.retain(|m, _| members.contains(m));
        self.rejoined = false;
        self.start_round(now);
        for (m, why) in refused {
            if members.contains(m) {
                self.exclude(m, *why);
            }
        }
        if let Some(secure) = kept.filter(|k| k.contains(&self.me)) {
            // The stage's keys continue the old view's: count on from the last epoch.
            self.stage_keyed = true;
            self.announced.clear();
            self.spoken_for = true;
            self.fast = true;
            self.set_secure(secure, now);
            return;
        }
        let speaker = match keyed_with {
            Some(k) if k.len() > 1 && k[0] == self.me => Speaker::For(k),
            Some(k) if k.len() > 1 => Speaker::Another,
            _ => Speaker::Itself,
        };
        self.collect(now, speaker);
    }

    /// Whether this stage's announcement of this member is one for its keyed secure
    /// view, or the fast path kept the secure view: either way no reloaded policy was
    /// applied, and one takes effect by a switch.
    pub fn spoken_for(&self) -> bool {
        self.spoken_for
    }

    /// Whether the current stage is still collecting announcements.
    pub fn collecting(&self) -> bool {
        matches!(self.phase, Phase::Collecting { .. })
    }

    /// Starts collecting the current stage's announcements.
    fn collect(&mut self, now: Instant, speaker: Speaker) {
        let expected: BTreeSet<String> = self
            .members
            .iter()
            .filter(|m| !self.excluded.contains_key(*m))
            .cloned()
            .collect();
        self.start_round(now);
        self.stage_keyed = false;
        self.announced.clear();
        self.spoken_for = false;
        self.fast = false;
        self.sent_self = false;
        if self.excluded.contains_key(&self.me) {
            // This member's own policy refuses it: it takes no part.
            let reason = self.excluded[&self.me];
            self.phase = Phase::Out;
            self.out.push_back(Output::Out { reason });
            return;
        }
        self.phase = Phase::Collecting {
            waiting: expected.len(),
            expected,
            admitted: BTreeMap::new(),
            other: BTreeSet::new(),
            spoke: BTreeSet::new(),
        };
        match speaker {
            Speaker::Itself => self.out.push_back(Output::Announce {
                switched: self.stage > 0,
            }),
            Speaker::For(members) => {
                self.spoken_for = true;
                self.out.push_back(Output::AnnounceFor(members));
            }
            Speaker::Another => self.spoken_for = true,
        }
    }

    fn check_stage(&self, sender: &str, stage: u32, what: &str) -> Result<bool, PluginError> {
        if stage > self.stage {
            return Err(refuse(
                ErrorCode::OUT_OF_STEP,
                format!(
                    "{what} from {sender} for stage {stage}; this member is at stage {}",
                    self.stage
                ),
            ));
        }
        Ok(stage == self.stage)
    }

    fn check_round(&self, sender: &str, id: AgreementId, what: &str) -> Result<bool, PluginError> {
        if !self.check_stage(sender, id.stage, what)? {
            return Ok(false);
        }
        if id.round > self.round {
            return Err(refuse(
                ErrorCode::OUT_OF_STEP,
                format!(
                    "{what} from {sender} for round {}; this member is at round {}",
                    id.round, self.round
                ),
            ));
        }
        Ok(id.round == self.round)
    }

    fn static_refusal(&self, sender: &str, what: &str) -> Result<(), PluginError> {
        if !self.in_view.contains(sender) {
            return Err(refuse(
                ErrorCode::NOT_A_MEMBER,
                format!("{what} from {sender}, who is not in the view"),
            ));
        }
        match self.excluded.get(sender) {
            Some(why) if why.is_static() => Err(refuse(
                ErrorCode::NOT_A_MEMBER,
                format!("{what} from {sender}, who is excluded ({})", why.name()),
            )),
            _ => Ok(()),
        }
    }

    /// An authenticated announcement from `sender` for `stage`: with this member's
    /// modules if `same_modules`, and `last_epoch` the sender's latest key epoch.
    pub fn on_announce(
        &mut self,
        sender: &str,
        stage: u32,
        same_modules: bool,
        last_epoch: u64,
        now: Instant,
    ) -> Result<(), PluginError> {
        self.static_refusal(sender, "announcement")?;
        if !self.check_stage(sender, stage, "announcement")? {
            return Ok(()); // of an earlier stage: moot
        }
        if self.diverged(sender) {
            return Ok(());
        }
        if !self.spoke(sender, stage)? {
            return Ok(());
        }
        self.classify(sender, same_modules, last_epoch);
        self.alive.insert(sender.into());
        self.try_close(now);
        Ok(())
    }

    /// Whether an announcement of the current stage from `sender` shows that members
    /// took different paths into this view: this member kept the secure view without
    /// announcements, and `sender`, a member of it, did not. Asks once for a switch.
    fn diverged(&mut self, sender: &str) -> bool {
        if !self.fast || !self.admits(sender) {
            return false;
        }
        self.fast = false;
        self.out.push_back(Output::Diverged);
        true
    }

    /// Takes `sender`'s announcement of this stage (of itself or for others): `Ok(false)`
    /// if the stage's secure view is already set, an error if `sender` spoke already.
    fn spoke(&mut self, sender: &str, stage: u32) -> Result<bool, PluginError> {
        let Phase::Collecting { spoke, .. } = &mut self.phase else {
            return Ok(false); // the stage's secure view is already set: too late
        };
        if !spoke.insert(sender.into()) {
            return Err(refuse(
                ErrorCode::REPLAYED_MESSAGE,
                format!("a second announcement from {sender} in stage {stage}"),
            ));
        }
        Ok(true)
    }

    /// Classifies `member` by an announcement of it, unless one came first: whether
    /// it did.
    fn classify(&mut self, member: &str, same_modules: bool, last_epoch: u64) -> bool {
        let Phase::Collecting {
            expected,
            waiting,
            admitted,
            other,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        if admitted.contains_key(member) || other.contains(member) {
            return false; // announced for already (by its keyed secure view's oldest)
        }
        if expected.contains(member) {
            *waiting -= 1;
        }
        if same_modules {
            admitted.insert(member.into(), last_epoch);
            self.announced.insert(member.into(), last_epoch);
            if self.excluded.get(member) == Some(&Exclusion::Silent) {
                self.excluded.remove(member);
            }
        } else {
            other.insert(member.into());
            self.exclude(member, Exclusion::OtherModules);
        }
        true
    }

    /// An authenticated announcement from `sender`, for stage `stage`, for `members` of
    /// its keyed secure view (itself among them): with this member's modules if
    /// `same_modules`, and `last_epoch` their latest key epoch. Members this member
    /// refuses outright are passed over, as their own announcements would be; a member
    /// announced already keeps what was said first. `Ok(true)` if it classified this
    /// member: what it said of this member's modules and epoch then stands for
    /// everyone, and the shell checks it (a member that moved through other views
    /// than the sender's has another last epoch, and asks for a switch).
    pub fn on_announce_for(
        &mut self,
        sender: &str,
        stage: u32,
        same_modules: bool,
        last_epoch: u64,
        members: &[String],
        now: Instant,
    ) -> Result<bool, PluginError> {
        self.static_refusal(sender, "announcement for a keyed secure view")?;
        if !self.check_stage(sender, stage, "announcement for a keyed secure view")? {
            return Ok(false); // of an earlier stage: moot
        }
        if stage != 0 {
            return Err(refuse(
                ErrorCode::BAD_MESSAGE,
                format!(
                    "announcement from {sender} for a keyed secure view in stage {stage}: after a switch every member announces itself"
                ),
            ));
        }
        // The members, in view order, each once, the sender first.
        let mut at = 0;
        for m in members {
            match self.members[at..].iter().position(|x| x == m) {
                Some(i) => at += i + 1,
                None => {
                    return Err(refuse(
                        ErrorCode::BAD_MESSAGE,
                        format!(
                            "announcement from {sender} for [{}]: not members of the view in view order, each once",
                            members.join(", ")
                        ),
                    ));
                }
            }
        }
        if members.first().map(String::as_str) != Some(sender) {
            return Err(refuse(
                ErrorCode::BAD_MESSAGE,
                format!(
                    "announcement from {sender} for [{}]: its sender is not the first of them",
                    members.join(", ")
                ),
            ));
        }
        if self.diverged(sender) || !self.spoke(sender, stage)? {
            return Ok(false);
        }
        let mut classified_me = false;
        for m in members {
            let refused = self.excluded.get(m).is_some_and(|why| why.is_static());
            if !refused && self.classify(m, same_modules, last_epoch) {
                classified_me |= *m == self.me;
            }
        }
        self.alive.insert(sender.into());
        self.try_close(now);
        Ok(classified_me)
    }

    fn try_close(&mut self, now: Instant) {
        let Phase::Collecting {
            waiting, admitted, ..
        } = &self.phase
        else {
            return;
        };
        if *waiting > 0 {
            return;
        }
        let secure: Vec<String> = self
            .members
            .iter()
            .filter(|m| admitted.contains_key(*m))
            .cloned()
            .collect();
        // The agreement's own timers start now: an announcement says nothing of a
        // member's part in the agreement that follows.
        self.set_secure(secure, now);
    }

    /// Sets the round's secure view; the round's timers start again.
    fn set_secure(&mut self, secure: Vec<String>, now: Instant) {
        self.start_round(now);
        self.in_secure = secure.iter().cloned().collect();
        if self.in_secure.contains(&self.me) {
            let base = (!self.stage_keyed).then(|| {
                secure
                    .iter()
                    .filter_map(|m| self.announced.get(m))
                    .copied()
                    .max()
                    .unwrap_or(0)
            });
            self.out.push_back(Output::Start {
                id: self.current(),
                members: secure.clone(),
                base,
            });
            self.phase = Phase::Agreeing { secure };
        } else {
            let reason = self
                .excluded
                .get(&self.me)
                .copied()
                .unwrap_or(Exclusion::Silent);
            self.phase = Phase::Out;
            self.out.push_back(Output::Out { reason });
            if reason == Exclusion::Silent && !self.rejoined {
                // Left out for silence (paused, slow): ask once per view to come back.
                self.rejoined = true;
                self.out.push_back(Output::Rejoin);
            }
        }
    }

    /// Whether `member` may decide the current round's cut, and be kept by it (without
    /// building the set: this is asked at every event, through `poll_timeout`).
    fn is_candidate(&self, member: &str) -> bool {
        match &self.phase {
            Phase::Collecting { admitted, .. } => admitted.contains_key(member),
            Phase::Agreeing { .. } => self.in_secure.contains(member),
            _ => false,
        }
    }

    /// The members that may decide the current round's cut, and be kept by it.
    fn candidates(&self) -> Option<BTreeSet<String>> {
        match &self.phase {
            Phase::Collecting { admitted, .. } => Some(admitted.keys().cloned().collect()),
            Phase::Agreeing { secure } => Some(secure.iter().cloned().collect()),
            _ => None,
        }
    }

    /// An authenticated switch from `sender` for `stage`.
    pub fn on_switch(&mut self, sender: &str, stage: u32, now: Instant) -> Result<(), PluginError> {
        self.static_refusal(sender, "switch")?;
        if !self.check_stage(sender, stage, "switch")? {
            return Ok(()); // another switch came first
        }
        self.stage += 1;
        self.round = 0;
        // Other modules may have changed; silent members stay out unless they ask.
        self.excluded
            .retain(|m, why| why.is_static() || (*why == Exclusion::Silent && m != sender));
        if sender == self.me {
            self.excluded.remove(&self.me);
        }
        self.collect(now, Speaker::Itself);
        Ok(())
    }

    /// An authenticated liveness message.
    pub fn on_alive(&mut self, sender: &str, id: AgreementId) -> Result<(), PluginError> {
        self.static_refusal(sender, "liveness message")?;
        if !self.check_round(sender, id, "liveness message")? {
            return Ok(());
        }
        if self.is_candidate(sender) {
            self.alive.insert(sender.into());
        }
        Ok(())
    }

    /// An authenticated cut: the round `id` ends, `keep` is the next secure view.
    pub fn on_cut(
        &mut self,
        sender: &str,
        id: AgreementId,
        keep: &[String],
        now: Instant,
    ) -> Result<(), PluginError> {
        self.static_refusal(sender, "cut")?;
        if !self.check_round(sender, id, "cut")? {
            return Ok(()); // the round already ended
        }
        let Some(candidates) = self.candidates() else {
            return Ok(()); // keyed (the cut raced the key) or out: moot
        };
        if !candidates.contains(sender) {
            // A member of another modules' secure view, or one that is not in the
            // round: not this round's decision.
            return Ok(());
        }
        let keep_set: BTreeSet<&String> = keep.iter().collect();
        if keep_set.len() != keep.len()
            || !keep.iter().all(|m| candidates.contains(m))
            || !keep.iter().any(|m| m == sender)
        {
            return Err(refuse(
                ErrorCode::BAD_MESSAGE,
                format!(
                    "cut from {sender} keeps [{}], not a subset of this round's members [{}] that includes its sender",
                    keep.join(", "),
                    candidates.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let dropped: Vec<String> = match &self.phase {
            Phase::Collecting { expected, .. } => self
                .members
                .iter()
                .filter(|m| {
                    (expected.contains(*m) || candidates.contains(*m))
                        && !keep_set.contains(m)
                        && self.excluded.get(*m) != Some(&Exclusion::OtherModules)
                })
                .cloned()
                .collect(),
            _ => candidates
                .iter()
                .filter(|m| !keep_set.contains(m))
                .cloned()
                .collect(),
        };
        for m in &dropped {
            self.exclude(m, Exclusion::Silent);
        }
        self.round += 1;
        let secure: Vec<String> = self
            .members
            .iter()
            .filter(|m| keep_set.contains(m))
            .cloned()
            .collect();
        self.set_secure(secure, now);
        Ok(())
    }

    /// The key agreement `id` produced a key for the secure view.
    pub fn on_key(&mut self, id: AgreementId) {
        if id == self.current()
            && let Phase::Agreeing { secure } = &self.phase
        {
            self.stage_keyed = true;
            self.phase = Phase::Keyed {
                secure: secure.clone(),
            };
        }
    }

    /// Whether this member waits half-way to the timeout for the announcement that its
    /// keyed secure view's oldest member makes for it, before it makes its own.
    fn awaits_word(&self) -> bool {
        match &self.phase {
            Phase::Collecting {
                admitted, other, ..
            } => {
                self.spoken_for
                    && !self.sent_self
                    && !admitted.contains_key(&self.me)
                    && !other.contains(&self.me)
            }
            _ => false,
        }
    }

    /// When [`on_timeout`](Self::on_timeout) next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.awaits_word() {
            return Some(self.round_start + self.timeout / 2);
        }
        if !self.is_candidate(&self.me) {
            return None;
        }
        if !self.sent_alive {
            Some(self.round_start + self.timeout / 2)
        } else if !self.sent_cut {
            Some(self.round_start + self.timeout)
        } else {
            None
        }
    }

    /// Time passes: past half the timeout, say this member is alive; past the timeout,
    /// propose a cut of the members not heard from.
    pub fn on_timeout(&mut self, now: Instant) {
        let Some(at) = self.poll_timeout() else {
            return;
        };
        if now < at {
            return;
        }
        if self.awaits_word() {
            // The keyed secure view's oldest member has not announced for this one
            // (stopped, slow): it speaks for itself, and so takes part in the round's
            // timeout like anyone who announced.
            self.sent_self = true;
            self.out
                .push_back(Output::AnnounceFor(vec![self.me.clone()]));
            return;
        }
        if !self.sent_alive {
            self.sent_alive = true;
            self.out.push_back(Output::Alive);
            if now < self.round_start + self.timeout {
                return;
            }
        }
        if !self.sent_cut {
            self.sent_cut = true;
            let Some(candidates) = self.candidates() else {
                return;
            };
            let keep: Vec<String> = self
                .members
                .iter()
                .filter(|m| candidates.contains(*m) && (self.alive.contains(*m) || **m == self.me))
                .cloned()
                .collect();
            self.out.push_back(Output::Cut(keep));
        }
    }
}
