//! Guest halt polling: how long an idle vCPU spins before it halts, set for one latency run.
//!
//! On a KVM guest whose cpuidle driver is `haltpoll`, an idle vCPU first polls for
//! `guest_halt_poll_ns` and only then executes HLT, which hands the vCPU back to the host. Waking
//! a halted vCPU (an interrupt through the host) is what makes a loopback round trip between two
//! vCPUs cost tens of microseconds on the machines this project is measured on, whose kernel
//! command line sets the poll time to 0. `bench --halt-poll-ns N` sets it for the run and puts
//! the old value back when the run ends, so the report can show that cost directly.

use anyhow::Context;
use std::path::Path;
use std::sync::Mutex;

/// The kernel's knob (root only).
const PARAMETER: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// The value to put back while a [`HaltPoll`] is alive, for [`HaltPoll::restore_now`].
static TO_RESTORE: Mutex<Option<u64>> = Mutex::new(None);

/// Guest halt polling set to a value until dropped, then restored.
#[derive(Debug)]
pub struct HaltPoll {
    previous: u64,
}

impl HaltPoll {
    /// Why halt polling cannot be set on this machine, or `None` if it can.
    pub fn unavailable() -> Option<String> {
        if !Path::new(PARAMETER).exists() {
            return Some(format!(
                "{PARAMETER} does not exist: this is not a KVM guest with the cpuidle-haltpoll driver"
            ));
        }
        match std::fs::OpenOptions::new().write(true).open(PARAMETER) {
            Ok(_) => None,
            Err(err) => Some(format!(
                "{PARAMETER} is not writable ({err}): it needs root"
            )),
        }
    }

    /// Sets the poll time to `ns` nanoseconds.
    pub fn set(ns: u64) -> anyhow::Result<Self> {
        if let Some(reason) = Self::unavailable() {
            anyhow::bail!("cannot set guest halt polling: {reason}");
        }
        let previous = read()?;
        write(ns)?;
        if let Ok(mut slot) = TO_RESTORE.lock() {
            *slot = Some(previous);
        }
        Ok(Self { previous })
    }

    /// Puts the old value back now if a run has changed it: for a process about to exit on a
    /// signal, which would not drop the guard.
    pub fn restore_now() {
        let previous = TO_RESTORE.lock().ok().and_then(|mut slot| slot.take());
        if let Some(previous) = previous {
            restore(previous);
        }
    }
}

impl Drop for HaltPoll {
    fn drop(&mut self) {
        if let Ok(mut slot) = TO_RESTORE.lock() {
            *slot = None;
        }
        restore(self.previous);
    }
}

fn restore(previous: u64) {
    if let Err(err) = write(previous) {
        eprintln!(
            "could not restore guest halt polling to {previous} ns: {err:#}; run: echo {previous} > {PARAMETER}"
        );
    }
}

fn read() -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(PARAMETER).with_context(|| format!("cannot read {PARAMETER}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{PARAMETER} holds {text:?}, not a number"))
}

fn write(ns: u64) -> anyhow::Result<()> {
    std::fs::write(PARAMETER, ns.to_string()).with_context(|| format!("cannot write {PARAMETER}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_value_holds_until_dropped_then_the_old_one_is_back() {
        if let Some(reason) = HaltPoll::unavailable() {
            // Only root on a haltpoll guest can set it; elsewhere `set` must say why.
            let err = HaltPoll::set(1).unwrap_err().to_string();
            assert!(err.contains(&reason), "{err}");
            return;
        }
        let before = read().unwrap();
        let guard = HaltPoll::set(before + 1).unwrap();
        assert_eq!(read().unwrap(), before + 1);
        drop(guard);
        assert_eq!(read().unwrap(), before);
        // The path of a process interrupted mid-run.
        let guard = HaltPoll::set(before + 2).unwrap();
        HaltPoll::restore_now();
        assert_eq!(read().unwrap(), before);
        drop(guard);
        assert_eq!(read().unwrap(), before);
    }
}
