//! fio's `numa_cpu_nodes` and `numa_mem_policy` (backend.c `thread_main`,
//! through libnuma): the job's thread runs on the CPUs of the given nodes
//! (`numa_run_on_node_mask`) and allocates its memory, I/O buffers
//! included, under the given policy (`set_mempolicy`).
//!
//! fio checks the node lists against the host only on a real parse
//! (`numa_parse_nodestring`, skipped by `--parse-only`): a node the host
//! lacks drops the job ("node argument 1 out of range") and the run fails
//! before any I/O. `dropped` does the same check for a run.

use crate::error::{Error, Result};
use crate::options::{parse_cpus, parse_nodes, Job, MemPolicy};

const MPOL_PREFERRED: i32 = 1;
const MPOL_BIND: i32 = 2;
const MPOL_INTERLEAVE: i32 = 3;
const MPOL_LOCAL: i32 = 4;

const NODE_DIR: &str = "/sys/devices/system/node";

/// The nodes libnuma's `numa_parse_nodestring` accepts: those this process
/// may allocate on (`Mems_allowed_list`), else the online ones.
pub fn host_nodes() -> Vec<u32> {
    let from_status = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Mems_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
        });
    let list = from_status
        .or_else(|| std::fs::read_to_string(format!("{NODE_DIR}/online")).ok())
        .unwrap_or_else(|| "0".to_string());
    match parse_nodes(list.trim()) {
        Ok(Some(v)) => v,
        _ => vec![0],
    }
}

/// A node string resolved against the host's nodes, or libnuma's complaint.
fn resolve(s: &str, host: &[u32]) -> std::result::Result<Vec<u32>, String> {
    match parse_nodes(s) {
        Ok(None) => Ok(host.to_vec()),
        Ok(Some(v)) => match v.iter().find(|n| !host.contains(n)) {
            Some(n) => Err(format!("node argument {n} out of range")),
            None => Ok(v),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Why fio would drop `job` on this host (its node lists name a node the
/// host lacks), one line per failing option; empty if it would not.
pub fn drop_reasons(job: &Job, host: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = &job.numa_cpu_nodes {
        if let Err(e) = resolve(n, host) {
            out.push(format!("numa_cpu_nodes={n}: {e}"));
        }
    }
    if let Some(MemPolicy::Bind(n) | MemPolicy::Interleave(n)) = &job.numa_mem_policy {
        if let Err(e) = resolve(n, host) {
            let mode = match job.numa_mem_policy {
                Some(MemPolicy::Bind(_)) => "bind",
                _ => "interleave",
            };
            out.push(format!("numa_mem_policy={mode}:{n}: {e}"));
        }
    }
    out
}

/// The first job fio would drop on this host, and why.
pub fn first_dropped(jobs: &[Job]) -> Option<(usize, Vec<String>)> {
    if !jobs
        .iter()
        .any(|j| j.numa_cpu_nodes.is_some() || j.numa_mem_policy.is_some())
    {
        return None;
    }
    let host = host_nodes();
    jobs.iter().enumerate().find_map(|(i, j)| {
        let r = drop_reasons(j, &host);
        (!r.is_empty()).then_some((i, r))
    })
}

/// The CPUs of `nodes` (sysfs `nodeN/cpulist`), as `numa_run_on_node_mask`.
fn node_cpus(nodes: &[u32]) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for n in nodes {
        let p = format!("{NODE_DIR}/node{n}/cpulist");
        let l = std::fs::read_to_string(&p)
            .map_err(|e| Error::msg(format!("numa_cpu_nodes: {p}: {e}")))?;
        if !l.trim().is_empty() {
            cpus.extend(parse_cpus(l.trim())?);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err(Error::msg(format!(
            "numa_cpu_nodes: nodes {nodes:?} have no CPUs (fio: numa_run_on_node_mask failed)"
        )));
    }
    Ok(cpus)
}

/// Apply the job's NUMA options to the calling (job) thread, after
/// `cpus_allowed` and before its buffers are allocated, as fio's
/// `thread_main`.
pub fn apply(job: &Job) -> Result<()> {
    if job.numa_cpu_nodes.is_none() && job.numa_mem_policy.is_none() {
        return Ok(());
    }
    if !std::path::Path::new(NODE_DIR).exists() {
        return Err(Error::msg(
            "numa_cpu_nodes/numa_mem_policy: this kernel has no NUMA support (fio: Does not support NUMA API)",
        ));
    }
    let host = host_nodes();
    let nodes =
        |s: &str| resolve(s, &host).map_err(|e| Error::msg(format!("NUMA nodes '{s}': {e}")));
    if let Some(n) = &job.numa_cpu_nodes {
        crate::sys::pin_current_thread(&node_cpus(&nodes(n)?)?)?;
    }
    let r = match &job.numa_mem_policy {
        None | Some(MemPolicy::Default) => Ok(()),
        Some(MemPolicy::Bind(n)) => crate::sys::set_mempolicy(MPOL_BIND, &nodes(n)?),
        Some(MemPolicy::Interleave(n)) => crate::sys::set_mempolicy(MPOL_INTERLEAVE, &nodes(n)?),
        Some(MemPolicy::Local) => crate::sys::set_mempolicy(MPOL_LOCAL, &[]),
        Some(MemPolicy::Prefer(n)) => crate::sys::set_mempolicy(MPOL_PREFERRED, &[*n]),
    };
    // libnuma reports a failed set_mempolicy and goes on; so does fio.
    if let Err(e) = r {
        eprintln!("nvme-bench: {}: {e}", job.name);
    }
    Ok(())
}
