//! The CPU a phase of the benchmark used, in all and by thread group: from
//! `/proc/self/stat` and `/proc/self/task/*/stat` on Linux, `None` elsewhere; how often
//! the process's threads were switched off a CPU meanwhile (`/proc/self/task/*/status`);
//! and how busy each of the machine's CPUs was, from `/proc/stat`; which CPU and kernel
//! the machine has (`/proc/cpuinfo`, `/proc/sys/kernel/osrelease`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::report::Phase;

/// CPU time this process has used so far, every thread, user and system (Linux: from
/// `/proc/self/stat`, whose clock ticks are `USER_HZ`, 100 per second; `None` elsewhere).
fn process_cpu() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The threads of the servers' runtime, of the load generator's, and its open loop's pacer.
pub(super) const SERVER_THREAD: &str = "agentsigna-server";
pub(super) const BENCH_THREAD: &str = "agentsigna-bench";
pub(super) const PACER_THREAD: &str = "agentsigna-pacer";

/// The threads whose CPU a phase reports apart, by name, and the group each is counted in.
const THREAD_GROUPS: [(&str, &str); 5] = [
    (SERVER_THREAD, "server"),
    (agentsigna_store::sqlite::WRITER_THREAD, "writer"),
    (agentsigna_store::sqlite::WAL_THREAD, "wal_checkpoint"),
    (BENCH_THREAD, "load_generator"),
    (PACER_THREAD, "load_generator"),
];

/// Whether `kept`, a name as the kernel keeps it (at most its first 15 bytes), is `name`'s.
fn kept_name_of(kept: &str, name: &str) -> bool {
    name.as_bytes().starts_with(kept.as_bytes()) && kept.len() == name.len().min(15)
}

/// CPU time so far of this process's live threads, summed by [`THREAD_GROUPS`] (Linux:
/// `/proc/self/task/*/stat`; `None` elsewhere), every group present (PostgreSQL has no
/// writer thread: 0). Threads that have ended are not in it.
fn threads_cpu() -> Option<BTreeMap<&'static str, Duration>> {
    let mut by: BTreeMap<&'static str, Duration> = THREAD_GROUPS.iter().map(|(_, g)| (*g, Duration::ZERO)).collect();
    for (_, stat) in threads_file("stat")? {
        let (Some(name), Some(cpu)) = (thread_name(&stat), stat_cpu(&stat)) else { continue };
        if let Some((_, group)) = THREAD_GROUPS.iter().find(|(full, _)| kept_name_of(name, full)) {
            *by.entry(*group).or_default() += cpu;
        }
    }
    Some(by)
}

/// Context switches so far of each of this process's live threads, by thread id: voluntary
/// (it waited: a lock, a channel, I/O, an idle runtime) and not (the kernel preempted it)
/// (Linux: `/proc/self/task/*/status`; `None` elsewhere).
fn threads_switches() -> Option<BTreeMap<u64, u64>> {
    threads_file("status")?.into_iter().map(|(tid, status)| Some((tid, status_switches(&status)?))).collect()
}

/// `file` of each of this process's live threads (`/proc/self/task/<tid>/<file>`), with the
/// thread's id; `None` where there is no `/proc/self/task`.
fn threads_file(file: &str) -> Option<Vec<(u64, String)>> {
    let mut texts = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        // (A thread may end between the listing and the read.)
        let Ok(text) = std::fs::read_to_string(task.path().join(file)) else { continue };
        texts.push((tid, text));
    }
    Some(texts)
}

/// The switches between two readings: each thread's growth, all of a thread's that started
/// in between; a thread that ended in between is not counted (its switches are gone with it).
fn switches_between(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    after.iter().map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum()
}

/// The value of the first `name: value` line of a `/proc` text (`/proc/<pid>/status`,
/// `/proc/cpuinfo`, whose names are padded before the colon), trimmed.
fn proc_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim_end() == name).then(|| v.trim())
    })
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` from the text of a
/// `/proc/<pid>/task/<tid>/status`.
fn status_switches(status: &str) -> Option<u64> {
    let field = |name: &str| proc_field(status, name)?.parse::<u64>().ok();
    Some(field("voluntary_ctxt_switches")? + field("nonvoluntary_ctxt_switches")?)
}

/// The CPU's model name and the kernel's release, where the system says (Linux): figures
/// differ by host class.
pub(super) fn host() -> (Option<String>, Option<String>) {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| cpu_model(&info));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_owned());
    (cpu_model, kernel.filter(|k| !k.is_empty()))
}

/// The model name of the first CPU of a `/proc/cpuinfo`, with its family and model
/// numbers where given (a virtual machine's name can be as vague as "Intel(R) Xeon(R)
/// Processor").
fn cpu_model(info: &str) -> Option<String> {
    let name = proc_field(info, "model name").filter(|m| !m.is_empty())?;
    Some(match (proc_field(info, "cpu family"), proc_field(info, "model")) {
        (Some(f), Some(m)) => format!("{name} (family {f}, model {m})"),
        _ => name.to_owned(),
    })
}

/// The thread's name, field 2 of a `/proc/<pid>/task/<tid>/stat`, without its parentheses.
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// User + system time from the text of a `/proc/<pid>/stat`.
fn stat_cpu(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    // The command name, field 2, is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11); // fields 3..=13
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1000 / USER_HZ))
}

/// Each CPU's ticks so far, every process: busy and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct CpuTicks {
    busy: u64,
    total: u64,
}

impl CpuTicks {
    /// Two readings combined CPU by CPU by `f`; `None` when they do not cover the same
    /// CPUs (one was brought on or off line in between).
    fn each(a: &[CpuTicks], b: &[CpuTicks], f: impl Fn(CpuTicks, CpuTicks) -> CpuTicks) -> Option<Vec<CpuTicks>> {
        (a.len() == b.len()).then(|| a.iter().zip(b).map(|(a, b)| f(*a, *b)).collect())
    }
}

/// The machine's CPUs' ticks so far (Linux: `/proc/stat`; `None` elsewhere).
fn cpus_ticks() -> Option<Vec<CpuTicks>> {
    parse_cpus(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpuN` lines of a `/proc/stat` (not the first, `cpu`, their sum): busy is every
/// tick that is not idle, waiting for I/O or stolen by the hypervisor (fields user, nice,
/// system, idle, iowait, irq, softirq, steal; guest time is inside user and nice).
fn parse_cpus(stat: &str) -> Option<Vec<CpuTicks>> {
    let mut cpus = Vec::new();
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else { continue };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let fields: Vec<u64> =
            rest.split_ascii_whitespace().skip(1).take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
        let [user, nice, system, idle, iowait, irq, softirq] = fields.get(..7)?.try_into().ok()?;
        let steal = fields.get(7).copied().unwrap_or(0);
        let busy = user + nice + system + irq + softirq;
        cpus.push(CpuTicks { busy, total: busy + idle + iowait + steal });
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// The process's CPU time at one instant, in all and by thread group, and the machine's
/// CPUs' ticks (`None` where the system does not say).
pub(super) struct CpuMark {
    process: Option<Duration>,
    threads: Option<BTreeMap<&'static str, Duration>>,
    switches: Option<BTreeMap<u64, u64>>,
    cpus: Option<Vec<CpuTicks>>,
}

impl CpuMark {
    pub(super) fn now() -> CpuMark {
        CpuMark { process: process_cpu(), threads: threads_cpu(), switches: threads_switches(), cpus: cpus_ticks() }
    }

    /// The CPU used since this mark.
    pub(super) fn used(&self) -> CpuUsed {
        let now = CpuMark::now();
        CpuUsed {
            process: self.process.zip(now.process).map(|(b, a)| a.saturating_sub(b)),
            threads: self.threads.as_ref().zip(now.threads).map(|(b, a)| {
                a.into_iter()
                    .map(|(group, cpu)| (group, cpu.saturating_sub(b.get(group).copied().unwrap_or_default())))
                    .collect()
            }),
            switches: self.switches.as_ref().zip(now.switches.as_ref()).map(|(b, a)| switches_between(b, a)),
            cpus: self.cpus.as_ref().zip(now.cpus.as_ref()).and_then(|(b, a)| {
                CpuTicks::each(b, a, |b, a| CpuTicks {
                    busy: a.busy.saturating_sub(b.busy),
                    total: a.total.saturating_sub(b.total),
                })
            }),
        }
    }
}

/// CPU time used over one span of a phase or the sum of several.
pub(super) struct CpuUsed {
    process: Option<Duration>,
    threads: Option<BTreeMap<&'static str, Duration>>,
    switches: Option<u64>,
    cpus: Option<Vec<CpuTicks>>,
}

impl CpuUsed {
    pub(super) fn zero() -> CpuUsed {
        CpuUsed {
            process: Some(Duration::ZERO),
            threads: Some(BTreeMap::new()),
            switches: Some(0),
            cpus: Some(Vec::new()),
        }
    }

    /// Adds `other` (unknown once either is).
    pub(super) fn add(&mut self, other: &CpuUsed) {
        self.process = self.process.zip(other.process).map(|(a, b)| a + b);
        self.threads = self.threads.take().zip(other.threads.as_ref()).map(|(mut a, b)| {
            for (group, cpu) in b {
                *a.entry(group).or_default() += *cpu;
            }
            a
        });
        self.switches = self.switches.zip(other.switches).map(|(a, b)| a + b);
        // (The sum of no span yet, from `zero`, holds no CPU.)
        self.cpus = self.cpus.take().zip(other.cpus.as_ref()).and_then(|(a, b)| {
            if a.is_empty() {
                Some(b.clone())
            } else {
                CpuTicks::each(&a, b, |a, b| CpuTicks { busy: a.busy + b.busy, total: a.total + b.total })
            }
        });
    }

    pub(super) fn record_in(self, phase: &mut Phase) {
        if let Some(process) = self.process {
            phase.set_cpu(process, self.threads);
        }
        phase.context_switches_per_request = self.switches.filter(|_| phase.ok > 0).map(|n| n as f64 / phase.ok as f64);
        phase.cpus_busy = self
            .cpus
            .filter(|c| !c.is_empty())
            .map(|cpus| cpus.iter().map(|c| if c.total == 0 { 0.0 } else { c.busy as f64 / c.total as f64 }).collect());
    }
}

/// Runs one phase and records the process's CPU time over it, in all and by thread.
pub(super) async fn with_cpu(phase: impl std::future::Future<Output = anyhow::Result<Phase>>) -> anyhow::Result<Phase> {
    let mark = CpuMark::now();
    let mut phase = phase.await?;
    mark.used().record_in(&mut phase);
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_spans_add_up_and_stay_unknown_once_one_is() {
        let span = |ms: u64| CpuUsed {
            process: Some(Duration::from_millis(ms)),
            threads: Some(BTreeMap::from([("server", Duration::from_millis(ms / 2))])),
            switches: Some(ms * 3),
            cpus: Some(vec![CpuTicks { busy: ms / 10, total: ms / 10 }, CpuTicks { busy: 0, total: ms / 10 }]),
        };
        let mut total = CpuUsed::zero();
        total.add(&span(30));
        total.add(&span(50));
        assert_eq!(total.process, Some(Duration::from_millis(80)));
        assert_eq!(total.threads.as_ref().unwrap()["server"], Duration::from_millis(40));
        assert_eq!(total.switches, Some(240));
        assert_eq!(total.cpus, Some(vec![CpuTicks { busy: 8, total: 8 }, CpuTicks { busy: 0, total: 8 }]));
        let mut other_cpus = CpuUsed::zero();
        other_cpus.add(&span(30));
        other_cpus.add(&CpuUsed { cpus: Some(vec![CpuTicks::default(); 3]), ..span(30) });
        assert!(other_cpus.cpus.is_none(), "spans over different CPUs do not add up");
        total.add(&CpuUsed { process: None, threads: None, switches: None, cpus: None });
        assert!(total.process.is_none() && total.threads.is_none() && total.switches.is_none() && total.cpus.is_none());
        total.add(&span(10));
        assert!(total.process.is_none(), "an unknown span leaves the sum unknown");
    }

    /// Spins until `used` (CPU counted in ticks of 10 ms) has grown by five ticks, however
    /// busy the host: no bound on how fast that must happen, only that it does (a minute at
    /// most). Returns the last `used`.
    fn spin_until_five_ticks(mut used: impl FnMut() -> Duration) -> Duration {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            let used = used();
            if used >= Duration::from_millis(50) || std::time::Instant::now() > deadline {
                return used;
            }
        }
    }

    #[test]
    fn process_cpu_grows_with_work() {
        let Some(before) = process_cpu() else {
            eprintln!("skipped: no /proc/self/stat on this system");
            return;
        };
        let used =
            spin_until_five_ticks(|| process_cpu().expect("/proc/self/stat was readable").saturating_sub(before));
        assert!(used >= Duration::from_millis(50), "a minute of spinning counted as {used:?} of CPU");
    }

    #[test]
    fn a_named_threads_cpu_is_counted_in_its_group() {
        let Some(before) = threads_cpu() else {
            eprintln!("skipped: no /proc/self/task on this system");
            return;
        };
        let writer = |t: &BTreeMap<&str, Duration>| t.get("writer").copied().unwrap_or_default();
        // A thread named as the SQLite writer is.
        let spun = std::thread::Builder::new()
            .name(agentsigna_store::sqlite::WRITER_THREAD.into())
            .spawn(move || {
                spin_until_five_ticks(|| {
                    writer(&threads_cpu().expect("/proc/self/task was readable")).saturating_sub(writer(&before))
                })
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(spun >= Duration::from_millis(50), "a minute of spinning counted as {spun:?} of the writer's CPU");
        assert_eq!(thread_name("17 (agentsigna-writ) S 1 2"), Some("agentsigna-writ"));
        assert_eq!(thread_name("17 (a (b) c) S 1 2"), Some("a (b) c"), "a name may hold parentheses");
        // The kernel keeps a name's first 15 bytes: the whole of a shorter one.
        assert!(kept_name_of("agentsigna-writ", "agentsigna-writer"));
        assert!(kept_name_of("agentsigna-pace", "agentsigna-pacer"));
        assert!(kept_name_of("short", "short"));
        assert!(!kept_name_of("agentsigna-wri", "agentsigna-writer"), "a shorter kept name is another thread's");
        assert!(!kept_name_of("agentsigna-serv", "agentsigna-writer"));
    }

    #[test]
    fn each_cpus_busy_share_is_what_is_neither_idle_nor_waiting_nor_stolen() {
        let stat = "cpu  30 0 20 140 10 0 0 0 0 0\n\
                    cpu0 20 0 10 60 5 3 2 0 0 0\n\
                    cpu1 10 0 10 80 5 0 0 5 7 0\n\
                    intr 12345 0 0\nctxt 999\n";
        let cpus = parse_cpus(stat).unwrap();
        assert_eq!(cpus, vec![CpuTicks { busy: 35, total: 100 }, CpuTicks { busy: 20, total: 110 }]);
        assert_eq!(parse_cpus("cpu  1 2 3 4 5 6 7\nintr 1\n"), None, "no per-CPU line");
        assert_eq!(parse_cpus("cpu0 1 2 x 4 5 6 7\n"), None, "a field that is not a number");
        assert_eq!(parse_cpus("cpu0 1 2 3 4\n"), None, "too few fields");
        // Over a span of this process's own run, every share is a fraction.
        let mark = CpuMark::now();
        if mark.cpus.is_none() {
            eprintln!("skipped: no /proc/stat on this system");
            return;
        }
        spin_until_five_ticks(|| process_cpu().unwrap_or_default().saturating_sub(mark.process.unwrap_or_default()));
        let mut phase =
            Phase::new("span".into(), 1, None, Duration::from_secs(1), super::super::load::Tally::default());
        mark.used().record_in(&mut phase);
        let busy = phase.cpus_busy.expect("/proc/stat was readable");
        assert!(!busy.is_empty());
        assert!(busy.iter().all(|b| (0.0..=1.0).contains(b)), "{busy:?}");
        assert!(busy.iter().any(|b| *b > 0.0), "a spinning thread kept some CPU busy: {busy:?}");
    }

    #[test]
    fn the_cpu_model_is_named_with_its_family_and_model_numbers() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n\
                   model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\n\nprocessor\t: 1\n\
                   model name\t: Another\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("Intel(R) Xeon(R) Processor (family 6, model 207)"));
        assert_eq!(cpu_model("model name\t: Some CPU\n").as_deref(), Some("Some CPU"), "no numbers given");
        assert_eq!(cpu_model("processor\t: 0\nCPU implementer\t: 0x41\n"), None, "ARM names no model");
        assert_eq!(cpu_model("model name\t: \n"), None, "an empty name");
    }

    #[test]
    fn a_threads_waits_are_counted_as_context_switches_per_request() {
        let status = "Name:\tagentsigna-writ\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\n\
                      nonvoluntary_ctxt_switches:\t34\n";
        assert_eq!(status_switches(status), Some(1234));
        assert_eq!(status_switches("Name:\tx\nvoluntary_ctxt_switches:\t5\n"), None, "a field missing");
        assert_eq!(status_switches("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"), None);
        // Threads that live on grow, a new one counts whole, an ended one is not counted.
        let before = BTreeMap::from([(1, 10), (2, 50), (3, 7)]);
        let after = BTreeMap::from([(1, 15), (3, 7), (4, 4)]);
        assert_eq!(switches_between(&before, &after), 9);
        let mark = CpuMark::now();
        if mark.switches.is_none() {
            eprintln!("skipped: no /proc/self/task/*/status on this system");
            return;
        }
        // A thread that waits 20 times for another is switched off its CPU at least 20 times
        // (whatever other tests' threads end meanwhile).
        for _ in 0..20 {
            std::thread::spawn(|| std::thread::sleep(Duration::from_millis(1))).join().unwrap();
        }
        let mut phase =
            Phase::new("span".into(), 1, None, Duration::from_secs(1), super::super::load::Tally::default());
        phase.ok = 10;
        mark.used().record_in(&mut phase);
        let per = phase.context_switches_per_request.expect("/proc/self/task was readable");
        assert!(per >= 2.0, "20 waits over 10 requests counted as {per} switches per request");
    }

    #[test]
    fn stat_fields_are_user_and_system_ticks() {
        // Fields 14 and 15 (utime 250, stime 75 ticks of 1/100 s); the name holds a space
        // and a parenthesis.
        let stat = "4242 (agent signa) bench) R 1 4242 4242 0 -1 4194304 1500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_millis(3250)));
        assert_eq!(stat_cpu("4242 (truncated"), None);
        assert_eq!(stat_cpu("4242 (x) R 1 2 3"), None);
    }
}
