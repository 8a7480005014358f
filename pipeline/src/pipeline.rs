//! The pipeline: a reader (the calling thread), N workers sharing one flow table, a writer thread.
//!
//! ```text
//! reader ──batches by hash(key)──▶ worker 0..N ──get_batch / get_or_insert_with──▶ table
//!                                                  expire(now, budget) ──listener──▶ writer ──▶ CSV/JSONL
//! ```
//!
//! - The reader reads records in file order, decodes them, gives each packet a sequence number,
//!   and appends it to the batch of the worker chosen by the hash of its canonical key. The key is
//!   the same for both directions, so a flow's packets all reach one worker, in file order: side A
//!   (the first packet's source) and first/last timestamps are those of file order.
//! - A worker looks a whole batch up with `get_batch`, creates misses with `get_or_insert_with`,
//!   counts each packet under the flow's mutex (see [`crate::state`]), updates the flow's idle
//!   timeout and class, and after the batch calls `expire(now, budget)`, where `now` is the expiry
//!   watermark: the smallest reader clock among the batches all workers have finished (see
//!   `worker`). With one worker and monotonic timestamps that is the batch's latest timestamp.
//! - At the end of the input, flows whose deadline passed by the capture's latest timestamp are
//!   expired (one unbounded `expire`), then every remaining flow is flushed with `clear()`: the
//!   listener sees cause `Removed` and the row says `flushed`. Each flow is exported exactly once,
//!   by the listener.
//!
//! Time is the packets' own. Expiring with a worker's own batch time would let a worker whose batch
//! reaches later timestamps expire flows whose next packets still wait in another worker's queue
//! (it split flows in `web-ipv4-ipv6.pcap` with 3 workers); the watermark prevents that, so the
//! export does not depend on the worker count, with timeouts on or off.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowtable::{
    CapacityPolicy, DefaultHashBuilder, FlowHandle, FlowKey, FlowTable, FlowTableBuilder, Stats, Timestamp,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::capture::{CaptureReader, Next, ReadError};
use crate::cli::{Args, DEFAULT_INPUT};
use crate::decode::{decode, Decoded};
use crate::export::{self, ExportRecord, ExportTotals};
use crate::state::{Change, FlowValue, Packet, Timeouts};
use crate::summary::Summary;

/// Batches queued per worker before the reader waits.
const QUEUE_DEPTH: usize = 4;
/// Attempts to count a packet into a live flow before giving up (each failed attempt means the
/// flow left the table between lookup and update, and a new one is made).
const MAX_ATTEMPTS: usize = 8;

/// Why a run could not start or finish.
#[derive(Debug)]
pub enum RunError {
    /// No input was given and the bundled capture is missing.
    MissingDefault(PathBuf),
    /// The input could not be opened.
    Open(PathBuf, std::io::Error),
    /// The output could not be created.
    Output(PathBuf, std::io::Error),
    /// The input is not a readable capture (bad file header).
    Capture(PathBuf, ReadError),
    /// The table could not be built from the options.
    Config(flowtable::ConfigError),
    /// A thread could not be started.
    Thread(std::io::Error),
    /// A worker or the writer thread panicked.
    Panicked(&'static str),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::MissingDefault(p) => write!(
                f,
                "no input given and the bundled capture {DEFAULT_INPUT} is missing (looked for {}); \
                 pass a capture file: flowpipe <FILE.pcap|FILE.pcapng>",
                p.display()
            ),
            RunError::Open(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            RunError::Output(p, e) => write!(f, "cannot create {}: {e}", p.display()),
            RunError::Capture(p, e) => write!(f, "{}: {e}", p.display()),
            RunError::Config(e) => write!(f, "bad table configuration: {e}"),
            RunError::Thread(e) => write!(f, "cannot start a thread: {e}"),
            RunError::Panicked(who) => write!(f, "the {who} thread panicked"),
        }
    }
}

impl std::error::Error for RunError {}

/// What a run produced besides the exported rows.
#[derive(Debug)]
pub struct Report {
    /// Counters for the summary.
    pub summary: Summary,
    /// The error that ended the read early (truncated or corrupt file); every flow seen before it
    /// was still exported.
    pub read_error: Option<ReadError>,
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The input path: the argument, or the bundled capture.
pub fn input_path(args: &Args) -> Result<PathBuf, RunError> {
    match &args.input {
        Some(p) => Ok(p.clone()),
        None => {
            let p = workspace_root().join(DEFAULT_INPUT);
            if p.exists() {
                Ok(p)
            } else {
                Err(RunError::MissingDefault(p))
            }
        }
    }
}

/// Runs the pipeline as the command line does: the output goes to `--output` or stdout.
pub fn run_cli<T>(args: &Args) -> Result<Report, RunError>
where
    T: FlowTable<FlowKey, FlowValue, Hasher = DefaultHashBuilder>,
{
    let out: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(File::create(p).map_err(|e| RunError::Output(p.clone(), e))?),
        None => Box::new(std::io::stdout()),
    };
    run::<T>(args, out)
}

/// Runs the pipeline and returns the export in memory (for tests and embedding).
pub fn run_to_memory<T>(args: &Args) -> Result<(Report, Vec<u8>), RunError>
where
    T: FlowTable<FlowKey, FlowValue, Hasher = DefaultHashBuilder>,
{
    let buf = SharedBuf::default();
    let report = run::<T>(args, Box::new(buf.clone()))?;
    let bytes = std::mem::take(&mut *buf.0.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((report, bytes))
}

/// A `Write` into a shared vector.
#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counters the reader and the workers share.
#[derive(Debug, Default)]
struct Shared {
    /// Packets that could not be counted into any flow (table full, or flows kept leaving).
    untracked: AtomicU64,
    /// Flows that left the table before their first packet was counted (not exported).
    empty: Arc<AtomicU64>,
    /// Most flows seen in the table at once.
    peak: AtomicUsize,
    /// `--evict`: a refused insert is retried (the table evicts, but under contention another
    /// thread may take the room it made, and it then reports the table full).
    retry_full: bool,
}

/// Reader-side counters.
#[derive(Debug, Default)]
pub(crate) struct ReadCounts {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) ip_packets: u64,
    pub(crate) non_ip: u64,
    pub(crate) malformed: u64,
    pub(crate) truncated: u64,
    /// The latest packet timestamp seen (timestamps need not be monotonic in a file).
    pub(crate) max_ts: Timestamp,
}

/// Runs the pipeline on `args.input`, writing the export to `out`.
///
/// A file that breaks part-way is not an error: the read stops there, every flow seen is exported,
/// and the error is returned in [`Report::read_error`].
pub fn run<T>(args: &Args, out: Box<dyn Write + Send>) -> Result<Report, RunError>
where
    T: FlowTable<FlowKey, FlowValue, Hasher = DefaultHashBuilder>,
{
    let path = input_path(args)?;
    let file = File::open(&path).map_err(|e| RunError::Open(path.clone(), e))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = CaptureReader::new(file).map_err(|e| RunError::Capture(path.clone(), e))?;
    let progress = progress_bar(file_len, args.quiet);
    let started = Instant::now();
    let workers = args.worker_count();

    if args.parse_only {
        let mut counts = ReadCounts::default();
        let read_error = read_loop(&mut reader, &progress, &mut counts, |_| {});
        progress.finish_and_clear();
        let summary = Summary::new(path, "none (parse only)", 0, &counts, started.elapsed());
        return Ok(Report { summary, read_error });
    }

    let timeouts = args.timeouts();
    let (export_tx, export_rx) = mpsc::channel::<ExportRecord>();
    let shared = Shared { retry_full: args.evict, ..Shared::default() };
    // The table first: if the options are bad, nothing (not even the CSV header) is written.
    let table = build_table::<T>(args, &timeouts, export_tx, &shared)?;
    let format = args.format;
    let writer = std::thread::Builder::new()
        .name("flowpipe-writer".into())
        .spawn(move || export::write_all(export_rx, out, format))
        .map_err(RunError::Thread)?;
    let mut counts = ReadCounts::default();
    let batch = args.batch as usize;
    let budget = args.expire_budget as usize;

    // Per worker: the reader clock of the last batch it finished (nanoseconds); see `worker`.
    let finished: Vec<AtomicU64> = (0..workers).map(|_| AtomicU64::new(0)).collect();

    let read_error = std::thread::scope(|s| {
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<Packet>>();
        let mut senders: Vec<SyncSender<Batch>> = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for me in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUE_DEPTH);
            senders.push(tx);
            let ctx =
                WorkerCtx { table: &table, timeouts: &timeouts, budget, shared: &shared, finished: &finished, me };
            let recycle = recycle_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("flowpipe-worker-{me}"))
                .spawn_scoped(s, move || worker(ctx, rx, recycle));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the workers already running (their channels close) and give up.
                    drop(senders);
                    for h in handles {
                        let _ = h.join(); // a panic there is moot: the run already failed
                    }
                    return Err(RunError::Thread(e));
                }
            }
        }
        drop(recycle_tx);

        let mut pending: Vec<Vec<Packet>> = (0..workers).map(|_| Vec::with_capacity(batch)).collect();
        let mut since_flush = 0usize;
        let flush_every = batch.saturating_mul(workers);
        // The reader's clock: the timestamp of the last packet read. Time follows the packets, also
        // when a file steps back (ftp-bruteforce.pcap does, by 44 s): a clock that kept the maximum
        // would make every flow after the step look 44 s old and expire it early.
        let mut clock = Timestamp::ZERO;
        let send = |w: usize, pending: &mut Vec<Vec<Packet>>, clock: Timestamp| {
            let fresh = recycle_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(batch));
            let packets = std::mem::replace(&mut pending[w], fresh);
            // A worker only hangs up if it panicked; its panic is reported after the join.
            let _ = senders[w].send(Batch { packets, clock });
        };
        let read_error = read_loop(&mut reader, &progress, &mut counts, |mut p: Packet| {
            p.hash = table.hash_key(&p.key);
            clock = p.ts;
            let w = pick_worker(p.hash, workers);
            pending[w].push(p);
            if pending[w].len() >= batch {
                send(w, &mut pending, clock);
            }
            since_flush += 1;
            if since_flush >= flush_every {
                // Every worker gets a batch, empty or not, so every worker's clock moves on and the
                // expiry watermark (the minimum of them) follows the reader.
                since_flush = 0;
                for w in 0..workers {
                    send(w, &mut pending, clock);
                }
            }
        });
        for w in 0..workers {
            if !pending[w].is_empty() {
                send(w, &mut pending, clock);
            }
        }
        drop(senders);
        let panicked = handles.into_iter().map(|h| h.join()).any(|r| r.is_err());
        Ok((read_error, panicked))
    });
    let (read_error, worker_panicked) = read_error?;
    progress.finish_and_clear();
    let packet_phase = started.elapsed();
    let live_after_packets = table.len();
    let memory_after_packets = table.stats().memory_bytes;

    // Flows whose deadline passed by the capture's latest time expire (expiry between batches is
    // bounded and driven by traffic, so a sparse tail leaves some behind); every flow still in the
    // table then leaves through `clear` (cause Removed, exported as "flushed").
    table.expire(counts.max_ts, usize::MAX);
    let live_at_end = table.len();
    table.clear();
    let stats: Stats = table.stats();
    drop(table); // drops the listener, and with it the last export sender: the writer finishes
    let totals: ExportTotals = writer.join().map_err(|_| RunError::Panicked("writer"))?;
    let flush_phase = started.elapsed().saturating_sub(packet_phase);
    if worker_panicked {
        return Err(RunError::Panicked("worker"));
    }
    let mut summary = Summary::new(path, T::NAME, workers, &counts, started.elapsed());
    summary.untracked = shared.untracked.load(Ordering::Relaxed);
    summary.empty_flows = shared.empty.load(Ordering::Relaxed);
    summary.stats = Some(stats);
    summary.live_at_end = live_at_end;
    summary.phases = Some((packet_phase, flush_phase));
    summary.peak_live = shared.peak.load(Ordering::Relaxed).max(live_at_end);
    summary.export = Some(totals);
    summary.table_memory = Some((memory_after_packets, live_after_packets));
    Ok(Report { summary, read_error })
}

fn build_table<T>(
    args: &Args,
    timeouts: &Timeouts,
    export_tx: Sender<ExportRecord>,
    shared: &Shared,
) -> Result<T, RunError>
where
    T: FlowTable<FlowKey, FlowValue, Hasher = DefaultHashBuilder>,
{
    let empty = Arc::clone(&shared.empty);
    let mut builder =
        FlowTableBuilder::<FlowKey, FlowValue>::new().idle_timeout(timeouts.generic).listener(move |ev| {
            let mut st = ev.value.lock();
            if st.exported {
                return; // the table promises exactly once; this only guards the export
            }
            st.exported = true;
            if !st.started {
                empty.fetch_add(1, Ordering::Relaxed);
                return; // made, then expired before its first packet was counted: nothing to say
            }
            let rec = ExportRecord::new(ev.key, &st, ev.cause);
            drop(st);
            // The writer only hangs up if it panicked; that is reported at the join.
            let _ = export_tx.send(rec);
        });
    if let Some(m) = args.max_flows {
        builder = builder.max_flows(m);
    }
    if args.evict {
        builder = builder.capacity_policy(CapacityPolicy::Evict);
    }
    if let Some(s) = args.shards {
        builder = builder.shards(s);
    }
    builder.build::<T>().map_err(RunError::Config)
}

/// Reads every record, decodes it and hands each flow packet to `emit`; returns the error that
/// ended the read early, if any.
fn read_loop<R: std::io::Read>(
    reader: &mut CaptureReader<R>,
    progress: &ProgressBar,
    c: &mut ReadCounts,
    mut emit: impl FnMut(Packet),
) -> Option<ReadError> {
    let mut seq = 0u64;
    loop {
        let next = match reader.next_record() {
            Ok(n) => n,
            Err(e) => return Some(e),
        };
        match next {
            Next::Packet(rec) => {
                c.packets += 1;
                c.bytes += u64::from(rec.wire_len);
                match decode(rec.link, rec.data) {
                    Decoded::Flow(f) => {
                        c.ip_packets += 1;
                        c.max_ts = c.max_ts.max(rec.ts);
                        c.truncated += u64::from(f.truncated);
                        let p = Packet {
                            seq,
                            ts: rec.ts,
                            wire_len: rec.wire_len,
                            key: f.key,
                            hash: 0,
                            dir: f.dir,
                            tcp_flags: f.tcp_flags,
                        };
                        emit(p);
                    }
                    Decoded::NotIp => c.non_ip += 1,
                    Decoded::Malformed(_) => c.malformed += 1,
                }
                seq += 1;
            }
            Next::Skipped(_) => {
                c.packets += 1;
                c.malformed += 1;
                seq += 1;
            }
            Next::Other => {}
            Next::End => return None,
        }
        if seq % 4096 == 0 {
            progress.set_position(reader.offset());
        }
    }
}

/// The worker for a key hash: multiply-shift of the hash's high half (symmetric, because the key
/// is canonical).
fn pick_worker(hash: u64, workers: usize) -> usize {
    (((hash >> 32) * workers as u64) >> 32) as usize
}

/// A batch of packets for one worker, with the reader's clock when it was sent.
struct Batch {
    /// The packets, in file order.
    packets: Vec<Packet>,
    /// The timestamp of the last packet the reader had read when it sent the batch: every packet
    /// read before that moment and routed to this worker is in this batch or an earlier one.
    clock: Timestamp,
}

/// What a worker shares with the others.
struct WorkerCtx<'a, T> {
    table: &'a T,
    timeouts: &'a Timeouts,
    budget: usize,
    shared: &'a Shared,
    /// Per worker, the clock of the last batch it finished.
    finished: &'a [AtomicU64],
    me: usize,
}

/// A worker: counts its batches into the table and expires flows.
///
/// Expiry uses a watermark, not the worker's own batch time: `now` is the smallest clock among the
/// last batches the workers have finished. With monotonic timestamps every packet read before the
/// reader's clock reached `now` has then been counted by its worker, so no worker expires a flow
/// whose next packet is still queued for another; with one worker `now` is its batch's last packet
/// time. That keeps the export independent of the worker count (tested on every reference capture
/// in `tests/timeouts.rs`).
fn worker<T>(ctx: WorkerCtx<'_, T>, rx: Receiver<Batch>, recycle: Sender<Vec<Packet>>)
where
    T: FlowTable<FlowKey, FlowValue>,
{
    let table = ctx.table;
    let mut keys: Vec<FlowKey> = Vec::new();
    let mut hits: Vec<Option<T::Handle>> = Vec::new();
    for Batch { mut packets, clock } in rx {
        if let Some(first) = packets.first() {
            let mut lo = first.ts;
            keys.clear();
            for p in &packets {
                keys.push(p.key);
                lo = lo.min(p.ts);
            }
            // Look up with the batch's earliest time, so no flow live for one of its packets is missed.
            table.get_batch(&keys, lo, &mut hits);
            for (p, hit) in packets.iter().zip(hits.drain(..)) {
                count_packet(table, p, hit, ctx.timeouts, ctx.shared);
            }
            ctx.shared.peak.fetch_max(table.len(), Ordering::Relaxed);
        }
        // Release: this worker's counting happens-before any expiry at a watermark this reaches.
        ctx.finished[ctx.me].store(clock.as_nanos(), Ordering::Release);
        // Acquire: pairs with the other workers' Release above.
        let watermark = ctx.finished.iter().map(|f| f.load(Ordering::Acquire)).min().unwrap_or(0);
        table.expire(Timestamp::from_nanos(watermark), ctx.budget);
        packets.clear();
        let _ = recycle.send(packets); // the reader may be gone already: then the vector is dropped
    }
}

/// Counts one packet into its flow, creating the flow if needed.
///
/// A new flow is born with its first packet already counted (in `init`), so it can never leave the
/// table empty: under `--evict` a flow just made by a worker whose clock is behind is the least
/// recently seen one, and may be evicted by another worker before its maker could count into it.
fn count_packet<T>(table: &T, p: &Packet, mut hit: Option<T::Handle>, timeouts: &Timeouts, shared: &Shared)
where
    T: FlowTable<FlowKey, FlowValue>,
{
    for _ in 0..MAX_ATTEMPTS {
        if let Some(flow) = hit.take() {
            let change = {
                let mut st = flow.lock();
                // Under the flow's lock: the listener cannot export it between the check and the count.
                if st.exported || !flow.touch(p.ts) {
                    continue; // it left the table: count into a new flow
                }
                st.record(p, timeouts)
            };
            apply(&flow, change);
            return;
        }
        let mut born = None;
        let init = || {
            let value = FlowValue::new();
            born = Some(value.lock().record(p, timeouts));
            value
        };
        match table.get_or_insert_with_hashed(p.key, p.hash, p.ts, init) {
            Ok(r) if r.created => {
                if let Some(change) = born {
                    apply(&r.flow, change);
                }
                return;
            }
            Ok(r) => hit = Some(r.flow), // an existing flow: count into it on the next turn
            Err(_full) if shared.retry_full => continue,
            Err(_full) => break,
        }
    }
    shared.untracked.fetch_add(1, Ordering::Relaxed);
}

/// Tells the table what a packet changed (outside the flow's lock).
fn apply<H: FlowHandle<FlowKey, FlowValue>>(flow: &H, change: Change) {
    if flow.timeout() != change.timeout {
        flow.set_timeout(change.timeout);
    }
    if flow.class() != change.class {
        flow.set_class(change.class);
    }
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
