//! The fleet in one process on tokio's paused clock: per node the real
//! `TokenCache` and `RefreshPolicy`, with a token source that models what
//! the AWS source does (one AssumeRole per role at a time, its credentials
//! kept for their hour, a failed one remembered for the backoff the chain
//! gives it, one GetAuthorizationToken shared by the node's registries), and
//! the fault proxy's bucket arithmetic standing in for AWS, metering calls as
//! they arrive. moto answers admitted calls in arrival order, `latency`
//! of work each (or, with FLEET_MOTO=shared, the calls in flight share its
//! time), and the daemon gives up on an answer after the SDK's timeout.

mod baseline;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecr_credd::config::RegistryConfig;
use ecr_credd::tokens::{Clock, FetchError, FetchedToken, RefreshPolicy, Refusal, TokenCache, TokenSource};
use ecr_credd_client::secret::Secret;
use testbed::fault_proxy::{Call, Meter};
use testbed::fleet::{
    first_tokens, node_key, Contender, FleetResult, FleetSpec, NodeResult, KUBELET_RETRIES,
};
use tokio::time::Instant;

/// Wall time that moves with the paused clock.
struct SimClock {
    start: Instant,
    wall: SystemTime,
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        self.wall + (Instant::now() - self.start)
    }
}

/// Who answers the admitted calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    /// moto on loopback, as the real runs have it: for calibration.
    Moto(MotoModel),
    /// AWS: each call its own latency, any number at once.
    Aws,
}

/// How moto shares its one interpreter among the calls it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MotoModel {
    /// One call at a time, in arrival order.
    Fifo,
    /// Up to this many calls at once, sharing its time (as threads taking
    /// turns on one interpreter do); the rest wait their turn in order.
    Shared(usize),
}

impl MotoModel {
    /// FLEET_MOTO's: `fifo` (the default), `shared` (no limit) or `shared:C`.
    pub(crate) fn from_env() -> MotoModel {
        std::env::var("FLEET_MOTO").ok().and_then(|v| v.parse().ok()).unwrap_or(MotoModel::Fifo)
    }
}

impl std::str::FromStr for MotoModel {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        match v.split_once(':') {
            _ if v == "fifo" => Ok(MotoModel::Fifo),
            _ if v == "shared" => Ok(MotoModel::Shared(usize::MAX >> 4)),
            Some(("shared", c)) => c.parse().map(MotoModel::Shared).map_err(|e| format!("{v}: {e}")),
            _ => Err(format!("{v}: not fifo, shared or shared:C")),
        }
    }
}

/// The daemon's timeout on one AWS call (the chain's `STS_DEADLINE`).
const SDK_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The bucket let it through and the answer came in time.
    Answered,
    /// The bucket turned it away.
    Rejected,
    /// The bucket let it through; the answer came too late for the daemon.
    TimedOut,
}

/// AWS as the buckets see it: one per API, and the log of every call.
struct SimAws {
    server: Server,
    start: Instant,
    ecr: Mutex<Meter>,
    sts: Mutex<Meter>,
    denied: bool,
    latency: Duration,
    /// Calls moto is answering now (its time shared among them).
    in_flight: AtomicUsize,
    /// When moto is free of the calls queued so far (one at a time, in
    /// arrival order).
    moto_free: Mutex<Instant>,
    /// The calls moto may work on at once (its model's limit).
    slots: tokio::sync::Semaphore,
    calls: Mutex<Vec<(f64, Call)>>,
}

impl SimAws {
    /// One call of `api` by node `node`: metered as it arrives, as the
    /// proxy does; an admitted one then waits its turn at moto, which
    /// answers one call at a time in `latency`. The daemon gives up on an
    /// answer after the SDK's timeout (the chain's 10 s), while moto goes on
    /// working on the call: an admitted call that comes back `TimedOut`.
    async fn call(self: &Arc<Self>, api: &'static str, node: &str) -> Answer {
        let now = Instant::now();
        let meter = if api == "AssumeRole" { &self.sts } else { &self.ecr };
        let admitted = lock(meter).admit(now.into_std());
        let at = (now - self.start).as_secs_f64();
        let call = Call {
            at: now - self.start,
            api,
            admitted,
            key: node.to_owned(),
            node: node.to_owned(),
            answered: None,
        };
        lock(&self.calls).push((at, call));
        if !admitted {
            return Answer::Rejected;
        }
        let aws = self.clone();
        let work = tokio::spawn(async move { aws.serve().await });
        match tokio::time::timeout(SDK_TIMEOUT, work).await {
            Ok(_) => Answer::Answered,
            Err(_) => Answer::TimedOut,
        }
    }

    /// The answer's delay. moto (calibration): `latency` of work, done in
    /// arrival order (FLEET_MOTO=shared: while the calls in flight share its
    /// time, as threads taking turns on one interpreter would). AWS:
    /// `latency`, whatever else is in flight.
    async fn serve(&self) {
        const TICK: f64 = 0.002;
        let model = match self.server {
            Server::Aws => {
                tokio::time::sleep(self.latency).await;
                return;
            }
            Server::Moto(model) => model,
        };
        if model == MotoModel::Fifo {
            let done = {
                let mut free = lock(&self.moto_free);
                *free = (*free).max(Instant::now()) + self.latency;
                *free
            };
            tokio::time::sleep_until(done).await;
            return;
        }
        let Ok(_slot) = self.slots.acquire().await else { return };
        let mut left = self.latency.as_secs_f64();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        while left > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(TICK)).await;
            left -= TICK / self.in_flight.load(Ordering::SeqCst).max(1) as f64;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One node's source, modelling AwsTokenSource and its chain.
struct SimSource {
    node: String,
    aws: Arc<SimAws>,
    /// The role's credentials (until) or its remembered failure (until, how).
    role: tokio::sync::Mutex<RoleState>,
    /// The shared token and when it was fetched, or the last failure.
    token: tokio::sync::Mutex<Held>,
    clock: Arc<SimClock>,
}

/// A node's shared token (expiry, when fetched), or until when its last
/// failure stands, and what it was.
#[derive(Default)]
struct Held {
    token: Option<(SystemTime, Instant)>,
    failed: Option<(Instant, Refusal)>,
}

#[derive(Default)]
struct RoleState {
    creds_until: Option<Instant>,
    failed: Option<(Instant, Refusal)>,
}

const ROLE_ARN: &str = "arn:aws:iam::210987654321:role/ecr-pull";

impl SimSource {
    async fn assume(&self) -> Result<(), FetchError> {
        let mut role = self.role.lock().await;
        let now = Instant::now();
        if role.creds_until.is_some_and(|t| t > now + Duration::from_secs(600)) {
            return Ok(());
        }
        if let Some((_, refusal)) = role.failed.filter(|(until, _)| *until > now) {
            return Err(assume_error(refusal));
        }
        let answer = self.aws.call("AssumeRole", &self.node).await;
        let now = Instant::now();
        let refusal = match (answer, self.aws.denied) {
            (Answer::Answered, false) => {
                *role = RoleState { creds_until: Some(now + Duration::from_secs(3600)), failed: None };
                return Ok(());
            }
            (Answer::Answered, true) => Refusal::Denied,
            (Answer::Rejected, _) => Refusal::Throttled,
            (Answer::TimedOut, _) => Refusal::Overloaded,
        };
        // As the chain remembers a failure for its role: a minute after a
        // denial, a quarter second otherwise.
        let hold =
            if refusal == Refusal::Denied { Duration::from_secs(60) } else { Duration::from_millis(250) };
        role.failed = Some((now + hold, refusal));
        Err(assume_error(refusal))
    }
}

fn assume_error(refusal: Refusal) -> FetchError {
    FetchError::AssumeRole { role_arn: ROLE_ARN.into(), refusal, reason: "simulated".into() }
}

impl TokenSource for SimSource {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        self.assume().await?;
        let mut held = self.token.lock().await;
        let now = Instant::now();
        let life = Duration::from_secs(12 * 3600);
        if let Some((expires_at, at)) = held.token {
            if now - at < life / 4 {
                return Ok(token(expires_at));
            }
        }
        let failed = |refusal| FetchError::GetAuthorizationToken {
            region: "us-east-1".into(),
            refusal,
            reason: "simulated".into(),
        };
        // As the AWS source remembers a failure for the key a quarter second.
        if let Some((_, refusal)) = held.failed.filter(|(until, _)| *until > now) {
            return Err(failed(refusal));
        }
        let refusal = match self.aws.call("GetAuthorizationToken", &self.node).await {
            Answer::Answered => None,
            Answer::Rejected => Some(Refusal::Throttled),
            Answer::TimedOut => Some(Refusal::Overloaded),
        };
        if let Some(refusal) = refusal {
            held.failed = Some((Instant::now() + Duration::from_millis(250), refusal));
            return Err(failed(refusal));
        }
        let expires_at = self.clock.wall() + life;
        *held = Held { token: Some((expires_at, Instant::now())), failed: None };
        Ok(token(expires_at))
    }

    fn shares_token(&self, _a: &RegistryConfig, _b: &RegistryConfig) -> bool {
        true
    }
}

/// What runs on a simulated node: this daemon's cache, or the model of
/// the policy the fleet work started from (any other contender).
enum SimNode {
    Ours(TokenCache<SimSource>),
    Baseline(Arc<baseline::Node>),
}

impl SimNode {
    /// A client's `get` for the node's first registry: served or not.
    async fn get(&self) -> bool {
        match self {
            SimNode::Ours(cache) => cache.get("127.0.0.1:6000").await.is_ok(),
            SimNode::Baseline(node) => node.get().await,
        }
    }
}

fn token(expires_at: SystemTime) -> FetchedToken {
    FetchedToken { username: "AWS".into(), secret: Secret::new("sim".into()), expires_at }
}

fn registry(j: usize) -> RegistryConfig {
    let ecr = RegistryConfig::unlisted("210987654321.dkr.ecr.us-east-1.amazonaws.com");
    let ecr = ecr.expect("an ECR host");
    RegistryConfig { host: format!("127.0.0.1:{}", 6000 + j), role_arn: Some(ROLE_ARN.into()), ..ecr }
}

/// The daemon's policy, or one with FLEET_BASE_MS, FLEET_CAP_WAITING_S,
/// FLEET_THROTTLE_BASE_MS, FLEET_CAP_PERCENT (the throttled cap's growth),
/// FLEET_STS_CAP_WAITING_S or FLEET_DENIED_BASE_S changed, to compare
/// candidates.
fn policy() -> RefreshPolicy {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut p = RefreshPolicy::default();
    if let Some(ms) = var("FLEET_BASE_MS") {
        p.backoff_base = Duration::from_millis(ms);
    }
    if let Some(s) = var("FLEET_CAP_WAITING_S") {
        p.backoff_cap_waiting = Duration::from_secs(s);
    }
    if let Some(ms) = var("FLEET_THROTTLE_BASE_MS") {
        p.throttled_backoff_base = Duration::from_millis(ms);
    }
    if let Some(pc) = var("FLEET_CAP_PERCENT") {
        p.throttled_cap_fraction = pc as f64 / 100.0;
    }
    if let Some(s) = var("FLEET_STS_CAP_WAITING_S") {
        p.sts_throttled_cap_waiting = Duration::from_secs(s);
    }
    if let Some(s) = var("FLEET_DENIED_BASE_S") {
        p.denied_backoff_base = Duration::from_secs(s);
    }
    p
}

/// Runs `spec` simulated (the policy's jitter differs from run to run).
/// `starts`, when given, are when each node first called AWS in a real run:
/// the simulated nodes start then, so the harness's own start-up skew (one
/// process spawned after another) is not mistaken for the policy's.
pub(crate) fn run(
    spec: &FleetSpec,
    server: Server,
    latency: Duration,
    starts: Option<&[f64]>,
) -> FleetResult {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let Ok(rt) = rt else { panic!("a runtime for the simulation") };
    let boots: Vec<Duration> = (0..spec.nodes)
        .map(|i| match starts.and_then(|s| s.get(i)) {
            Some(&at) => Duration::from_secs_f64(at.max(0.0)),
            None => spec.spread.mul_f64(i as f64 / spec.nodes.max(1) as f64),
        })
        .collect();
    rt.block_on(simulate(spec.clone(), server, latency, boots))
}

async fn simulate(spec: FleetSpec, server: Server, latency: Duration, boots: Vec<Duration>) -> FleetResult {
    let start = Instant::now();
    let aws = Arc::new(SimAws {
        server,
        start,
        ecr: Mutex::new(Meter::new(spec.ecr, start.into_std())),
        sts: Mutex::new(Meter::new(spec.sts, start.into_std())),
        denied: spec.denied,
        latency,
        in_flight: AtomicUsize::new(0),
        moto_free: Mutex::new(start),
        slots: tokio::sync::Semaphore::new(match server {
            Server::Moto(MotoModel::Shared(c)) => c.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            _ => 1,
        }),
        calls: Mutex::new(Vec::new()),
    });
    let clock =
        Arc::new(SimClock { start, wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) });
    let metrics = Arc::new(ecr_credd::metrics::Metrics::new());
    let done = Arc::new(Mutex::new(vec![(None::<f64>, 0u32); spec.nodes]));
    let mut nodes = Vec::new();
    for i in 0..spec.nodes {
        let boot = boots[i];
        let (aws, clock, metrics, done) = (aws.clone(), clock.clone(), metrics.clone(), done.clone());
        let spec = spec.clone();
        nodes.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + boot).await;
            let node = if spec.contender == Contender::Ours {
                let source = SimSource {
                    node: node_key(i),
                    aws,
                    role: tokio::sync::Mutex::default(),
                    token: tokio::sync::Mutex::default(),
                    clock: clock.clone(),
                };
                let registries: Vec<RegistryConfig> = (0..spec.registries_of(i)).map(registry).collect();
                let cache = TokenCache::new(&registries, false, source, clock, policy(), metrics);
                cache.start();
                SimNode::Ours(cache)
            } else {
                SimNode::Baseline(baseline::Node::start(node_key(i), aws, spec.registries_of(i)))
            };
            for offset in KUBELET_RETRIES {
                let at = boot + Duration::from_secs(offset);
                if at > spec.limit {
                    break;
                }
                tokio::time::sleep_until(start + at).await;
                let ok = node.get().await;
                let mut d = lock(&done);
                d[i].1 += 1;
                if ok {
                    d[i].0 = Some((Instant::now() - start).as_secs_f64());
                    break;
                }
            }
            // Keep the node (and its refreshers) alive to the end of the run.
            tokio::time::sleep_until(start + spec.limit).await;
            drop(node);
        }));
    }
    for n in nodes {
        let _ = n.await;
    }
    let calls = std::mem::take(&mut *lock(&aws.calls));
    let clients = lock(&done).clone();
    let first = first_tokens(&calls);
    let results = (0..spec.nodes)
        .map(|i| {
            let token = first.get(node_key(i).as_str()).copied();
            NodeResult {
                boot: boots[i].as_secs_f64(),
                token,
                client: clients[i].0,
                client_attempts: clients[i].1,
                rss_kib: 0,
                pss_kib: 0,
            }
        })
        .collect();
    let wall = spec.limit.as_secs_f64();
    FleetResult { spec, nodes: results, calls, wall }
}
