//! Cross-account detection: accounts that each look quiet but share a prompt template,
//! network and timing are one operator ("hydra" clusters).
//!
//! Accounts are indexed by what they share (their /24 subnet, their dominant template).
//! Every `cluster_interval` of event time, the members of each shared bucket are compared
//! pairwise; two accounts are linked when at least two independent kinds of evidence agree
//! (same template, same subnet, activity in the same minutes). Linked groups of at least
//! `cluster_min_accounts` accounts are scored and reported as one cluster.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use serde_json::{json, Value};

use super::account::{round3, AccountState};
use super::config::DetectConfig;

/// Members kept per bucket: a bucket is a candidate group, not a census.
const BUCKET_CAP: usize = 256;
/// Minutes of slack when comparing activity times.
const SYNC_SLACK_MIN: u32 = 1;

#[derive(Default)]
struct Bucket {
    members: Vec<(Arc<str>, i64)>,
}

impl Bucket {
    fn touch(&mut self, account: &Arc<str>, ts_ms: i64) {
        if let Some(m) = self.members.iter_mut().find(|m| &m.0 == account) {
            m.1 = ts_ms;
            return;
        }
        if self.members.len() >= BUCKET_CAP {
            // Replace the member seen longest ago.
            if let Some(oldest) = self.members.iter_mut().min_by_key(|m| m.1) {
                *oldest = (account.clone(), ts_ms);
            }
            return;
        }
        self.members.push((account.clone(), ts_ms));
    }
}

#[derive(Default)]
pub struct ClusterIndex {
    by_subnet: HashMap<u64, Bucket>,
    by_template: HashMap<u64, Bucket>,
}

/// A group of accounts found acting together.
#[derive(Debug, Clone)]
pub struct Finding {
    pub members: Vec<Arc<str>>,
    pub score: f64,
    pub evidence: Value,
}

/// The templates an account uses often enough to be compared on them.
fn templates_of(s: &AccountState) -> Vec<u64> {
    s.templates.entries().into_iter().filter(|&(_, c)| c >= 3).take(3).map(|(k, _)| k).collect()
}

struct Links {
    template: bool,
    subnet: bool,
    sync: bool,
}

fn links(a: &AccountState, b: &AccountState) -> Links {
    // Only accounts that actually fill templates (not ones that happen to send a prompt
    // another account also sent) are linked by them.
    let fills = |s: &AccountState| s.templated_share() >= 0.2;
    let ta = templates_of(a);
    let template = fills(a) && fills(b) && templates_of(b).iter().any(|k| ta.contains(k));
    let subnet = a.subnets.iter().any(|s| *s != 0 && b.subnets.contains(s));
    let (shared, _) = a.active_minutes.overlap(&b.active_minutes, SYNC_SLACK_MIN);
    let smaller = a.active_minutes.len().min(b.active_minutes.len()).max(1);
    let sync = shared >= 3 && shared as f64 / smaller as f64 >= 0.2;
    Links { template, subnet, sync }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra] = rb;
        }
    }
}

impl ClusterIndex {
    /// Records where an account was just seen.
    pub fn observe(&mut self, account: &Arc<str>, state: &AccountState, ts_ms: i64) {
        if state.subnets[0] != 0 {
            self.by_subnet.entry(state.subnets[0]).or_default().touch(account, ts_ms);
        }
        for t in templates_of(state) {
            self.by_template.entry(t).or_default().touch(account, ts_ms);
        }
    }

    /// Drops members not seen since `cutoff_ms` and empty buckets.
    pub fn expire(&mut self, cutoff_ms: i64) {
        for map in [&mut self.by_subnet, &mut self.by_template] {
            map.retain(|_, b| {
                b.members.retain(|m| m.1 >= cutoff_ms);
                !b.members.is_empty()
            });
        }
    }

    pub fn buckets(&self) -> usize {
        self.by_subnet.len() + self.by_template.len()
    }

    /// Finds linked groups among accounts that share a bucket.
    pub fn find(&self, accounts: &HashMap<Arc<str>, AccountState>, cfg: &DetectConfig) -> Vec<Finding> {
        let min = cfg.cluster_min_accounts;
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut ids: Vec<Arc<str>> = Vec::new();
        let mut edges: Vec<(usize, usize, Links)> = Vec::new();
        let mut seen_pairs = foldhash::HashSet::default();
        for bucket in self.by_subnet.values().chain(self.by_template.values()) {
            if bucket.members.len() < min {
                continue;
            }
            let members: Vec<(&Arc<str>, &AccountState)> = bucket
                .members
                .iter()
                .filter(|m| !cfg.allow_accounts.contains(&*m.0))
                .filter_map(|m| accounts.get(&m.0).map(|s| (&m.0, s)))
                .collect();
            for i in 0..members.len() {
                for j in i + 1..members.len() {
                    let (a, sa) = members[i];
                    let (b, sb) = members[j];
                    let l = links(sa, sb);
                    if (l.template as u8 + l.subnet as u8 + l.sync as u8) < 2 {
                        continue;
                    }
                    let mut slot = |id: &Arc<str>| {
                        *index.entry(id.clone()).or_insert_with(|| {
                            ids.push(id.clone());
                            ids.len() - 1
                        })
                    };
                    let (ia, ib) = (slot(a), slot(b));
                    if seen_pairs.insert((ia.min(ib), ia.max(ib))) {
                        edges.push((ia, ib, l));
                    }
                }
            }
        }
        let mut uf = UnionFind((0..ids.len()).collect());
        for (a, b, _) in &edges {
            uf.union(*a, *b);
        }
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in 0..ids.len() {
            let root = uf.find(i);
            groups.entry(root).or_default().push(i);
        }
        let mut out = Vec::new();
        for (root, mut members) in groups {
            if members.len() < min {
                continue;
            }
            // In id order, so that sums over members do not depend on the maps' order.
            members.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
            let group_edges: Vec<&(usize, usize, Links)> =
                edges.iter().filter(|e| uf.find_const(e.0) == root).collect();
            let states: Vec<&AccountState> = members.iter().map(|&i| &accounts[&ids[i]]).collect();
            out.push(score_group(members.iter().map(|&i| ids[i].clone()).collect(), &states, &group_edges, cfg));
        }
        // Largest first, then by members: the same findings in the same order on every
        // run (the maps' iteration order is random), so a backtest is reproducible.
        out.sort_by(|a, b| b.members.len().cmp(&a.members.len()).then_with(|| a.members.cmp(&b.members)));
        out
    }
}

impl UnionFind {
    fn find_const(&self, mut i: usize) -> usize {
        while self.0[i] != i {
            i = self.0[i];
        }
        i
    }
}

fn ramp(v: f64, lo: f64, hi: f64) -> f64 {
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

fn score_group(
    mut members: Vec<Arc<str>>,
    states: &[&AccountState],
    edges: &[&(usize, usize, Links)],
    cfg: &DetectConfig,
) -> Finding {
    let n = members.len() as f64;
    let pairs = edges.len().max(1) as f64;
    let template_share = edges.iter().filter(|e| e.2.template).count() as f64 / pairs;
    let subnet_share = edges.iter().filter(|e| e.2.subnet).count() as f64 / pairs;
    let sync_share = edges.iter().filter(|e| e.2.sync).count() as f64 / pairs;
    let mean = |f: &dyn Fn(&AccountState) -> f64| states.iter().map(|s| f(s)).sum::<f64>() / n;
    let reasoning = mean(&|s| s.reasoning_share());
    let template_use = mean(&|s| s.templated_share());
    let conversation = mean(&|s| 1.0 - s.single_turn_share());
    let per_day = mean(&|s| {
        let days = ((s.last_ms - s.first_ms) as f64 / 86_400_000.0).max(1.0);
        s.total as f64 / days
    });
    let intent = reasoning.max(template_use);
    let mut subnets: HashMap<u64, usize> = HashMap::new();
    let mut agents: HashMap<u64, usize> = HashMap::new();
    for s in states {
        *subnets.entry(s.subnets[0]).or_default() += 1;
        *agents.entry(s.user_agents[0]).or_default() += 1;
    }
    let top_agent_share = agents.values().copied().max().unwrap_or(0) as f64 / n;
    let parts = [
        ("members", n, 0.25 * ramp(n, cfg.cluster_min_accounts as f64 - 1.0, 15.0)),
        ("shared_template", template_share, 0.2 * template_share),
        ("shared_subnet", subnet_share, 0.2 * subnet_share),
        ("synchronised_activity", sync_share, 0.2 * sync_share),
        ("harvesting_intent", intent, 0.25 * ramp(intent, 0.2, 0.5)),
        ("conversation", conversation, -0.35 * ramp(conversation, 0.15, 0.5)),
    ];
    let score = parts.iter().map(|p| p.2).sum::<f64>().clamp(0.0, 1.0);
    members.sort();
    let evidence = json!({
        "members": members.len(),
        "features": parts.iter().map(|(name, value, contribution)| json!({
            "name": name, "value": round3(*value), "contribution": round3(*contribution),
            "fired": *contribution > 0.0
        })).collect::<Vec<_>>(),
        "linked_pairs": edges.len(),
        "distinct_subnets": subnets.len(),
        "top_user_agent_share": round3(top_agent_share),
        "mean_reasoning_share": round3(reasoning),
        "mean_top_template_share": round3(template_use),
        "mean_requests_per_day": round3(per_day),
    });
    Finding { members, score: round3(score), evidence }
}
