//! Floors measured in the same run as the figures they bound, so that a reader can tell
//! the product's cost from the machine's: the data directory's own durable write (what a
//! group commit costs the disk, with no database in the way), a raw Ed25519 signature
//! (what one passport's signature costs a core) and one thread waking another (what each
//! hand-off to the serial step and back costs; virtual machines differ here by far more
//! than in arithmetic). Machines here differ by 3× from one session to the next; a ratio
//! to a floor of the same run does not.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use agentsigna_core::signing::FastSigningKey;
use agentsigna_verify::signer::Ed25519Signer as _;
use anyhow::{anyhow, Context as _};
use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::load::{scheduled_at, sleep_until};
use super::report::Latency;

/// Bytes of one floor write: 12 WAL frames of a 4 KiB page and its 24-byte header, what
/// SQLite writes to commit a batch of one authorized request (its case row, the case's
/// id, idempotency and listing indexes, the passport, three ledger entries and their
/// index, Merkle nodes, the checkpoint; counted with `strace` on the writer thread).
pub const FLOOR_WRITE_BYTES: usize = 12 * (4096 + 24);

/// The floor's writes cycle over this many slots of a preallocated file (≈ 4 MiB, the size
/// SQLite's WAL reaches at its default checkpoint threshold of 1,000 pages): overwrites of
/// allocated blocks, as a reused WAL's are.
const SLOTS: u64 = 80;

/// The disk floor runs as long as a phase, but no longer than this: ten thousand writes at
/// 1,000/s already give a stable p99.9, and a long benchmark should not wait as long again.
pub const MAX_FLOOR_DURATION: Duration = Duration::from_secs(10);

/// The data directory's durable write, measured alone.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFloor {
    /// Bytes written before each `fsync`.
    pub bytes_per_write: usize,
    /// Writes scheduled per second (the open loop's rate).
    pub rate: u32,
    /// Writes made.
    pub writes: u64,
    /// Each write and its `fsync`, from the write's start (not its scheduled time: one
    /// writer that never batches is not what the server runs).
    pub latency_ms: Option<Latency>,
    /// The call that made each write durable, the same one the bundled SQLite makes.
    pub sync: &'static str,
}

/// Writes [`FLOOR_WRITE_BYTES`] and `fsync`s them, `rate` times a second for `duration`,
/// in a scratch file of `dir` (removed afterwards); a disk too slow for the rate makes
/// the writes back to back, and the floor stops at twice `duration`.
pub fn disk_floor(dir: &Path, rate: u32, duration: Duration) -> anyhow::Result<DiskFloor> {
    let path = dir.join(".bench-disk-floor");
    let result = write_paced(&path, rate, duration);
    let _ = std::fs::remove_file(&path);
    let samples = result?;
    Ok(DiskFloor {
        bytes_per_write: FLOOR_WRITE_BYTES,
        rate,
        writes: samples.len() as u64,
        latency_ms: Latency::of(samples),
        sync: "fsync",
    })
}

fn write_paced(path: &Path, rate: u32, duration: Duration) -> anyhow::Result<Vec<Duration>> {
    if rate == 0 {
        return Err(anyhow!("the disk floor needs a rate above 0"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // Not zeros: a file system that compresses or deduplicates must not get the floor cheap.
    let chunk: Vec<u8> =
        (0..FLOOR_WRITE_BYTES as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    let size = FLOOR_WRITE_BYTES as u64;
    for slot in 0..SLOTS {
        file.write_all_at(&chunk, slot * size).context("cannot preallocate the disk floor's file")?;
    }
    file.sync_all().context("cannot fsync the disk floor's file")?;
    let total = u64::from(rate).saturating_mul(duration.as_secs().max(1));
    // (Reserved up to a million: a rate no disk keeps up with ends at `give_up` anyway.)
    let mut samples = Vec::with_capacity(usize::try_from(total.min(1 << 20)).unwrap_or(0));
    let start = Instant::now();
    let give_up = start + duration.saturating_mul(2).max(Duration::from_secs(2));
    for seq in 0..total {
        let at = scheduled_at(start, seq, rate);
        let now = Instant::now();
        if at <= now && now >= give_up {
            break;
        }
        sleep_until(at);
        let began = Instant::now();
        file.write_all_at(&chunk, (seq % SLOTS) * size).context("a disk floor write failed")?;
        file.sync_all().context("a disk floor fsync failed")?;
        samples.push(began.elapsed());
    }
    Ok(samples)
}

/// One Ed25519 signature over a passport-sized message (with AWS-LC, as passports and
/// checkpoints are signed), in µs: the fastest of three rounds' means, so that a busy
/// moment of the host does not count.
pub fn ed25519_sign_micros() -> f64 {
    let Ok(key) = FastSigningKey::new(SigningKey::from_bytes(&[7; 32])) else { return 0.0 };
    // About the length of a passport's JWS signing input (header and claims, base64url).
    let mut message = vec![b'a'; 1_200];
    fastest_round_micros(|i| {
        message[..4].copy_from_slice(&i.to_le_bytes());
        std::hint::black_box(key.sign_message(std::hint::black_box(&message)));
    })
}

/// `once` (given its call's number) timed in three rounds of 2,000 calls, in µs per call:
/// the fastest round's mean, so that a busy moment of the host does not count.
fn fastest_round_micros(mut once: impl FnMut(u32)) -> f64 {
    const ROUNDS: u32 = 3;
    const PER_ROUND: u32 = 2_000;
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..PER_ROUND {
            once(i);
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND));
    }
    best
}

/// One thread waking another that waits for it (Linux; `null` where the threads could
/// not be pinned): the same hand-off with both threads on one CPU and on two.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WakeFloor {
    /// Both threads on the first CPU the process may use: a switch from one to the other, µs.
    pub same_cpu_us: Option<f64>,
    /// On the first two it may use: one CPU waking the other, which may have gone idle, µs
    /// (`null` with a single CPU).
    pub across_cpus_us: Option<f64>,
}

/// [`WakeFloor`]: two threads hand a turn back and forth, each parked (a futex wait, no
/// spinning) until the other unparks it, and a wake-up is half a round trip; the fastest
/// of three rounds' means, as for the signature. That is the kind of wait a commit makes
/// twice (a server thread waking the serial step, the serial step waking the request's
/// task); where the kernel puts the threads decides which of the two figures it costs.
pub fn thread_wake() -> WakeFloor {
    let cpus = allowed_cpus();
    let pair = |a: Option<&usize>, b: Option<&usize>| a.zip(b).and_then(|(a, b)| wake_micros(*a, *b).ok());
    WakeFloor { same_cpu_us: pair(cpus.first(), cpus.first()), across_cpus_us: pair(cpus.first(), cpus.get(1)) }
}

/// The CPUs this process may run on, in order (none where that cannot be read).
fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_getaffinity, CpuSet};
        use nix::unistd::Pid;
        let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else { return Vec::new() };
        (0..CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect()
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("cannot pin a thread to CPU {cpu}"))
    }
    #[cfg(not(target_os = "linux"))]
    Err(anyhow!("threads are pinned on Linux only (CPU {cpu})"))
}

/// The hand-off between a thread on `here` and one on `there`, µs per wake-up. Both
/// threads are the floor's own, started and ended here (a pinned thread is not left to
/// anyone else).
fn wake_micros(here: usize, there: usize) -> anyhow::Result<f64> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{mpsc, Arc};
    std::thread::Builder::new()
        .name("agentsigna-wake".into())
        .spawn(move || -> anyhow::Result<f64> {
            pin_to(here)?;
            // Odd: the partner's turn; even: this thread's; 0: the partner is to stop.
            let turn = Arc::new(AtomicU32::new(2));
            let (me, partner_turn) = (std::thread::current(), Arc::clone(&turn));
            let (pinned_tx, pinned) = mpsc::sync_channel(1);
            let partner = std::thread::Builder::new()
                .name("agentsigna-wake".into())
                .spawn(move || {
                    let _ = pinned_tx.send(pin_to(there));
                    loop {
                        let t = partner_turn.load(Ordering::Acquire);
                        if t == 0 {
                            return;
                        }
                        if t % 2 == 1 {
                            partner_turn.store(t + 1, Ordering::Release);
                            me.unpark();
                        } else {
                            std::thread::park();
                        }
                    }
                })
                .context("cannot start the wake-up floor's thread")?;
            let result = pinned.recv().map_err(|_| anyhow!("the wake-up floor's thread ended")).and_then(|p| p);
            let mut t = 2u32;
            // A round trip is two wake-ups.
            let measured = result.map(|()| {
                fastest_round_micros(|_| {
                    turn.store(t + 1, Ordering::Release);
                    partner.thread().unpark();
                    t += 2;
                    while turn.load(Ordering::Acquire) != t {
                        std::thread::park();
                    }
                }) / 2.0
            });
            turn.store(0, Ordering::Release);
            partner.thread().unpark();
            partner.join().map_err(|_| anyhow!("the wake-up floor's thread panicked"))?;
            measured
        })
        .context("cannot start the wake-up floor's thread")?
        .join()
        .map_err(|_| anyhow!("the wake-up floor's thread panicked"))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_disk_floor_makes_every_scheduled_write_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let floor = disk_floor(dir.path(), 40, Duration::from_secs(1)).unwrap();
        assert_eq!(floor.writes, 40, "{floor:?}");
        assert_eq!(floor.bytes_per_write, FLOOR_WRITE_BYTES);
        let l = floor.latency_ms.unwrap();
        assert!(0.0 < l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scratch file was removed");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = disk_floor(&dir.path().join("absent"), 10, Duration::from_secs(1)).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
    }

    #[test]
    fn a_wake_up_costs_some_time_on_one_cpu_and_across_two() {
        let cpus = allowed_cpus();
        if cpus.is_empty() {
            eprintln!("skipped: this system does not say which CPUs the process may use");
            return;
        }
        let floor = thread_wake();
        let same = floor.same_cpu_us.expect("a thread can be pinned to an allowed CPU");
        assert!(same.is_finite() && same > 0.0, "{floor:?}");
        match cpus.len() {
            1 => assert!(floor.across_cpus_us.is_none(), "one CPU: {floor:?}"),
            _ => assert!(floor.across_cpus_us.is_some_and(|us| us.is_finite() && us > 0.0), "{floor:?}"),
        }
        // A CPU the process may not use is refused, not measured.
        assert!(wake_micros(cpus[0], 1 << 20).is_err());
    }

    #[test]
    fn a_signature_costs_some_time() {
        let us = ed25519_sign_micros();
        assert!(us.is_finite() && us > 0.0, "{us}");
    }
}
