//! Where the latency runs execute: optionally pinned to a set of CPUs.
//!
//! On the 2-vCPU virtual machines this project is measured on, waking a process that sleeps on
//! the *other* vCPU costs about 35 µs, more than everything else in a loopback round trip; a
//! client and server that alternate (one always waits for the other) lose nothing by sharing one
//! vCPU and save that wake-up. Left unpinned, the scheduler puts each process where it likes, so
//! one server may share the client's vCPU and the next not, and a comparison of two rows
//! measures placement. Pinning is set on the bench thread before its runtime and server
//! processes start, so every thread and child inherits it; servers can instead be pinned
//! elsewhere ([`CpuList::pin_process`]) to keep client and servers apart.

use anyhow::{Context, bail};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A set of CPUs in `taskset -c` syntax: `0`, `0,1`, `0-3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CpuList(Vec<usize>);

impl FromStr for CpuList {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let mut cpus = Vec::new();
        for part in text.split(',') {
            let number = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{s:?} in CPU list {text:?} is not a CPU number"))
            };
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        bail!("CPU range {part:?} runs backwards");
                    }
                    cpus.extend(first..=last);
                }
                None => cpus.push(number(part)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        if let Some(&cpu) = cpus.iter().find(|&&cpu| cpu >= CpuSet::count()) {
            bail!(
                "CPU {cpu} is beyond the {} CPUs a set can name",
                CpuSet::count()
            );
        }
        Ok(Self(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl From<CpuList> for String {
    fn from(list: CpuList) -> String {
        list.to_string()
    }
}

impl CpuList {
    /// The CPUs thread or process `pid` may run on now (0: the calling thread), lowest first.
    fn allowed(pid: Pid) -> anyhow::Result<Self> {
        let set = sched_getaffinity(pid).context("cannot read the CPU affinity")?;
        Ok(Self(
            (0..CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect(),
        ))
    }

    /// The lowest-numbered CPU this thread may run on now: one that pinning surely accepts.
    pub fn first_allowed() -> anyhow::Result<Self> {
        let allowed = Self::allowed(Pid::from_raw(0))?;
        let cpu = allowed
            .0
            .first()
            .context("this thread may run on no CPU at all")?;
        Ok(Self(vec![*cpu]))
    }

    /// The two lowest-numbered CPUs this thread may run on, one each, for a client and its
    /// servers apart; `None` where only one is allowed.
    pub fn first_two_allowed() -> anyhow::Result<Option<(Self, Self)>> {
        let allowed = Self::allowed(Pid::from_raw(0))?;
        Ok(match allowed.0[..] {
            [a, b, ..] => Some((Self(vec![a]), Self(vec![b]))),
            _ => None,
        })
    }

    /// Pins the calling thread to these CPUs; threads and processes it starts afterwards inherit
    /// the pinning.
    pub fn pin_this_thread(&self) -> anyhow::Result<()> {
        let set = self.set()?;
        let online = std::thread::available_parallelism().map_or(0, usize::from);
        sched_setaffinity(Pid::from_raw(0), &set).with_context(|| {
            format!("cannot pin to CPUs {self} (this machine lets the process use {online})")
        })
    }

    /// Pins every thread of process `pid` to these CPUs; threads it starts afterwards inherit
    /// the pinning.
    pub fn pin_process(&self, pid: u32) -> anyhow::Result<()> {
        let set = self.set()?;
        let tasks = format!("/proc/{pid}/task");
        for entry in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
            let name = entry?.file_name();
            let Some(tid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            sched_setaffinity(Pid::from_raw(tid), &set).with_context(|| {
                format!("cannot pin thread {tid} of process {pid} to CPUs {self}")
            })?;
        }
        Ok(())
    }

    fn set(&self) -> anyhow::Result<CpuSet> {
        let mut set = CpuSet::new();
        for &cpu in &self.0 {
            set.set(cpu)
                .with_context(|| format!("CPU {cpu} cannot be named"))?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_parse_like_taskset() {
        assert_eq!("0".parse::<CpuList>().unwrap(), CpuList(vec![0]));
        assert_eq!("1,0,1".parse::<CpuList>().unwrap(), CpuList(vec![0, 1]));
        assert_eq!(
            "0-2,5".parse::<CpuList>().unwrap(),
            CpuList(vec![0, 1, 2, 5])
        );
        assert_eq!("0-2,5".parse::<CpuList>().unwrap().to_string(), "0,1,2,5");
    }

    #[test]
    fn pinning_to_a_cpu_that_is_not_there_is_an_error_naming_it() {
        let err = "1023"
            .parse::<CpuList>()
            .unwrap()
            .pin_this_thread()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot pin to CPUs 1023"),
            "{err:#}"
        );
    }

    #[test]
    fn the_first_allowed_cpu_can_be_pinned_to() {
        // On a thread of its own, so the test's pinning cannot leak into other tests.
        std::thread::spawn(|| CpuList::first_allowed()?.pin_this_thread())
            .join()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_child_process_can_be_pinned_whole() {
        let cpus = CpuList::first_allowed().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        cpus.pin_process(child.id()).unwrap();
        let pinned = CpuList::allowed(Pid::from_raw(child.id() as i32)).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(pinned, cpus);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        for (text, says) in [
            ("", "is not a CPU number"),
            ("a", "is not a CPU number"),
            ("3-1", "runs backwards"),
            ("100000", "beyond"),
        ] {
            let err = text.parse::<CpuList>().unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
