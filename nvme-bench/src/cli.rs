//! fio's informational command-line flags: `--showcmd`, `--cmdhelp[=OPT]`,
//! `--enghelp[=ENGINE]` (fio 3.33's output shape and exit status), and the
//! checks fio makes on a parsed job set before it runs: `--readonly` and the
//! warnings `--warnings-fatal` turns into errors.

use std::path::Path;

use crate::options::{self, JobSet, SUPPORTED, UNSUPPORTED};

use crate::options::{canonical, ALIASES};

fn alias_of(name: &str) -> Option<&'static str> {
    ALIASES.iter().find(|(_, o)| *o == name).map(|(a, _)| *a)
}

/// fio's `--showcmd`: each job file as one `fio --opt=value ...` line
/// (global options, then `--name=` and each job's own options, in file
/// order; a later `[global]` repeats the earlier ones, as fio's global job
/// accumulates them). Command-line jobs print nothing, as fio.
pub fn showcmd(args: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for a in args.iter().filter(|a| !a.starts_with("--")) {
        let text = if a == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(|e| format!("<stdin>: {e}"))?;
            t
        } else {
            std::fs::read_to_string(a).map_err(|e| format!("job file {a}: {e}"))?
        };
        let mut sections = Vec::new();
        options::parse_job_file_text(&text, Path::new(a), &mut sections)
            .map_err(|e| e.to_string())?;
        let mut global: Vec<(String, Option<String>)> = Vec::new();
        let mut line = String::new();
        for (i, (name, opts)) in sections.iter().enumerate() {
            if i == 0 {
                line.push_str("fio ");
            }
            let shown: &[(String, Option<String>)] = if name == "global" {
                global.extend(opts.iter().cloned());
                &global
            } else {
                line.push_str(&format!("--name={name} "));
                opts
            };
            for (k, v) in shown {
                let k = canonical(k.trim());
                match v {
                    Some(v) if k == "description" => line.push_str(&format!("--{k}=\"{v}\" ")),
                    Some(v) => line.push_str(&format!("--{k}={v} ")),
                    None => line.push_str(&format!("--{k} ")),
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn status(name: &str) -> Option<&'static str> {
    if SUPPORTED.contains(&name) {
        Some(if name.starts_with("nvme_") {
            "supported (nvme-bench's own option, ioengine=nvme-vfio)"
        } else {
            "supported by nvme-bench"
        })
    } else if UNSUPPORTED.contains(&name) {
        Some("fio option NOT supported by nvme-bench (a job using it is refused)")
    } else {
        None
    }
}

/// `--cmdhelp` (every option nvme-bench knows, each saying whether it is
/// supported) or `--cmdhelp=OPT` (one option; an unknown one: fio's "No
/// such command" on stderr). Exit status 0 either way, as fio.
pub fn cmdhelp(which: Option<&str>) -> (String, String) {
    match which {
        None | Some("all") => {
            let mut out = String::new();
            // fio lists an option once, by its name (not its aliases).
            for n in SUPPORTED
                .iter()
                .chain(UNSUPPORTED)
                .filter(|n| canonical(n) == **n)
            {
                if let Some(s) = status(n) {
                    out.push_str(&format!("{n:<24}: {s}\n"));
                }
            }
            (out, String::new())
        }
        Some(w) => {
            let n = canonical(w);
            match status(n) {
                Some(s) => {
                    let mut out = format!("{n:>20}: {s}\n");
                    if let Some(a) = alias_of(n) {
                        out.push_str(&format!("{:>20}: {a}\n", "alias"));
                    }
                    out.push_str(&format!("{:>20}: docs/fio-compat.md\n", "see"));
                    (out, String::new())
                }
                None => (String::new(), format!("No such command: {w}")),
            }
        }
    }
}

/// Engines `ioengine=` accepts (fio's sync and pvsync run as psync).
const ENGINES: &[&str] = &[
    "nvme-vfio",
    "io_uring",
    "io_uring_cmd",
    "libaio",
    "psync",
    "sync",
    "pvsync",
    "null",
    "nvme-model",
];

const URING_OPTS: &[(&str, &str)] = &[
    ("hipri", "Use polled IO completions"),
    ("fixedbufs", "Pre map IO buffers"),
    ("registerfiles", "Pre-open/register files"),
    (
        "sqthread_poll",
        "Offload submission/completion to kernel thread",
    ),
    ("sqthread_poll_cpu", "What CPU to run SQ thread polling on"),
];

const NVME_OPTS: &[(&str, &str)] = &[
    ("nvme_queue_size", "Entries of each I/O queue pair"),
    (
        "nvme_cmb_queues",
        "Place submission queues in the controller memory buffer",
    ),
    ("nvme_shadow_doorbells", "Use Doorbell Buffer Config"),
    ("nvme_pin", "Pin each job's thread to its own CPU"),
    (
        "nvme_delay_submit",
        "Write the SQ doorbell when polling for completions, not at each commit",
    ),
    ("nvme_io_timeout", "Per-command deadline"),
    (
        "nvme_timeout_policy",
        "On a passed deadline: report or abort",
    ),
];

/// `--enghelp` (the engines) or `--enghelp=ENGINE` (its options). Returns
/// (stdout, stderr, exit status) as fio 3.33: 1 for an engine without
/// options or an unknown one.
pub fn enghelp(which: Option<&str>) -> (String, String, u8) {
    let Some(e) = which else {
        let mut out = "Available IO engines:\n".to_string();
        for e in ENGINES {
            out.push_str(&format!("\t{e}\n"));
        }
        return (out, String::new(), 0);
    };
    // fio's `--enghelp=engine,option` names one option: list the engine's.
    let e = e.split(',').next().unwrap_or(e);
    let opts: Vec<(&str, &str)> = match e {
        "io_uring" => URING_OPTS.to_vec(),
        "io_uring_cmd" => {
            let mut v = URING_OPTS.to_vec();
            v.push(("cmd_type", "What type of command is being sent (nvme)"));
            v
        }
        "nvme-vfio" | "nvme_vfio" | "nvme" | "spdk" | "nvme-model" | "nvme_model" => {
            NVME_OPTS.to_vec()
        }
        _ if ENGINES.contains(&e) => Vec::new(),
        _ => {
            return (
                format!("IO engine {e} not found\n"),
                format!("nvme-bench: engine {e} not loadable\n"),
                1,
            )
        }
    };
    if opts.is_empty() {
        return (format!("IO engine {e} has no options\n"), String::new(), 1);
    }
    let out = opts
        .iter()
        .map(|(n, h)| format!("{n:<24}: {h}\n"))
        .collect();
    (out, String::new(), 0)
}

/// fio's `--readonly`: a job that writes (or trims) is refused before
/// anything runs (init.c: "has write or trim bit set, but fio is in
/// read-only mode").
pub fn readonly_check(set: &JobSet) -> Result<(), String> {
    for j in &set.jobs {
        if j.rw.has_write() {
            return Err(format!(
                "job <{}> has write or trim bit set, but nvme-bench is in read-only mode",
                j.name
            ));
        }
    }
    Ok(())
}

/// The warnings fio's `fixup_options` gives that apply to nvme-bench's
/// options, with fio's fix-up applied: `time_based` without a runtime is
/// dropped (the job runs to its size). Returns the warning lines;
/// `--warnings-fatal` makes any of them end the run before it starts.
pub fn fixup_warnings(set: &mut JobSet) -> Vec<String> {
    let mut w = Vec::new();
    for j in &mut set.jobs {
        if j.time_based && j.runtime.is_none() {
            w.push("time_based requires a runtime/timeout setting".to_string());
            j.time_based = false;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_fio_names() {
        assert_eq!(canonical("readwrite"), "rw");
        assert_eq!(canonical("blocksize"), "bs");
        assert_eq!(canonical("bs"), "bs");
    }

    #[test]
    fn enghelp_statuses() {
        assert_eq!(enghelp(Some("null")).2, 1);
        assert_eq!(enghelp(Some("nosuch")).2, 1);
        assert_eq!(enghelp(Some("io_uring")).2, 0);
        assert_eq!(enghelp(None).2, 0);
    }
}
