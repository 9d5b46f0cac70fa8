//! A model of the key tree of TGDH and STR for the counter tests of both plugins
//! (included by `tests/counters.rs` of each), under the rules of TISSEC 2004: a new leaf
//! goes at the shallowest, rightmost node that does not make the tree taller (TGDH) or
//! above the root (STR); a departed leaf's sibling takes its parent's place.

use conclave_conformance::key_agreement::{self as ka, Counted, Flush, Setup};
use conclave_plugin_sdk::api::key_agreement::ViewCause;

/// (exponentiations, inversions, signatures, verifications, unicasts, multicasts)
const fn c(e: u64, i: u64, s: u64, v: u64, u: u64, m: u64) -> Counted {
    Counted::new(e, i, s, v, u, m)
}

/// The key tree's shape.
#[derive(Clone, Debug)]
enum Tree {
    Leaf(String),
    Inner(Box<Tree>, Box<Tree>),
}

impl Tree {
    fn height(&self) -> usize {
        match self {
            Tree::Leaf(_) => 0,
            Tree::Inner(l, r) => 1 + l.height().max(r.height()),
        }
    }

    fn rightmost(&self) -> String {
        match self {
            Tree::Leaf(m) => m.clone(),
            Tree::Inner(_, r) => r.rightmost(),
        }
    }

    fn at(&self, path: &[bool]) -> &Tree {
        match (self, path.split_first()) {
            (Tree::Inner(l, r), Some((&right, rest))) => (if right { r } else { l }).at(rest),
            _ => self,
        }
    }

    fn at_mut(&mut self, path: &[bool]) -> &mut Tree {
        match path.split_first() {
            None => self,
            Some((&right, rest)) => match self {
                Tree::Inner(l, r) => (if right { r } else { l }).at_mut(rest),
                Tree::Leaf(_) => self,
            },
        }
    }

    /// Every node's path, pre-order (so left to right within a depth).
    fn nodes(&self, path: &mut Vec<bool>, out: &mut Vec<Vec<bool>>) {
        out.push(path.clone());
        if let Tree::Inner(l, r) = self {
            path.push(false);
            l.nodes(path, out);
            path.pop();
            path.push(true);
            r.nodes(path, out);
            path.pop();
        }
    }

    fn path(&self, m: &str) -> Vec<bool> {
        let mut all = Vec::new();
        self.nodes(&mut Vec::new(), &mut all);
        all.into_iter()
            .find(|p| matches!(self.at(p), Tree::Leaf(x) if x == m))
            .unwrap()
    }

    fn insertion_point(&self, skinny: bool) -> Vec<bool> {
        if skinny {
            return Vec::new();
        }
        let h = self.height();
        let mut all = Vec::new();
        self.nodes(&mut Vec::new(), &mut all);
        let fits: Vec<Vec<bool>> = all
            .into_iter()
            .filter(|p| p.len() + self.at(p).height() < h)
            .collect();
        let depth = fits.iter().map(Vec::len).min();
        fits.into_iter()
            .rfind(|p| Some(p.len()) == depth)
            .unwrap_or_default()
    }

    /// Inserts `m`; returns the sponsor.
    fn join(&mut self, m: &str, skinny: bool) -> String {
        let at = self.insertion_point(skinny);
        let slot = self.at_mut(&at);
        let sponsor = slot.rightmost();
        let old = std::mem::replace(slot, Tree::Leaf(String::new()));
        *slot = Tree::Inner(Box::new(old), Box::new(Tree::Leaf(m.into())));
        sponsor
    }

    /// Removes `m`; returns the sponsor.
    fn leave(&mut self, m: &str) -> String {
        let path = self.path(m);
        let (&last, parent) = path.split_last().unwrap();
        let slot = self.at_mut(parent);
        let Tree::Inner(l, r) = std::mem::replace(slot, Tree::Leaf(String::new())) else {
            unreachable!()
        };
        *slot = if last { *l } else { *r };
        slot.rightmost()
    }

    fn depth(&self, m: &str) -> u64 {
        self.path(m).len() as u64
    }

    fn lca_depth(&self, a: &str, b: &str) -> u64 {
        let (pa, pb) = (self.path(a), self.path(b));
        pa.iter().zip(&pb).take_while(|(x, y)| x == y).count() as u64
    }
}

/// Checks the formulas for `setup`'s protocol at n = 2..32; `skinny`: STR's layout
/// (every new leaf above the root), else TGDH's.
pub fn check_formulas(setup: fn() -> Setup, skinny: bool) {
    for n in 2..=32u64 {
        // Join.
        let mut net = ka::grow(setup(), n as usize - 1).unwrap();
        let mut members = net.components[0].members.iter();
        let mut tree = Tree::Leaf(members.next().unwrap().clone());
        for m in members {
            tree.join(m, skinny);
        }
        let sponsor = tree.join("new", skinny);
        let before = net.stats();
        net.join(0, "new", Flush::All).unwrap();
        ka::settle(&mut net).unwrap();
        let counted = net.counted_since(&before);
        ka::assert_counts(
            &net,
            &counted,
            |m| {
                if m == sponsor {
                    c(2 * tree.depth(m), 0, 1, 1, 0, 2)
                } else if m == "new" {
                    c(1 + tree.depth(m), 0, 1, 1, 0, 2)
                } else {
                    c(tree.lca_depth(m, &sponsor) + 1, 0, 0, 2, 0, 1)
                }
            },
            &format!("join, n={n}"),
        );

        // Leave of the oldest, then of the newest.
        let members = net.components[0].members.clone();
        for gone in [members[0].clone(), "new".to_string()] {
            if net.components[0].members.len() < 3 {
                break;
            }
            let sponsor = tree.leave(&gone);
            let before = net.stats();
            net.remove(&[&gone], ViewCause::Leave, Flush::All);
            ka::settle(&mut net).unwrap();
            let n = net.components[0].members.len();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if m == sponsor {
                        c(2 * tree.depth(m), 0, 1, 0, 0, 2)
                    } else {
                        c(tree.lca_depth(m, &sponsor) + 1, 0, 0, 1, 0, 1)
                    }
                },
                &format!("leave of {gone}, n={n}"),
            );
        }

        // Refresh by the controller, the oldest member: the same as a leave.
        let members = net.components[0].members.clone();
        if members.len() > 1 {
            let oldest = members[0].clone();
            let before = net.stats();
            net.refresh(&oldest).unwrap();
            ka::settle(&mut net).unwrap();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if m == oldest {
                        c(2 * tree.depth(m), 0, 1, 0, 0, 2)
                    } else {
                        c(tree.lca_depth(m, &oldest) + 1, 0, 0, 1, 0, 1)
                    }
                },
                &format!("refresh, n={}", members.len()),
            );
        }
    }
}
