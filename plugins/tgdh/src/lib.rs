//! The `tgdh` key-agreement plugin: Tree-based Group Diffie-Hellman (Kim, Perrig and
//! Tsudik, ACM TISSEC 7(1), 2004), authenticated by signatures, with key confirmation,
//! robust to cascaded membership changes.
//!
//! # The key tree
//!
//! The members are the leaves of a binary tree. Every node `v` has a secret key `k_v`
//! (a scalar) and a *blinded key* `BK_v = g^(k_v)`. A leaf's key is its member's random
//! share; an inner node's key is derived from its children's:
//! `k_v = H(BK_l ^ k_r) = H(BK_r ^ k_l)`, where `H` maps the Diffie-Hellman result (a
//! group element) to a scalar (below). A member knows the keys of the nodes on its path
//! to the root (from its share and the blinded keys of its *co-path*, the siblings of
//! its path's nodes), and the group secret is the root's key: `O(log n)`
//! exponentiations per member per event instead of GDH's `O(n)`.
//!
//! **From a DH result to a scalar**: `H(e)` is HKDF-SHA256 of the element's encoding
//! (info: the protocol's parameters) to 32 bytes. In a group whose scalars are longer
//! than 32 bytes (the MODP groups: big-endian exponents below `q`, which is far above
//! `2^256`) the 32 bytes are the scalar's low-order bytes, a 256-bit exponent as for
//! the shares; in a group of 32-byte scalars (Ristretto255, little-endian below
//! `l > 2^252`; P-256, big-endian below `n > 2^255`) the top four bits of the first
//! and of the last byte are cleared, which puts the value below `2^252` in either byte
//! order: a uniform 248-bit scalar.
//!
//! # One agreement
//!
//! Each view changes the tree deterministically (every member that holds it makes the
//! same changes): departed leaves are pruned (a leaf's sibling subtree takes its
//! parent's place); then new members are inserted one by one in view order, each at the
//! shallowest, rightmost node where it does not increase the tree's height (else above
//! the root), as in TISSEC 2004. One member, the *sponsor* (TISSEC's sponsor: the
//! rightmost leaf of the subtree that took the first departed leaf's parent's place; for
//! joins only, the rightmost leaf of the first insertion node; for a refresh, the member
//! that asked), draws a fresh share. Nodes whose key changes are *stale*; nodes whose key
//! stays but whose blinded key some member does not hold yet (a subtree moved up by a
//! departure, the co-path of a new member) are *announced*.
//!
//! Every stale or announced node has one member who broadcasts its blinded key: the
//! sponsor for the nodes above its leaf (and for the announced nodes of its co-path,
//! whose blinded keys it holds), the rightmost leaf of the node otherwise. Each member
//! computes the keys up its path as far as the blinded keys it holds allow, broadcasts
//! the blinded keys it owes (one message per burst), and goes on as others' arrive: one
//! round for a leave or a refresh, two for a join (the new member's blinded key, then
//! the sponsor's), at most the tree's height for a partition or a merge.
//!
//! A new member does not know the tree: the sponsor's first message carries it (its
//! shape and, for each node, whether it is stale or announced). When the previous
//! agreement of the oldest member's component did not complete (a cascade), or there is
//! none, every member starts afresh: the tree is built by inserting every member in view
//! order, every share is fresh, and the oldest member's first message carries the shape
//! for those who came from elsewhere.
//!
//! The new key's epoch is one above the largest epoch named by the first messages of the
//! members whose leaf is fresh (the sponsor's, the new members'); a member reports the
//! key after every member's MAC over the tree's shape has arrived (the kit's key
//! confirmation), like `gdh` and `ckd`.
//!
//! # Messages
//!
//! All go through [`conclave_plugin_sdk::ka_kit`]: signed, bound to the group, view,
//! run, step, sender and parameters. A member's `k`-th message of a run is step `k + 1`;
//! its body names the blinded keys it owes by their path from the root, and each is
//! checked: the node must be stale or announced and owed by the sender, and a blinded
//! key that differs from one already held is refused. Received blinded keys are
//! validated as group elements when first used in an exponentiation (a member uses
//! only its co-path's).
//!
//! # Differences from TISSEC 2004
//!
//! A merge inserts the members of the other components as new leaves (the base tree is
//! the oldest member's component's) instead of grafting their trees; only the sponsor
//! refreshes its share in a partition; and every message is signed and the key
//! confirmed, which the paper leaves to the group communication system (docs/protocols.md
//! gives the counts).

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
};

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::key_agreement::{Action, KeyAgreementConfig, KeyAgreementStats, MembershipView},
    implement::{KeyAgreementImpl, Plugin},
    ka_kit::{self, EarlyConfirmations, Envelope, KDF, Reader, Session, Writer, receive},
};

type Result<T> = std::result::Result<T, PluginError>;

/// The plugin's name, and its protocol's.
pub const NAME: &str = "tgdh";

/// The tallest balanced tree kept: a taller one (left by many departures) is rebuilt
/// afresh.
pub const MAX_HEIGHT: usize = 64;

/// How new leaves go into the tree: the one thing that tells TGDH from STR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// TGDH: at the shallowest, rightmost node where the tree does not grow taller.
    Balanced,
    /// STR (the skinny tree): always above the root, so that every inner node has a
    /// leaf as its right child; a join costs a constant number of exponentiations and a
    /// leave one per level below the top.
    Skinny,
}

impl Layout {
    /// The protocol's name (`tgdh`, `str`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Balanced => NAME,
            Layout::Skinny => "str",
        }
    }

    /// The tallest tree kept (a skinny tree's height is its size less one: STR groups
    /// hold at most 1,025 members).
    pub fn max_height(self) -> usize {
        match self {
            Layout::Balanced => MAX_HEIGHT,
            Layout::Skinny => 1024,
        }
    }
}

/// A member's tree messages of one run are steps `1..=LAST_TREE_STEP`.
const LAST_TREE_STEP: u8 = 200;
const CONFIRM: u8 = 250;

/// A path from the root: `false` is left, `true` right.
type Path = Vec<bool>;

/// The plugin (marker type).
pub struct TgdhPlugin;

impl Plugin for TgdhPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::KeyAgreement;
    const DESCRIPTION: &'static str = "TGDH: tree-based group Diffie-Hellman, O(log n) exponentiations per event, signed, key-confirmed, cascade-robust";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::KeyAgreement, NAME)]
    }

    fn check_options(options: &conclave_plugin_sdk::api::Options) -> Result<()> {
        ka_kit::refuse_options(NAME, options)
    }

    fn new_key_agreement(config: &KeyAgreementConfig) -> Result<Box<dyn KeyAgreementImpl>> {
        Self::check_options(&config.options)?;
        Ok(Box::new(TreeAgreement::new(config, Layout::Balanced)?))
    }
}

conclave_plugin_sdk::builtin_plugin!(TgdhPlugin);

fn internal(what: &str) -> PluginError {
    PluginError::new(ErrorCode::INTERNAL, format!("tgdh: {what}"))
}

fn bad(what: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::BAD_MESSAGE, format!("tgdh: {}", what.into()))
}

// ---------------------------------------------------------------------------------------
// The tree

/// One node of a member's copy of the key tree.
#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    /// Its blinded key, if this member holds it.
    bk: Option<Vec<u8>>,
    /// Whether `bk` was validated as a group element.
    checked: bool,
    /// Its key, if this member knows it (nodes on its path).
    k: Option<SecretBytes>,
    /// Its key changes in this run.
    stale: bool,
    /// Its key stays, but its blinded key is broadcast again in this run.
    announce: bool,
    /// Order of departure that moved this subtree up (0: none), for choosing the sponsor.
    promoted: u32,
}

#[derive(Clone, Debug)]
enum Kind {
    Leaf(String),
    Inner(Box<Node>, Box<Node>),
}

impl Node {
    fn leaf(name: &str) -> Node {
        Node {
            kind: Kind::Leaf(name.to_string()),
            bk: None,
            checked: false,
            k: None,
            stale: false,
            announce: false,
            promoted: 0,
        }
    }

    fn inner(left: Node, right: Node) -> Node {
        Node {
            kind: Kind::Inner(Box::new(left), Box::new(right)),
            ..Node::leaf("")
        }
    }

    fn children(&self) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Inner(l, r) => Some((l, r)),
            Kind::Leaf(_) => None,
        }
    }

    fn at(&self, path: &[bool]) -> Option<&Node> {
        let mut n = self;
        for &right in path {
            let (l, r) = n.children()?;
            n = if right { r } else { l };
        }
        Some(n)
    }

    fn at_mut(&mut self, path: &[bool]) -> Option<&mut Node> {
        let mut n = self;
        for &right in path {
            n = match &mut n.kind {
                Kind::Inner(l, r) => {
                    if right {
                        r
                    } else {
                        l
                    }
                }
                Kind::Leaf(_) => return None,
            };
        }
        Some(n)
    }

    /// Marks the key as changing: this member's copy of it and of its blinded key go.
    fn make_stale(&mut self) {
        self.stale = true;
        self.announce = false;
        self.k = None;
        self.bk = None;
        self.checked = false;
    }

    /// Marks the nodes on `path` (the root down to the node at `path`, inclusive) stale.
    fn stale_along(&mut self, path: &[bool]) {
        let mut n = self;
        n.make_stale();
        for &right in path {
            n = match &mut n.kind {
                Kind::Inner(l, r) => {
                    if right {
                        r
                    } else {
                        l
                    }
                }
                Kind::Leaf(_) => return,
            };
            n.make_stale();
        }
    }

    fn height(&self) -> usize {
        match &self.kind {
            Kind::Leaf(_) => 0,
            Kind::Inner(l, r) => 1 + l.height().max(r.height()),
        }
    }

    fn rightmost_leaf(&self) -> &str {
        match &self.kind {
            Kind::Leaf(name) => name,
            Kind::Inner(_, r) => r.rightmost_leaf(),
        }
    }

    /// Clears the marks of a run (stale, announced, moved up) in the whole tree.
    fn clear_marks(&mut self) {
        self.stale = false;
        self.announce = false;
        self.promoted = 0;
        if let Kind::Inner(l, r) = &mut self.kind {
            l.clear_marks();
            r.clear_marks();
        }
    }

    /// The path of `m`'s leaf.
    fn path_of(&self, m: &str) -> Result<Path> {
        fn walk(n: &Node, m: &str, path: &mut Path) -> bool {
            match &n.kind {
                Kind::Leaf(name) => name == m,
                Kind::Inner(l, r) => {
                    for (side, child) in [(false, l), (true, r)] {
                        path.push(side);
                        if walk(child, m, path) {
                            return true;
                        }
                        path.pop();
                    }
                    false
                }
            }
        }
        let mut path = Vec::new();
        if walk(self, m, &mut path) {
            Ok(path)
        } else {
            Err(internal(&format!("{m} is not in the tree")))
        }
    }

    /// Every leaf's name, left to right, and whether the leaf is stale. One walk,
    /// without building paths (an STR tree's paths are O(n^2) bits in all).
    fn leaves(&self) -> Vec<(String, bool)> {
        fn walk(n: &Node, out: &mut Vec<(String, bool)>) {
            match &n.kind {
                Kind::Leaf(name) => out.push((name.clone(), n.stale)),
                Kind::Inner(l, r) => {
                    walk(l, out);
                    walk(r, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The insertion node of a new leaf: for TGDH (TISSEC 2004) the shallowest, then
    /// rightmost, node where one more level does not make the tree taller, the root if
    /// there is none; for STR always the root.
    fn insertion_point(&self, layout: Layout) -> Path {
        if layout == Layout::Skinny {
            return Path::new();
        }
        /// Returns the node's height; records the best candidate (post-order: among
        /// nodes of one depth, a later one is further right).
        fn walk(n: &Node, path: &mut Path, h: usize, best: &mut Option<(usize, Path)>) -> usize {
            let height = match &n.kind {
                Kind::Leaf(_) => 0,
                Kind::Inner(l, r) => {
                    path.push(false);
                    let hl = walk(l, path, h, best);
                    path.pop();
                    path.push(true);
                    let hr = walk(r, path, h, best);
                    path.pop();
                    1 + hl.max(hr)
                }
            };
            let depth = path.len();
            if depth + height < h && best.as_ref().is_none_or(|(d, _)| depth <= *d) {
                *best = Some((depth, path.clone()));
            }
            height
        }
        let mut best = None;
        walk(self, &mut Vec::new(), self.height(), &mut best);
        best.map(|(_, p)| p).unwrap_or_default()
    }

    /// Puts a new leaf `name` at `at`: the node there becomes the left child of a new
    /// inner node whose right child is the leaf. The new nodes and those above are stale.
    fn insert(&mut self, at: &[bool], name: &str) -> Result<()> {
        let slot = self
            .at_mut(at)
            .ok_or_else(|| internal("insertion point outside the tree"))?;
        let old = std::mem::replace(slot, Node::leaf(""));
        let mut leaf = Node::leaf(name);
        leaf.stale = true;
        *slot = Node::inner(old, leaf);
        self.stale_along(at);
        Ok(())
    }

    /// Removes the leaf at `path` (not the root): its sibling takes its parent's place,
    /// marked `promoted = order`; the nodes above are stale.
    fn remove(&mut self, path: &[bool], order: u32) -> Result<()> {
        let (&last, parent) = path
            .split_last()
            .ok_or_else(|| internal("removing the only leaf"))?;
        let slot = self
            .at_mut(parent)
            .ok_or_else(|| internal("departed leaf outside the tree"))?;
        let Kind::Inner(l, r) = std::mem::replace(&mut slot.kind, Kind::Leaf(String::new())) else {
            return Err(internal("a leaf's parent is a leaf"));
        };
        let mut sibling = if last { *l } else { *r };
        if sibling.promoted == 0 {
            sibling.promoted = order;
        }
        *slot = sibling;
        if let Some((_, above)) = parent.split_last() {
            self.stale_along(&parent[..above.len()]);
        }
        Ok(())
    }

    /// The shape, pre-order: per node a flags byte (bit 0 inner, bit 1 stale, bit 2
    /// announced; flags only `with_flags`), a leaf's name after it.
    fn encode_shape(&self, w: &mut Writer, with_flags: bool) -> Result<()> {
        let mut flags = u8::from(matches!(self.kind, Kind::Inner(..)));
        if with_flags {
            flags |= u8::from(self.stale) << 1 | u8::from(self.announce) << 2;
        }
        w.u8(flags);
        match &self.kind {
            Kind::Leaf(name) => {
                w.bytes8(name.as_bytes())?;
            }
            Kind::Inner(l, r) => {
                l.encode_shape(w, with_flags)?;
                r.encode_shape(w, with_flags)?;
            }
        }
        Ok(())
    }

    fn decode_shape(r: &mut Reader<'_>, depth: usize, max: usize) -> Result<Node> {
        if depth > max {
            return Err(bad("a tree taller than the limit"));
        }
        let flags = r.u8()?;
        if flags & !0b111 != 0 {
            return Err(bad("unknown node flags"));
        }
        let mut node = if flags & 1 == 1 {
            let l = Node::decode_shape(r, depth + 1, max)?;
            let rr = Node::decode_shape(r, depth + 1, max)?;
            Node::inner(l, rr)
        } else {
            Node::leaf(&r.str8()?)
        };
        node.stale = flags & 2 != 0;
        node.announce = flags & 4 != 0;
        Ok(node)
    }
}

fn encode_path(w: &mut Writer, path: &[bool]) -> Result<()> {
    let len = u16::try_from(path.len()).map_err(|_| internal("path too long"))?;
    w.u16(len);
    let mut bytes = vec![0u8; path.len().div_ceil(8)];
    for (i, &b) in path.iter().enumerate() {
        if b {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    w.raw(&bytes);
    Ok(())
}

fn decode_path(r: &mut Reader<'_>, max: usize) -> Result<Path> {
    let len = usize::from(r.u16()?);
    if len > max {
        return Err(bad("a path longer than the tallest tree"));
    }
    let bytes = r.take(len.div_ceil(8))?;
    Ok((0..len)
        .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect())
}

/// Where the leaves of a tree are: each leaf's rank among the leaves (left to right)
/// and, for every node in pre-order, how many nodes and leaves its subtree has. A path
/// is found by walking down from the root, left while the rank is below the left
/// subtree's leaf count.
#[derive(Clone, Debug)]
struct LeafIndex {
    rank: HashMap<String, u32>,
    /// `(nodes, leaves)` of each node's subtree, in pre-order (the root first, a left
    /// child right after its parent, a right child after its sibling's subtree).
    sizes: Vec<(u32, u32)>,
}

impl LeafIndex {
    fn new(tree: &Node) -> LeafIndex {
        fn walk(n: &Node, index: &mut LeafIndex) -> (u32, u32) {
            let at = index.sizes.len();
            index.sizes.push((1, 1));
            let size = match &n.kind {
                Kind::Leaf(name) => {
                    let rank = u32::try_from(index.rank.len()).unwrap_or(u32::MAX);
                    index.rank.insert(name.clone(), rank);
                    (1, 1)
                }
                Kind::Inner(l, r) => {
                    let (ln, ll) = walk(l, index);
                    let (rn, rl) = walk(r, index);
                    (1 + ln + rn, ll + rl)
                }
            };
            index.sizes[at] = size;
            size
        }
        let mut index = LeafIndex {
            rank: HashMap::new(),
            sizes: Vec::new(),
        };
        walk(tree, &mut index);
        index
    }

    /// The path of `m`'s leaf, if it is in the tree.
    fn path(&self, m: &str) -> Option<Path> {
        let mut rank = *self.rank.get(m)?;
        let mut at = 0usize;
        let mut path = Vec::new();
        while self.sizes.get(at)?.0 > 1 {
            let left = at + 1;
            let (left_nodes, left_leaves) = *self.sizes.get(left)?;
            if rank < left_leaves {
                path.push(false);
                at = left;
            } else {
                rank -= left_leaves;
                path.push(true);
                at = left + left_nodes as usize;
            }
        }
        Some(path)
    }
}

/// The tree of a run, with who must broadcast what.
#[derive(Clone, Debug)]
struct Run {
    tree: Node,
    /// The member drawing a fresh share for the run (none when everyone does).
    sponsor: Option<String>,
    /// Where each leaf is, built in one walk at the first lookup (the tree's shape is
    /// fixed during a run): a path is then a walk down from the root, O(depth), where a
    /// search of the tree for the name is O(n) (and a merge looks up every sender's).
    index: RefCell<Option<LeafIndex>>,
    /// The sponsor's path, which every blinded key received is checked against.
    sponsor_path: RefCell<Option<Path>>,
    /// The members whose leaf is fresh this run (their first messages name the epoch).
    fresh: BTreeSet<String>,
}

impl Run {
    fn new(tree: Node, sponsor: Option<String>) -> Run {
        let fresh = tree
            .leaves()
            .into_iter()
            .filter(|(_, stale)| *stale)
            .map(|(m, _)| m)
            .collect();
        Run {
            tree,
            sponsor,
            index: RefCell::default(),
            sponsor_path: RefCell::default(),
            fresh,
        }
    }

    /// The path of `m`'s leaf (the sponsor's is kept: it is asked for at every blinded
    /// key; the others are walked down to, which an STR tree, as tall as the group, makes
    /// O(n) each: kept for all, they would be O(n^2)).
    fn path(&self, m: &str) -> Result<Path> {
        let sponsor = self.sponsor.as_deref() == Some(m);
        if sponsor && let Some(p) = self.sponsor_path.borrow().as_ref() {
            return Ok(p.clone());
        }
        let p = self
            .index
            .borrow_mut()
            .get_or_insert_with(|| LeafIndex::new(&self.tree))
            .path(m)
            .ok_or_else(|| internal(&format!("{m} is not in the tree")))?;
        if sponsor {
            *self.sponsor_path.borrow_mut() = Some(p.clone());
        }
        Ok(p)
    }

    /// Who broadcasts the blinded key of the (stale or announced) node at `v`.
    fn owner(&self, v: &[bool]) -> Result<&str> {
        let node = self
            .tree
            .at(v)
            .ok_or_else(|| bad("a node outside the tree"))?;
        let sponsor = self.sponsor_and_path()?;
        let common = sponsor.as_ref().map_or(0, |(_, sp)| common_prefix(sp, v));
        Ok(owner_at(sponsor.as_ref(), node, v.len(), common))
    }

    /// The sponsor and its path, if the run has one.
    fn sponsor_and_path(&self) -> Result<Option<(&str, Path)>> {
        match self.sponsor.as_deref() {
            Some(s) => Ok(Some((s, self.path(s)?))),
            None => Ok(None),
        }
    }

    /// The nodes `me` owes: the stale or announced nodes of its path below the root
    /// (no one needs the root's blinded key: it is no one's sibling; a node that comes
    /// under a new root later is announced then) and, for the sponsor, of its co-path,
    /// that [`owner_at`] gives to `me` (the rule [`Run::owner`] applies). One walk down
    /// the path (the sponsor's path is compared once, not at every node), and only the
    /// owed nodes' paths built: in STR's skinny tree, as tall as the group,
    /// building every stale node's path made each step of a merge O(n^2).
    fn owed(&self, me: &str) -> Result<Vec<Path>> {
        let path = self.path(me)?;
        let sponsor = self.sponsor_and_path()?;
        let am_sponsor = sponsor.as_ref().is_some_and(|(s, _)| *s == me);
        // How far the sponsor's path runs along this member's.
        let common = sponsor
            .as_ref()
            .map_or(0, |(_, sp)| common_prefix(sp, &path));
        let mut out = Vec::new();
        let mut node = &self.tree;
        for (d, &right) in path.iter().enumerate() {
            let Kind::Inner(l, r) = &node.kind else {
                break;
            };
            let (next, sibling) = if right { (r, l) } else { (l, r) };
            // The sponsor's co-path (its path and the sibling's part at depth d).
            if am_sponsor
                && (sibling.stale || sibling.announce)
                && owner_at(sponsor.as_ref(), sibling, d + 1, d) == me
            {
                let mut p = path[..d].to_vec();
                p.push(!right);
                out.push(p);
            }
            if (next.stale || next.announce)
                && owner_at(sponsor.as_ref(), next, d + 1, common.min(d + 1)) == me
            {
                out.push(path[..=d].to_vec());
            }
            node = next;
        }
        Ok(out)
    }
}

/// How many leading steps `a` and `b` share.
fn common_prefix(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Who broadcasts the blinded key of `node`, whose path from the root is `depth` steps
/// long and shares its first `common` steps with the sponsor's path: the sponsor for the
/// nodes on its path, and for the announced nodes beside it whose blinded keys it holds
/// (all but a subtree moved up by a departure); the node's rightmost leaf otherwise.
fn owner_at<'a>(
    sponsor: Option<&(&'a str, Path)>,
    node: &'a Node,
    depth: usize,
    common: usize,
) -> &'a str {
    if let Some(&(s, ref sp)) = sponsor {
        // On the sponsor's path.
        if common == depth {
            return s;
        }
        // Beside it: the parent on the sponsor's path, the node not.
        if common + 1 == depth
            && common < sp.len()
            && node.announce
            && !node.stale
            && node.promoted == 0
        {
            return s;
        }
    }
    node.rightmost_leaf()
}

// ---------------------------------------------------------------------------------------
// The state machine

/// What a completed agreement leaves: the tree (with this member's keys on its path and
/// the blinded keys it holds).
struct Confirmed {
    view_id: Vec<u8>,
    tree: Node,
}

#[derive(Default)]
struct Running {
    /// Known once this member has the tree (a new member: from the shape message).
    run: Option<Run>,
    /// This member's fresh share, if it draws one this run.
    share: Option<SecretBytes>,
    /// Messages that came before the tree (a new member's), in order.
    waiting: Vec<Envelope>,
    /// Epochs named by first messages of members whose leaf is fresh.
    first_epochs: BTreeMap<String, u64>,
    /// Blinded keys this member broadcast this run.
    sent: HashSet<Path>,
    /// Messages this member sent this run.
    messages: u8,
    /// A new member's own blinded key, sent before it knew the tree.
    my_bk: Option<Vec<u8>>,
    /// Whether this member sends the shape in its first message.
    sends_shape: bool,
    /// Whether this member holds its first message back until the new members' blinded
    /// keys are in (the sponsor of a join: then one message carries everything).
    hold_first: bool,
    early: EarlyConfirmations,
}

impl ka_kit::Running for Running {
    fn early(&mut self) -> &mut EarlyConfirmations {
        &mut self.early
    }
}

type Phase = ka_kit::Phase<Running, Confirmed>;

/// One member's TGDH (or STR) state machine.
pub struct TreeAgreement {
    s: Session,
    layout: Layout,
    cs: Option<Confirmed>,
    phase: Phase,
}

impl TreeAgreement {
    /// A state machine for `config`, with new leaves placed by `layout`.
    pub fn new(config: &KeyAgreementConfig, layout: Layout) -> Result<Self> {
        let s = Session::new(layout.name(), config, b"")?.with_mac_confirmation(CONFIRM);
        if s.dh().scalar_len() < 32 {
            return Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!(
                    "tgdh: the DH group {} has scalars shorter than 32 bytes",
                    s.dh().name()
                ),
            ));
        }
        Ok(Self {
            s,
            layout,
            cs: None,
            phase: Phase::Idle,
        })
    }

    fn running(&mut self) -> Result<&mut Running> {
        self.phase.running()
    }

    /// `H(e)`: a Diffie-Hellman result to a node key (see the module's documentation).
    fn node_key(&self, element: &SecretBytes) -> Result<SecretBytes> {
        let len = self.s.dh().scalar_len();
        let h = self.s.provider().hkdf(
            KDF,
            b"conclave/tgdh/node-key/v1",
            element.expose(),
            self.s.params(),
            32,
        )?;
        let mut out = SecretBytes::new(vec![0u8; len]);
        let bytes = out.expose_mut();
        if len > 32 {
            bytes[len - 32..].copy_from_slice(h.expose());
        } else {
            bytes.copy_from_slice(h.expose());
            bytes[0] &= 0x0f;
            bytes[31] &= 0x0f;
        }
        Ok(out)
    }

    fn valid_cs(&self, previous_view: Option<&[u8]>) -> bool {
        matches!((&self.cs, previous_view), (Some(cs), Some(prev)) if cs.view_id == prev)
    }

    /// A group of one: the key is a fresh share, nothing to agree on.
    fn alone(&mut self) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let x = self.s.dh().random_scalar()?;
        let epoch = self.s.last_epoch() + 1;
        let schedule = self
            .s
            .schedule(x.expose(), epoch, std::slice::from_ref(&me))?;
        let mut tree = Node::leaf(&me);
        tree.k = Some(x);
        self.cs = Some(Confirmed {
            view_id: self.s.current()?.view.view_id.to_vec(),
            tree,
        });
        self.phase = Phase::Idle;
        Ok(vec![self.s.key_ready(schedule)?])
    }

    /// The tree of a fresh start: every member inserted in view order, all stale.
    fn initial_tree(members: &[String], layout: Layout) -> Result<Node> {
        let mut members = members.iter();
        let first = members.next().ok_or_else(|| internal("an empty view"))?;
        let mut tree = Node::leaf(first);
        tree.stale = true;
        for m in members {
            let at = tree.insertion_point(layout);
            tree.insert(&at, m)?;
        }
        Ok(tree)
    }

    fn start(&mut self, previous_view: Option<Vec<u8>>) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let me = self.s.me().to_string();
        if info.members.len() == 1 {
            return self.alone();
        }
        let mut running = Running::default();
        let base = info.with_oldest() && self.valid_cs(previous_view.as_deref());
        let incremental = if base {
            let cs = self.cs.as_ref().ok_or_else(|| internal("no state"))?;
            self.reshape(cs.tree.clone(), &info.members)?
        } else {
            None
        };
        match incremental {
            Some(run) => {
                let newcomers = run.fresh.len() > usize::from(run.sponsor.is_some());
                running.sends_shape = newcomers && run.sponsor.as_deref() == Some(&me);
                running.hold_first = running.sends_shape;
                if run.sponsor.as_deref() == Some(&me) {
                    running.share = Some(self.s.dh().random_scalar()?);
                }
                running.run = Some(run);
            }
            None if info.with_oldest() => {
                // A fresh start this member can build itself.
                running.run = Some(Run::new(
                    Self::initial_tree(&info.members, self.layout)?,
                    None,
                ));
                running.share = Some(self.s.dh().random_scalar()?);
                running.sends_shape = me == info.oldest();
            }
            None => {
                // New here: a fresh share; the tree comes with the shape message.
                running.share = Some(self.s.dh().random_scalar()?);
            }
        }
        if let (Some(run), Some(share)) = (&mut running.run, &running.share) {
            let path = run.path(&me)?;
            let leaf = run
                .tree
                .at_mut(&path)
                .ok_or_else(|| internal("own leaf missing"))?;
            leaf.k = Some(share.clone());
        }
        self.phase = Phase::Running(running);
        if self.running()?.run.is_none() {
            // A new member's first message: its blinded key alone.
            return self.send_first_leaf_only();
        }
        self.progress()
    }

    /// Applies the view to the base tree: prunes the departed, picks the sponsor, inserts
    /// the new members. `None` when the tree got too tall (start afresh).
    fn reshape(&self, mut tree: Node, members: &[String]) -> Result<Option<Run>> {
        let present: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        // This run's marks start clean.
        tree.clear_marks();
        let leaves = tree.leaves();
        let in_tree: BTreeSet<&str> = leaves.iter().map(|(m, _)| m.as_str()).collect();
        let mut order = 0u32;
        for (m, _) in &leaves {
            if !present.contains(m.as_str()) {
                order += 1;
                let path = tree.path_of(m)?;
                tree.remove(&path, order)?;
            }
        }
        let newcomers: Vec<&String> = members
            .iter()
            .filter(|m| !in_tree.contains(m.as_str()))
            .collect();
        // The sponsor: TISSEC's for the first departure, else for the first join, else
        // the rightmost member.
        fn first_promoted(n: &Node, best: &mut Option<(u32, String)>) {
            if n.promoted > 0 && best.as_ref().is_none_or(|(o, _)| n.promoted < *o) {
                *best = Some((n.promoted, n.rightmost_leaf().to_string()));
            }
            if let Kind::Inner(l, r) = &n.kind {
                first_promoted(l, best);
                first_promoted(r, best);
            }
        }
        let mut promoted = None;
        first_promoted(&tree, &mut promoted);
        let sponsor = match (promoted, newcomers.first()) {
            (Some((_, s)), _) => s,
            (None, Some(_)) => tree
                .at(&tree.insertion_point(self.layout))
                .map(|n| n.rightmost_leaf().to_string())
                .ok_or_else(|| internal("no insertion point"))?,
            (None, None) => tree.rightmost_leaf().to_string(),
        };
        // The sponsor's fresh share changes its path.
        let sponsor_path = tree.path_of(&sponsor)?;
        tree.stale_along(&sponsor_path);
        for m in &newcomers {
            let at = tree.insertion_point(self.layout);
            tree.insert(&at, m)?;
        }
        if tree.height() > self.layout.max_height() {
            return Ok(None);
        }
        // Subtrees moved up are announced again (members beside them never held their
        // blinded key), and so is every new member's co-path.
        fn announce_promoted(n: &mut Node) {
            if n.promoted > 0 && !n.stale {
                n.announce = true;
            }
            if let Kind::Inner(l, r) = &mut n.kind {
                announce_promoted(l);
                announce_promoted(r);
            }
        }
        announce_promoted(&mut tree);
        let mut run = Run::new(tree, Some(sponsor));
        for m in &newcomers {
            let path = run.path(m)?;
            for d in 0..path.len() {
                let mut sib = path[..d].to_vec();
                sib.push(!path[d]);
                if let Some(n) = run.tree.at_mut(&sib)
                    && !n.stale
                {
                    n.announce = true;
                }
            }
        }
        Ok(Some(run))
    }

    /// A new member's first message, before it knows the tree: its blinded key.
    fn send_first_leaf_only(&mut self) -> Result<Vec<Action>> {
        let share = self
            .running()?
            .share
            .clone()
            .ok_or_else(|| internal("a new member without a share"))?;
        let bk = self.s.dh().exp_generator(share.expose())?;
        let mut w = Writer::new();
        w.u8(1); // flags: the sender's leaf blinded key
        w.bytes16(&bk)?;
        w.u16(0);
        self.running()?.my_bk = Some(bk);
        let action = self.send(w.finish())?;
        let me = self.s.me().to_string();
        let epoch = self.s.last_epoch();
        self.running()?.first_epochs.insert(me, epoch);
        Ok(vec![action])
    }

    fn send(&mut self, body: Vec<u8>) -> Result<Action> {
        let r = self.running()?;
        if r.messages >= LAST_TREE_STEP {
            return Err(internal("too many messages in one run"));
        }
        let step = r.messages + 1;
        r.messages += 1;
        self.s.seal(step, None, self.s.last_epoch(), body)
    }

    /// Computes up this member's path as far as it can, sends the blinded keys it owes,
    /// and starts confirming when the root's key and the epoch are known.
    fn progress(&mut self) -> Result<Vec<Action>> {
        let me = self.s.me().to_string();
        let mut running = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Running(r) => r,
            other => {
                self.phase = other;
                return Ok(Vec::new());
            }
        };
        let body = match self.progress_with(&me, &mut running) {
            Ok(b) => b,
            Err(e) => {
                self.phase = Phase::Running(running);
                return Err(e);
            }
        };
        let ready = running.run.as_ref().is_some_and(|run| {
            run.tree.k.is_some()
                && run
                    .fresh
                    .iter()
                    .all(|m| running.first_epochs.contains_key(m))
        });
        let step = running.messages;
        self.phase = Phase::Running(running);
        let mut actions = Vec::new();
        if let Some(body) = body {
            actions.push(self.s.seal(step, None, self.s.last_epoch(), body)?);
        }
        if ready {
            actions.extend(self.finish_run()?);
        }
        Ok(actions)
    }

    /// The body of this member's next message, if it has something to say (its step is
    /// then `running.messages`).
    fn progress_with(&self, me: &str, running: &mut Running) -> Result<Option<Vec<u8>>> {
        let Some(run) = running.run.as_mut() else {
            return Ok(None);
        };
        let path = run.path(me)?;
        // Up the path: a node's key from the child's key and the sibling's blinded key.
        self.compute_up(&mut run.tree, &path)?;
        // The sponsor of a join says everything in one message, once the new members'
        // blinded keys are in.
        if running.hold_first && running.messages == 0 {
            let waiting = run
                .fresh
                .iter()
                .any(|m| Some(m) != run.sponsor.as_ref() && !running.first_epochs.contains_key(m));
            if waiting {
                return Ok(None);
            }
        }
        // The blinded keys this member owes and can give now.
        let mut owed: Vec<(Path, Vec<u8>)> = Vec::new();
        for v in run.owed(me)? {
            if running.sent.contains(&v) {
                continue;
            }
            let Some(node) = run.tree.at(&v) else {
                continue;
            };
            debug_assert_eq!(run.owner(&v)?, me, "owed() applies owner()'s rule");
            let bk = match (&node.bk, &node.k) {
                (Some(bk), _) => bk.clone(),
                (None, Some(k)) => self.s.dh().exp_generator(k.expose())?,
                (None, None) => continue,
            };
            if let Some(n) = run.tree.at_mut(&v) {
                n.bk = Some(bk.clone());
                n.checked = true;
            }
            owed.push((v, bk));
        }
        let first = running.messages == 0 && run.fresh.contains(me);
        let shape = running.sends_shape && running.messages == 0;
        if owed.is_empty() && !first && !shape {
            return Ok(None);
        }
        if running.messages >= LAST_TREE_STEP {
            return Err(internal("too many messages in one run"));
        }
        let mut w = Writer::new();
        w.u8(u8::from(shape) << 1);
        w.u16(u16::try_from(owed.len()).map_err(|_| internal("too many blinded keys"))?);
        for (v, bk) in &owed {
            encode_path(&mut w, v)?;
            w.bytes16(bk)?;
        }
        if shape {
            let mut s = Writer::new();
            s.bytes8(run.sponsor.as_deref().unwrap_or("").as_bytes())?;
            run.tree.encode_shape(&mut s, true)?;
            w.bytes32(&s.finish())?;
        }
        for (v, _) in owed {
            running.sent.insert(v);
        }
        if first {
            running
                .first_epochs
                .insert(me.to_string(), self.s.last_epoch());
        }
        running.messages += 1;
        Ok(Some(w.finish()))
    }

    /// Computes the keys on `path` below and at `n`, bottom-up, as far as the siblings'
    /// blinded keys allow (one walk down the path); returns whether `n`'s key is known.
    fn compute_up(&self, n: &mut Node, path: &[bool]) -> Result<bool> {
        if n.k.is_some() {
            return Ok(true);
        }
        let Some((&right, rest)) = path.split_first() else {
            return Ok(false);
        };
        let Kind::Inner(l, r) = &mut n.kind else {
            return Err(internal("a path through a leaf"));
        };
        let (child, sibling) = if right { (r, l) } else { (l, r) };
        if !self.compute_up(child, rest)? {
            return Ok(false);
        }
        let Some(bk) = sibling.bk.clone() else {
            return Ok(false);
        };
        if !sibling.checked {
            self.s.validate(&bk, sibling.rightmost_leaf())?;
            sibling.checked = true;
        }
        let child_k = child
            .k
            .clone()
            .ok_or_else(|| internal("a child's key missing on the path"))?;
        let dh = self.s.dh().exp(&bk, child_k.expose())?;
        n.k = Some(self.node_key(&dh)?);
        Ok(true)
    }

    fn finish_run(&mut self) -> Result<Vec<Action>> {
        let info = self.s.current()?.clone();
        let running = self.running()?;
        let epochs = running.first_epochs.values().copied().max().unwrap_or(0);
        let run = running.run.as_ref().ok_or_else(|| internal("no tree"))?;
        let secret = run.tree.k.clone().ok_or_else(|| internal("no root key"))?;
        let mut fixing = Writer::new();
        run.tree.encode_shape(&mut fixing, false)?;
        let fixing = fixing.finish();
        // Its marks stay: the next run clears them first (`reshape`, `refresh_run`).
        let tree = run.tree.clone();
        let epoch = epochs.max(self.s.last_epoch()) + 1;
        let schedule = self.s.schedule(secret.expose(), epoch, &info.members)?;
        let pending = Confirmed {
            view_id: info.view.view_id.to_vec(),
            tree,
        };
        let source = info.oldest().to_string();
        self.phase.confirm(
            &mut self.s,
            schedule,
            &source,
            &fixing,
            CONFIRM,
            pending,
            &mut self.cs,
        )
    }
}

/// A tree message's content.
struct TreeMessage {
    leaf_bk: Option<Vec<u8>>,
    entries: Vec<(Path, Vec<u8>)>,
    shape: Option<Vec<u8>>,
}

fn parse_tree_message(body: &[u8], max: usize) -> Result<TreeMessage> {
    let mut r = Reader::new(body, "tgdh tree message");
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return Err(bad("unknown message flags"));
    }
    let leaf_bk = if flags & 1 != 0 {
        Some(r.bytes16()?.to_vec())
    } else {
        None
    };
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(usize::from(count).min(2 * max + 2));
    for _ in 0..count {
        let path = decode_path(&mut r, max)?;
        entries.push((path, r.bytes16()?.to_vec()));
    }
    let shape = if flags & 2 != 0 {
        Some(r.bytes32()?.to_vec())
    } else {
        None
    };
    r.finish()?;
    Ok(TreeMessage {
        leaf_bk,
        entries,
        shape,
    })
}

impl TreeAgreement {
    fn handle(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        if env.step == CONFIRM {
            return self.phase.on_confirm(&mut self.s, env, &mut self.cs);
        }
        if env.step == 0 || env.step > LAST_TREE_STEP {
            return Err(PluginError::new(
                ErrorCode::BAD_MESSAGE,
                format!("tgdh: unknown step {} from {}", env.step, env.sender),
            ));
        }
        if env.sender == self.s.me() {
            // The self-delivery of a multicast: this member applied it when it sent it.
            return Ok(Vec::new());
        }
        let run = self.s.run();
        match &self.phase {
            Phase::Running(_) if env.run == run => {}
            Phase::Confirming(_) if env.run == run => {
                // Blinded keys this member no longer needs (it has its path's).
                parse_tree_message(&env.body, self.layout.max_height())?;
                return Ok(Vec::new());
            }
            Phase::Idle if env.run == run + 1 => self.start_refresh_of(env)?,
            _ => return Err(self.s.out_of_step(env, "not running an agreement")),
        }
        self.on_tree(env)
    }

    /// Another member's refresh: the controller (the oldest member) draws a fresh share.
    fn start_refresh_of(&mut self, env: &Envelope) -> Result<()> {
        let info = self.s.current()?;
        if env.sender != info.oldest() {
            return Err(self
                .s
                .out_of_step(env, "accepting refreshes from the controller only"));
        }
        let view = info.view.view_id.clone();
        let cs = self
            .cs
            .as_ref()
            .filter(|cs| cs.view_id.as_slice() == view.as_slice())
            .ok_or_else(|| {
                self.s
                    .out_of_step(env, "without a key of this view to refresh")
            })?;
        let run = Self::refresh_run(cs.tree.clone(), &env.sender)?;
        self.s.next_run();
        self.phase = Phase::Running(Running {
            run: Some(run),
            ..Running::default()
        });
        Ok(())
    }

    /// The run of a refresh by `who`: its path is stale.
    fn refresh_run(mut tree: Node, who: &str) -> Result<Run> {
        tree.clear_marks();
        let path = tree.path_of(who)?;
        tree.stale_along(&path);
        Ok(Run::new(tree, Some(who.to_string())))
    }

    fn on_tree(&mut self, env: &Envelope) -> Result<Vec<Action>> {
        let msg = parse_tree_message(&env.body, self.layout.max_height())?;
        if self.running()?.run.is_none() {
            // The first tree message of this member's run (the rest skip this: the
            // member list is cloned once per run, not per message).
            let me = self.s.me().to_string();
            let members = self.s.current()?.members.clone();
            let running = self.running()?;
            match &msg.shape {
                Some(shape) => {
                    let run = adopt_shape(shape, &members, &me, self.layout.max_height())?;
                    let running = self.running()?;
                    let path = run.path(&me)?;
                    let mut run = run;
                    if let Some(leaf) = run.tree.at_mut(&path) {
                        leaf.k = running.share.clone();
                        leaf.bk = running.my_bk.clone();
                        leaf.checked = true;
                    }
                    running.sent.insert(path);
                    running.run = Some(run);
                }
                None => {
                    if running.waiting.len() >= members.len() * usize::from(LAST_TREE_STEP) {
                        return Err(self.s.out_of_step(env, "holding too many messages already"));
                    }
                    running.waiting.push(env.clone());
                    return Ok(Vec::new());
                }
            }
            self.apply(env, &msg)?;
            let waiting = std::mem::take(&mut self.running()?.waiting);
            for e in &waiting {
                let m = parse_tree_message(&e.body, self.layout.max_height())?;
                self.apply(e, &m)?;
            }
            return self.progress();
        }
        self.apply(env, &msg)?;
        self.progress()
    }

    /// Takes the blinded keys of `env` into the tree, each checked against who owes it.
    fn apply(&mut self, env: &Envelope, msg: &TreeMessage) -> Result<()> {
        let running = self.running()?;
        let run = running.run.as_mut().ok_or_else(|| internal("no tree"))?;
        let sender = env.sender.as_str();
        let sender_fresh = run.fresh.contains(sender);
        let put = |run: &mut Run, path: &[bool], bk: &[u8]| -> Result<()> {
            let node = run
                .tree
                .at_mut(path)
                .ok_or_else(|| bad(format!("{sender} sent a blinded key outside the tree")))?;
            match &node.bk {
                Some(held) if held.as_slice() == bk => {}
                Some(_) => {
                    return Err(bad(format!(
                        "{sender} sent a blinded key that differs from the one held"
                    )));
                }
                None => {
                    node.bk = Some(bk.to_vec());
                    node.checked = false;
                }
            }
            Ok(())
        };
        if let Some(bk) = &msg.leaf_bk {
            if !sender_fresh {
                return Err(bad(format!("{sender}'s leaf is not new in this run")));
            }
            let path = run.path(sender)?;
            put(run, &path, bk)?;
        }
        for (path, bk) in &msg.entries {
            let node = run
                .tree
                .at(path)
                .ok_or_else(|| bad(format!("{sender} sent a blinded key outside the tree")))?;
            if !(node.stale || node.announce) {
                return Err(bad(format!(
                    "{sender} sent the blinded key of a node that does not change"
                )));
            }
            if run.owner(path)? != sender {
                return Err(bad(format!(
                    "{sender} sent a blinded key that another member owes"
                )));
            }
            put(run, path, bk)?;
        }
        if env.step == 1 && sender_fresh {
            running.first_epochs.insert(env.sender.clone(), env.epoch);
        }
        Ok(())
    }
}

/// A new member's tree from the shape message: every view member exactly once.
fn adopt_shape(blob: &[u8], members: &[String], me: &str, max: usize) -> Result<Run> {
    let mut r = Reader::new(blob, "tgdh tree shape");
    let sponsor = r.str8()?;
    let tree = Node::decode_shape(&mut r, 0, max)?;
    r.finish()?;
    let run = Run::new(tree, (!sponsor.is_empty()).then_some(sponsor.clone()));
    let leaves = run.tree.leaves();
    let names: BTreeSet<&str> = leaves.iter().map(|(m, _)| m.as_str()).collect();
    let view: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    if names.len() != leaves.len() || names != view {
        return Err(bad("the tree's leaves are not the view's members"));
    }
    if !names.contains(me) || (!sponsor.is_empty() && !names.contains(sponsor.as_str())) {
        return Err(bad("the tree lacks this member or its sponsor"));
    }
    if !run.tree.at(&run.path(me)?).is_some_and(|n| n.stale) {
        return Err(bad("this member's leaf is not new in the tree it was sent"));
    }
    Ok(run)
}

impl KeyAgreementImpl for TreeAgreement {
    fn algorithm(&self) -> String {
        self.layout.name().into()
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
        let keyed_view = self.cs.as_ref().map(|cs| cs.view_id.clone());
        let controller = self.s.current()?.oldest().to_string();
        self.s.may_refresh(
            keyed_view.as_deref(),
            self.phase.is_idle(),
            &controller,
            false,
        )?;
        let me = self.s.me().to_string();
        let cs = self
            .cs
            .as_ref()
            .ok_or_else(|| internal("a refreshable key without its state"))?;
        let mut run = Self::refresh_run(cs.tree.clone(), &me)?;
        let share = self.s.dh().random_scalar()?;
        let path = run.path(&me)?;
        if let Some(leaf) = run.tree.at_mut(&path) {
            leaf.k = Some(share.clone());
        }
        self.s.next_run();
        self.phase = Phase::Running(Running {
            run: Some(run),
            share: Some(share),
            ..Running::default()
        });
        self.progress()
    }

    fn stats(&self) -> KeyAgreementStats {
        self.s.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index finds every leaf where a search of the tree does, in balanced and
    /// skinny trees, after departures too, and nothing for a name not in the tree.
    #[test]
    fn the_leaf_index_agrees_with_a_search() {
        for layout in [Layout::Balanced, Layout::Skinny] {
            for n in [1usize, 2, 3, 7, 8, 33, 100] {
                let names: Vec<String> = (0..n).map(|i| format!("m{i:03}")).collect();
                let mut tree = TreeAgreement::initial_tree(&names, layout).expect("a tree");
                let mut order = 0;
                for gone in names.iter().skip(1).step_by(5) {
                    order += 1;
                    let path = tree.path_of(gone).expect("in the tree");
                    tree.remove(&path, order).expect("removed");
                }
                let index = LeafIndex::new(&tree);
                for (name, _) in tree.leaves() {
                    assert_eq!(
                        index.path(&name),
                        Some(tree.path_of(&name).expect("in the tree")),
                        "{layout:?}, n = {n}, {name}"
                    );
                }
                assert_eq!(index.path("nobody"), None);
                assert_eq!(index.rank.len(), tree.leaves().len());
            }
        }
    }
}
