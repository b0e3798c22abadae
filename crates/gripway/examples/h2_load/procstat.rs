//! The server's memory and CPU for the HTTP/2 load tool, from /proc: RSS and utime + stime
//! of a process and all its descendants, and the machine's busy time.

#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) rss_kib: u64,
    pub(crate) cpu_ticks: u64,
    pub(crate) procs: u64,
}

/// (parent pid, utime + stime) of a process.
pub(crate) fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the name, in parentheses, may hold spaces
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((f.get(1)?.parse().ok()?, ticks))
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// RSS and CPU of `root` and all its descendants.
pub(crate) fn sample_tree(root: u32) -> Sample {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, ticks)) = stat(pid) {
                    procs.push((pid, ppid, ticks));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(procs.iter().filter(|x| x.1 == p).map(|x| x.0));
        i += 1;
    }
    let mut s = Sample::default();
    for pid in tree {
        if let Some(&(_, _, ticks)) = procs.iter().find(|x| x.0 == pid) {
            s.cpu_ticks += ticks;
            s.rss_kib += rss_kib(pid);
            s.procs += 1;
        }
    }
    s
}

pub(crate) fn ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy CPU ticks of the whole machine (all but idle and iowait), from /proc/stat.
pub(crate) fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}
