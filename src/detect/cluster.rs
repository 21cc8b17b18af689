//! Cross-account detection: accounts that each look quiet but act as one operator
//! ("hydra" clusters, round-robin campaigns).
//!
//! Candidates come from buckets of what accounts share: their /24 subnet and dominant
//! template (kept as traffic arrives), and, built at every pass, their client fingerprint,
//! membership of a proxy pool (a new network on most requests) and the direction of their
//! unusual content (locality-sensitive hashing of the prompt-embedding centroid against
//! the population's). Within a bucket, pairs are compared on six link kinds:
//!
//! | kind | family | the two accounts... |
//! |---|---|---|
//! | `template` | behaviour | fill the same template (exact fixed text) |
//! | `template_family` | behaviour | both send unusual content, and it points the same way (paraphrases of one template) |
//! | `fingerprint` | behaviour | use one client the same way (model, max_tokens, temperature, stream, user agent) |
//! | `sync` | behaviour | are active in the same minutes |
//! | `subnet` | infrastructure | share a /24 |
//! | `proxy_pool` | infrastructure | both come from a new network on most requests |
//!
//! Two accounts are linked when at least two kinds agree. A linked group is scored on how
//! it is linked and on what its members ask for: a company behind one NAT, with one
//! internal tool and office hours, links on subnet, fingerprint and timing, and is not
//! reported, because its members do not harvest.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::account::{ramp, round3, AccountState};
use super::config::{DetectConfig, Family};
use super::population::Population;

/// Members kept per bucket: a bucket is a candidate group, not a census.
const BUCKET_CAP: usize = 256;
/// Minutes of slack when comparing activity times.
const SYNC_SLACK_MIN: u32 = 1;
/// Shared minutes count as a `sync` link only when chance would share as many at most
/// this often (the binomial tail under independence).
const SYNC_CHANCE: f64 = 1e-3;
/// Accounts active within this long take part in the pass-time buckets.
const ACTIVE_MS: i64 = 24 * 3_600_000;
/// A network change on at least this share of requests makes a proxy-pool member.
const POOL_CHURN: f64 = 0.6;
/// Content this many robust SDs from the population's is unusual.
const UNUSUAL_Z: f64 = 2.0;
/// Cosine of two unusual contents' directions for a template-family link.
const FAMILY_COSINE: f64 = 0.8;
/// Harvesting intent two proxy-pool members need to be linked on the pool alone.
const POOL_INTENT: f64 = 0.4;
/// Harvesting intent a cluster member needs itself ([`harvest_intent`]).
const MEMBER_INTENT: f64 = 0.15;
/// A client fingerprint links harvesters by itself when at least this share of its
/// active holders ask for what harvesters ask for.
const HARVESTING_HOLDERS: f64 = 0.5;
/// Share of an account's requests under its top fingerprint to be compared on it.
const FINGERPRINT_SHARE: f64 = 0.6;

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
    /// Each account's minute of its last indexing (accounts are indexed once a minute).
    indexed: HashMap<Arc<str>, u32>,
}

/// A group of accounts found acting together.
#[derive(Debug, Clone)]
pub struct Finding {
    pub members: Vec<Arc<str>>,
    pub score: f64,
    /// Linked on enough kinds, and harvesting clearly enough, to act on (not only alert).
    pub confident: bool,
    pub evidence: Value,
}

/// A link between two accounts, as `warden backtest --links` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRecord {
    pub a: String,
    pub b: String,
    pub kinds: Vec<&'static str>,
}

/// The templates an account uses often enough to be compared on them.
fn templates_of(s: &AccountState) -> Vec<u64> {
    s.templates.entries().into_iter().filter(|&(_, c)| c >= 3).take(3).map(|(k, _)| k).collect()
}

#[derive(Debug, Clone, Copy, Default)]
struct Links {
    template: bool,
    template_family: bool,
    fingerprint: bool,
    sync: bool,
    subnet: bool,
    proxy_pool: bool,
    /// Both use a client fingerprint whose active holders mostly ask, in so many words,
    /// for what harvesters ask for, and both do (not counted among the kinds: it is the
    /// fingerprint read with the intent).
    harvesting_fingerprint: bool,
}

impl Links {
    fn count(&self) -> u32 {
        [self.template, self.template_family, self.fingerprint, self.sync, self.subnet, self.proxy_pool]
            .iter()
            .filter(|&&b| b)
            .count() as u32
    }
    fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        for (on, name) in [
            (self.template, "template"),
            (self.template_family, "template_family"),
            (self.fingerprint, "fingerprint"),
            (self.sync, "sync"),
            (self.subnet, "subnet"),
            (self.proxy_pool, "proxy_pool"),
            (self.harvesting_fingerprint, "harvesting_fingerprint"),
        ] {
            if on {
                k.push(name);
            }
        }
        k
    }
    fn infrastructure(&self) -> bool {
        self.subnet || self.proxy_pool
    }
}

/// What a pass knows about one account beyond its state.
struct Facts<'a> {
    state: &'a AccountState,
    /// Direction of the account's content away from the population's (unit vector), when
    /// unusual.
    unusual: Option<Vec<f32>>,
    pool: bool,
    fingerprint: Option<u64>,
}

fn facts<'a>(s: &'a AccountState, pop: &Population) -> Facts<'a> {
    let unusual = match (pop.content_z(s), s.centroid(10)) {
        (Some(z), Some(c)) if z >= UNUSUAL_Z => {
            let d: Vec<f32> = c.iter().zip(&pop.reference).map(|(a, b)| a - b).collect();
            let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
            (norm > 1e-6).then(|| d.iter().map(|v| v / norm).collect())
        }
        _ => None,
    };
    Facts {
        state: s,
        unusual,
        pool: s.ip_churn().is_some_and(|c| c >= POOL_CHURN),
        fingerprint: s.fingerprint().filter(|&(_, share)| share >= FINGERPRINT_SHARE).map(|(k, _)| k),
    }
}

fn links(a: &Facts<'_>, b: &Facts<'_>, cfg: &DetectConfig) -> Links {
    let mut l = Links::default();
    let (sa, sb) = (a.state, b.state);
    if cfg.enabled(Family::BehaviourLinks) {
        // Only accounts that actually fill templates (not ones that happen to send a
        // prompt another account also sent) are linked by them.
        let fills = |s: &AccountState| s.templated_share() >= 0.2;
        let ta = templates_of(sa);
        l.template = fills(sa) && fills(sb) && templates_of(sb).iter().any(|k| ta.contains(k));
        if let (Some(da), Some(db)) = (&a.unusual, &b.unusual) {
            let cos: f32 = da.iter().zip(db).map(|(x, y)| x * y).sum();
            l.template_family = cos as f64 >= FAMILY_COSINE;
        }
        l.fingerprint = a.fingerprint.is_some() && a.fingerprint == b.fingerprint;
    }
    if cfg.enabled(Family::InfrastructureLinks) {
        l.subnet = sa.subnets.iter().any(|s| *s != 0 && sb.subnets.contains(s));
        l.proxy_pool = a.pool && b.pool;
    }
    // Timing is compared last, and only where another kind already agrees: alone it
    // links nothing, and it is the costliest comparison.
    if cfg.enabled(Family::BehaviourLinks) && l.count() >= 1 {
        // The sparser account's minutes against the busier's: shared often enough, and
        // far more often than chance would have them (a busy account shares minutes with
        // everyone; a student beside a campaign's members is no member).
        let (sparse, busy) = if sa.active_minutes.len() <= sb.active_minutes.len() { (sa, sb) } else { (sb, sa) };
        let o = sparse.active_minutes.overlap(&busy.active_minutes, SYNC_SLACK_MIN);
        l.sync = o.shared >= 3 && o.shared as f64 / o.compared.max(1) as f64 >= 0.2 && o.by_chance() <= SYNC_CHANCE;
    }
    l
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

/// The linked pairs among the candidates of one pass.
struct Graph {
    ids: Vec<Arc<str>>,
    edges: Vec<(usize, usize, Links)>,
}

/// The locality-sensitive hash of a content direction: the signs of 8 of its
/// coordinates (two tables, on different coordinates, so that near directions meet in at
/// least one).
fn lsh_keys(d: &[f32]) -> [u64; 2] {
    let mut keys = [0u64; 2];
    for (t, key) in keys.iter_mut().enumerate() {
        let mut k = (t as u64 + 1) << 32;
        for i in 0..8 {
            if d[(t * 8 + i) % d.len()] >= 0.0 {
                k |= 1 << i;
            }
        }
        *key = k;
    }
    keys
}

impl ClusterIndex {
    /// Records where an account was just seen (once a minute per account).
    pub fn observe(&mut self, account: &Arc<str>, state: &AccountState, ts_ms: i64) {
        let minute = (ts_ms.max(0) / 60_000) as u32;
        match self.indexed.get_mut(account) {
            Some(m) if *m == minute => return,
            Some(m) => *m = minute,
            None => {
                self.indexed.insert(account.clone(), minute);
            }
        }
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
        let minute = (cutoff_ms.max(0) / 60_000) as u32;
        self.indexed.retain(|_, m| *m >= minute);
    }

    pub fn buckets(&self) -> usize {
        self.by_subnet.len() + self.by_template.len()
    }

    /// Every candidate bucket of a pass: the kept ones, and those built from the active
    /// accounts now.
    fn candidates<'a>(
        &'a self,
        accounts: &'a HashMap<Arc<str>, AccountState>,
        facts: &HashMap<Arc<str>, Facts<'a>>,
        cfg: &DetectConfig,
        now_ms: i64,
    ) -> Vec<Vec<Arc<str>>> {
        let mut out: Vec<Vec<Arc<str>>> = Vec::new();
        let min = cfg.cluster_min_accounts;
        for b in self.by_subnet.values().chain(self.by_template.values()) {
            if b.members.len() >= min {
                out.push(b.members.iter().map(|m| m.0.clone()).collect());
            }
        }
        // Built now, in id order, so that the result does not depend on the maps' order.
        let mut active: Vec<(&Arc<str>, &Facts<'_>)> =
            facts.iter().filter(|(id, _)| accounts.get(*id).is_some_and(|s| s.last_ms >= now_ms - ACTIVE_MS)).collect();
        active.sort_by(|a, b| a.0.cmp(b.0));
        let mut built: HashMap<(u8, u64), Vec<Arc<str>>> = HashMap::new();
        let mut push = |key: (u8, u64), id: &Arc<str>| {
            let b = built.entry(key).or_default();
            if b.len() < BUCKET_CAP {
                b.push(id.clone());
            }
        };
        for (id, f) in active {
            if let Some(fp) = f.fingerprint {
                push((0, fp), id);
            }
            if f.pool {
                push((1, 0), id);
            }
            if let Some(d) = &f.unusual {
                for k in lsh_keys(d) {
                    push((2, k), id);
                }
            }
        }
        let mut keys: Vec<_> = built.keys().copied().collect();
        keys.sort();
        for k in keys {
            let b = built.remove(&k).expect("key from the map");
            if b.len() >= min {
                out.push(b);
            }
        }
        out
    }

    fn graph(
        &self,
        accounts: &HashMap<Arc<str>, AccountState>,
        cfg: &DetectConfig,
        pop: &Population,
        now_ms: i64,
    ) -> Graph {
        let facts: HashMap<Arc<str>, Facts<'_>> = accounts
            .iter()
            .filter(|(id, _)| !cfg.allow_accounts.contains(&***id))
            .filter(|(_, s)| s.last_ms >= now_ms - cfg.idle_evict.as_millis() as i64)
            .map(|(id, s)| (id.clone(), facts(s, pop)))
            .collect();
        // Per client fingerprint among the active accounts: holders, and holders whose
        // prompts ask for reasoning, soft labels or generative templates.
        let mut holders: HashMap<u64, (u32, u32)> = HashMap::new();
        for f in facts.values().filter(|f| f.state.last_ms >= now_ms - ACTIVE_MS) {
            if let Some(fp) = f.fingerprint {
                let h = holders.entry(fp).or_default();
                h.0 += 1;
                h.1 += (content_intent(f.state, cfg) >= POOL_INTENT) as u32;
            }
        }
        let harvesters_fingerprint = |f: &Facts<'_>| {
            f.fingerprint.and_then(|fp| holders.get(&fp)).is_some_and(|&(n, harvesting)| {
                n as usize >= cfg.cluster_min_accounts && harvesting as f64 >= HARVESTING_HOLDERS * n as f64
            })
        };
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut ids: Vec<Arc<str>> = Vec::new();
        let mut edges: Vec<(usize, usize, Links)> = Vec::new();
        let mut seen_pairs = foldhash::HashSet::default();
        for bucket in self.candidates(accounts, &facts, cfg, now_ms) {
            let members: Vec<(&Arc<str>, &Facts<'_>)> = bucket.iter().filter_map(|m| facts.get_key_value(m)).collect();
            for i in 0..members.len() {
                for j in i + 1..members.len() {
                    let (a, fa) = members[i];
                    let (b, fb) = members[j];
                    let mut slot = |id: &Arc<str>| {
                        *index.entry(id.clone()).or_insert_with(|| {
                            ids.push(id.clone());
                            ids.len() - 1
                        })
                    };
                    let (ia, ib) = (slot(a), slot(b));
                    if !seen_pairs.insert((ia.min(ib), ia.max(ib))) {
                        continue;
                    }
                    let mut l = links(fa, fb, cfg);
                    // Two kinds agree; or both come through a proxy pool and both harvest
                    // (a round robin over fresh addresses shares little else); or both
                    // use a client that, among the active accounts, mostly harvesters
                    // use, and both ask for what harvesters ask for (a campaign that
                    // words its template differently for every member, from addresses
                    // of its own: its script is what the members share). The default
                    // client of an SDK is held mostly by people, and links nobody so.
                    let pooled = l.proxy_pool
                        && harvest_intent(fa.state, cfg) >= POOL_INTENT
                        && harvest_intent(fb.state, cfg) >= POOL_INTENT;
                    l.harvesting_fingerprint = l.fingerprint
                        && content_intent(fa.state, cfg) >= POOL_INTENT
                        && content_intent(fb.state, cfg) >= POOL_INTENT
                        && harvesters_fingerprint(fa);
                    if l.count() >= 2 || pooled || l.harvesting_fingerprint {
                        edges.push((ia, ib, l));
                    }
                }
            }
        }
        Graph { ids, edges }
    }

    /// Every linked pair now (for `warden backtest --links`).
    pub fn all_links(
        &self,
        accounts: &HashMap<Arc<str>, AccountState>,
        cfg: &DetectConfig,
        pop: &Population,
        now_ms: i64,
    ) -> Vec<LinkRecord> {
        let g = self.graph(accounts, cfg, pop, now_ms);
        let mut out: Vec<LinkRecord> = g
            .edges
            .iter()
            .map(|(a, b, l)| {
                let (x, y) = (g.ids[*a].to_string(), g.ids[*b].to_string());
                let (a, b) = if x <= y { (x, y) } else { (y, x) };
                LinkRecord { a, b, kinds: l.kinds() }
            })
            .collect();
        out.sort_by(|p, q| (&p.a, &p.b).cmp(&(&q.a, &q.b)));
        out
    }

    /// Finds linked groups among accounts that share a bucket.
    pub fn find(
        &self,
        accounts: &HashMap<Arc<str>, AccountState>,
        cfg: &DetectConfig,
        pop: &Population,
        now_ms: i64,
    ) -> Vec<Finding> {
        let min = cfg.cluster_min_accounts;
        let Graph { ids, edges } = self.graph(accounts, cfg, pop, now_ms);
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
            // A member linked to the group but asking for nothing a harvester asks for is
            // a bystander (a product sharing a cloud subnet and busy hours), not a member.
            members.retain(|&i| harvest_intent(&accounts[&ids[i]], cfg) >= MEMBER_INTENT);
            if members.len() < min {
                continue;
            }
            // In id order, so that sums over members do not depend on the maps' order.
            members.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
            let kept: foldhash::HashSet<usize> = members.iter().copied().collect();
            let group_edges: Vec<&(usize, usize, Links)> = edges
                .iter()
                .filter(|e| uf.find_const(e.0) == root && kept.contains(&e.0) && kept.contains(&e.1))
                .collect();
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

/// What one member asks for, 0 to 1: the largest of its [`content_intent`] and
/// [`breadth_intent`].
fn harvest_intent(s: &AccountState, cfg: &DetectConfig) -> f64 {
    content_intent(s, cfg).max(breadth_intent(s, cfg))
}

/// What a member's prompts ask for in so many words: the largest of its reasoning,
/// soft-label and generative-template shares.
fn content_intent(s: &AccountState, cfg: &DetectConfig) -> f64 {
    let mut v: f64 = 0.0;
    if cfg.enabled(Family::Reasoning) {
        v = v.max(s.reasoning_share());
    }
    if cfg.enabled(Family::SoftLabels) {
        v = v.max(s.soft_share());
    }
    if cfg.enabled(Family::Templates) {
        v = v.max(s.generative_template_share());
    }
    v
}

/// A member's breadth (wide, single-turn, generative coverage), read from 0.4 (nothing)
/// to 0.8 (in full): a class of students asking for steps under one shared homework
/// wrapper has some breadth each, and that alone is no campaign.
fn breadth_intent(s: &AccountState, cfg: &DetectConfig) -> f64 {
    if cfg.enabled(Family::Breadth) {
        ramp(s.breadth(), 0.4, 0.8)
    } else {
        0.0
    }
}

/// How regular the members' activity is taken together (0 = Poisson or burstier, 1 =
/// clockwork): 1 - the coefficient of variation of the gaps between the union's active
/// minutes. A round robin over many accounts, each quiet alone, is regular as a whole.
fn union_regularity(states: &[&AccountState]) -> f64 {
    let mut minutes: Vec<u32> = states.iter().flat_map(|s| s.active_minutes.minutes().iter().copied()).collect();
    minutes.sort_unstable();
    minutes.dedup();
    if minutes.len() < 20 {
        return 0.0;
    }
    let gaps: Vec<f64> = minutes.windows(2).map(|w| (w[1] - w[0]) as f64).filter(|&g| g <= 60.0).collect();
    if gaps.len() < 10 {
        return 0.0;
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    (1.0 - var.sqrt() / mean.max(1e-9)).clamp(0.0, 1.0)
}

fn score_group(
    mut members: Vec<Arc<str>>,
    states: &[&AccountState],
    edges: &[&(usize, usize, Links)],
    cfg: &DetectConfig,
) -> Finding {
    let n = members.len() as f64;
    let pairs = edges.len().max(1) as f64;
    let share = |f: &dyn Fn(&Links) -> bool| edges.iter().filter(|e| f(&e.2)).count() as f64 / pairs;
    let template_share = share(&|l| l.template);
    let family_share = share(&|l| l.template_family);
    let fingerprint_share = share(&|l| l.fingerprint);
    let sync_share = share(&|l| l.sync);
    let subnet_share = share(&|l| l.subnet);
    let pool_share = share(&|l| l.proxy_pool);
    let harvesting_fingerprint_share = share(&|l| l.harvesting_fingerprint);
    let kinds_per_link = edges.iter().map(|e| e.2.count() as f64).sum::<f64>() / pairs;
    let infrastructure_share = share(&|l| l.infrastructure());
    let mean = |f: &dyn Fn(&AccountState) -> f64| states.iter().map(|s| f(s)).sum::<f64>() / n;
    let reasoning = mean(&|s| s.reasoning_share());
    let template_use = mean(&|s| s.templated_share());
    // Conversation as the bodies say. The lone-request reading (made-up history counts
    // as none) is the per-account signal's; a group's score already needs coordination
    // and intent, and its discount keeps to what its members send.
    let conversation = mean(&|s| 1.0 - s.raw_single_turn_share());
    let per_day = mean(&|s| {
        let days = ((s.last_ms - s.first_ms) as f64 / 86_400_000.0).max(1.0);
        s.total as f64 / days
    });
    let regularity = if cfg.enabled(Family::BehaviourLinks) { union_regularity(states) } else { 0.0 };
    // Wide single-turn questions answered at length are what the employees of a company
    // behind one NAT send too. In a group, breadth is harvesting intent only as far as
    // the group is coordinated beyond sharing a place and a tool: a proxy pool, one
    // clock, or activity that is regular only taken together (a round robin).
    let breadth_counted = pool_share.max(sync_share).max(ramp(regularity, 0.3, 0.7));
    let intent = mean(&|s| content_intent(s, cfg).max(breadth_intent(s, cfg) * breadth_counted));
    let mut subnets: HashMap<u64, usize> = HashMap::new();
    let mut agents: HashMap<u64, usize> = HashMap::new();
    for s in states {
        *subnets.entry(s.subnets[0]).or_default() += 1;
        *agents.entry(s.user_agents[0]).or_default() += 1;
    }
    let top_agent_share = agents.values().copied().max().unwrap_or(0) as f64 / n;
    let intent_strength = ramp(intent, 0.15, 0.5);
    // How strongly the group is one operator: its size, how many kinds of evidence link
    // each pair, and timing that is regular only taken together.
    let size = ramp(n, cfg.cluster_min_accounts as f64 - 1.0, 12.0);
    let linkage = ramp(kinds_per_link, 1.5, 3.0).max(ramp(pool_share.max(harvesting_fingerprint_share), 0.5, 0.9));
    let coordination = (0.45 * size + 0.45 * linkage + 0.1 * ramp(regularity, 0.3, 0.7)).clamp(0.0, 1.0);
    let parts = [
        ("members", n, size),
        ("shared_template", template_share, template_share),
        ("template_family", family_share, family_share),
        ("shared_fingerprint", fingerprint_share, fingerprint_share),
        ("synchronised_activity", sync_share, sync_share),
        ("shared_subnet", subnet_share, subnet_share),
        ("proxy_pool", pool_share, pool_share),
        ("harvesting_fingerprint", harvesting_fingerprint_share, harvesting_fingerprint_share),
        ("complementary_activity", regularity, ramp(regularity, 0.3, 0.7)),
        ("link_kinds_per_pair", kinds_per_link, linkage),
        ("harvesting_intent", intent, intent_strength),
        ("conversation", conversation, -ramp(conversation, 0.3, 0.7) * (1.0 - intent_strength)),
    ];
    let conversation_discount = 1.0 - 0.5 * ramp(conversation, 0.3, 0.7) * (1.0 - intent_strength);
    // Both are needed: coordination without harvesting (a company behind one NAT, one
    // internal tool, office hours) and harvesting without coordination (unrelated users
    // who happen to share a template) are not a campaign.
    let score = (coordination * intent_strength).sqrt() * conversation_discount;
    let confident = intent >= 0.4 && kinds_per_link >= 2.5 && n >= 8.0;
    members.sort();
    let evidence = json!({
        "members": members.len(),
        "features": parts.iter().map(|(name, value, strength)| json!({
            "name": name, "value": round3(*value), "contribution": round3(*strength),
            "fired": *strength > 0.0
        })).collect::<Vec<_>>(),
        "coordination": round3(coordination),
        "linked_pairs": edges.len(),
        "link_kinds_per_pair": round3(kinds_per_link),
        "infrastructure_link_share": round3(infrastructure_share),
        "distinct_subnets": subnets.len(),
        "top_user_agent_share": round3(top_agent_share),
        "mean_reasoning_share": round3(reasoning),
        "mean_top_template_share": round3(template_use),
        "mean_harvest_intent": round3(intent),
        "breadth_counted": round3(breadth_counted),
        "mean_requests_per_day": round3(per_day),
        "confident": confident,
    });
    Finding { members, score: round3(score), confident, evidence }
}
