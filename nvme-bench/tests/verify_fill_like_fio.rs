//! fio 3.33's surface-scan.fio family side by side with Debian's fio:
//! `fill_device` (write until the file system is full, ENOSPC ending the
//! job without an error), `create_serialize=0` (a job sizes its file when
//! it starts, after the groups before it), `verify=meta` (the header's
//! checks: offset, length, seed, number of the write; the data only
//! against `verify_pattern`) and `verify_interval` (a header every N bytes
//! of a block, each interval checked on its own).
//!
//! Each tool checks its own header format, so each re-reads only its own
//! files; the same file changes (a byte of the second interval's header,
//! a block copied to another offset) must be caught, or let through, by
//! both. `fill_device` runs on a small tmpfs mounted for the test (root),
//! so the real disk is never filled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ensure_fio, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Run `job` (written beside `dir`, not in it) with `cmd` in `dir`;
/// returns (exit success, the JSON document, stderr).
fn run(dir: &Path, cmd: &str, job: &str) -> (bool, Value, String) {
    let jf = dir.with_extension("fio");
    std::fs::write(&jf, job).unwrap();
    let mut c = Command::new(cmd);
    c.current_dir(dir).arg("--output-format=json");
    if cmd == BENCH {
        c.arg("--eta=never");
    }
    let o = c.arg(&jf).output().expect(cmd);
    let out = String::from_utf8_lossy(&o.stdout);
    let at = if out.starts_with('{') {
        0
    } else {
        out.find("\n{").map_or(0, |i| i + 1)
    };
    let v: Value =
        serde_json::from_str(&out[at..]).unwrap_or_else(|e| panic!("{cmd}: no JSON ({e}):\n{out}"));
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Per job: (name, read io_bytes, read total_ios, write io_bytes, write
/// total_ios, error).
type Counts = (String, u64, u64, u64, u64, i64);

fn counts(v: &Value) -> Vec<Counts> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["jobname"].as_str().unwrap().to_string(),
                j["read"]["io_bytes"].as_u64().unwrap(),
                j["read"]["total_ios"].as_u64().unwrap(),
                j["write"]["io_bytes"].as_u64().unwrap(),
                j["write"]["total_ios"].as_u64().unwrap(),
                j["error"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Tmpfs {
        let d = scratch(tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&d)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mount -t tmpfs on {} (needs root)",
            d.display()
        );
        Tmpfs(d)
    }
    /// Empty it (between the two tools' runs).
    fn clear(&self) {
        for e in std::fs::read_dir(&self.0).unwrap() {
            let _ = std::fs::remove_file(e.unwrap().path());
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("fio"));
    }
}

/// fio's surface-scan.fio unchanged but for `direct=0` (buffered, as the
/// tmpfs takes every write the same way in both tools) and `create_serialize`.
fn surface_scan(create_serialize: u32) -> String {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fio-3.33-examples/surface-scan.fio");
    std::fs::read_to_string(src)
        .unwrap()
        .replace("direct=1", "direct=0")
        .replace(
            "create_serialize=0",
            &format!("create_serialize={create_serialize}"),
        )
}

/// surface-scan.fio on an 8 MiB tmpfs: the write phase fills it (128
/// blocks of 64 KiB, then a 129th write fails with ENOSPC: counted in
/// total_ios, no bytes, no error), the verify phase (create_serialize=0:
/// its file sized when it starts) reads back and checks 128 blocks of 128
/// intervals of 512 bytes. With create_serialize=1 the verify phase is
/// sized before any job runs, finds no file and fails with EINVAL ("you
/// need to specify size="), while the write phase still fills the disk.
/// A job that fills with do_verify=1 ends at ENOSPC without its verify
/// pass.
#[test]
fn surface_scan_fill_then_verify_like_fio() {
    let fio = ensure_fio();
    let fs = Tmpfs::mount("surface-fill", "8m");
    for (cs, want) in [
        (
            0,
            vec![
                ("write-phase".to_string(), 0, 0, 8 << 20, 129, 0),
                ("verify-phase".to_string(), 8 << 20, 128, 0, 0, 0),
            ],
        ),
        (
            1,
            vec![
                ("write-phase".to_string(), 0, 0, 8 << 20, 129, 0),
                ("verify-phase".to_string(), 0, 0, 0, 0, 22),
            ],
        ),
    ] {
        let job = surface_scan(cs);
        for cmd in [fio.as_str(), BENCH] {
            fs.clear();
            let (ok, v, err) = run(&fs.0, cmd, &job);
            let c = counts(&v);
            eprintln!("create_serialize={cs} {cmd}: {c:?}\n{}", err.trim());
            assert_eq!(c, want, "create_serialize={cs} {cmd}: {err}");
            assert_eq!(ok, cs == 0, "{cmd}: exit status");
            if cs == 1 {
                assert!(err.contains("you need to specify size="), "{cmd}: {err}");
            }
        }
    }
    // One job that fills and would verify: ENOSPC terminates it (fio's
    // fio_mark_td_terminate), so no read-back follows.
    let job = "[w]\nfilename=f\nrw=write\nbs=64k\nverify=crc32c\nfill_device=1\n";
    for cmd in [fio.as_str(), BENCH] {
        fs.clear();
        let (ok, v, err) = run(&fs.0, cmd, job);
        assert!(ok, "{cmd}: {err}");
        assert_eq!(
            counts(&v),
            vec![("w".to_string(), 0, 0, 8 << 20, 129, 0)],
            "{cmd}: {err}"
        );
    }
}

/// A job that writes blocks of 4 KiB with `verify=meta` and `extra`, then
/// a read job that checks them, each tool in its own directory; `change`
/// alters the file in between. Returns per tool (read total_ios, error,
/// whether stderr reports a verify failure).
fn write_change_check(
    tag: &str,
    extra: &str,
    change: impl Fn(&mut [u8]),
) -> Vec<(&'static str, (u64, i64, bool))> {
    let fio = ensure_fio();
    let common =
        format!("[global]\nioengine=psync\nfilename=f\nsize=64k\nbs=4k\nverify=meta\n{extra}\n");
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("{tag}-{who}"));
        let w = format!("{common}[w]\nrw=write\ndo_verify=0\nverify_state_save=0\n");
        let w = if who == "ours" {
            // verify_state_save is fio's (a state file on an interrupted
            // verify); nvme-bench has none to save.
            w.replace("verify_state_save=0\n", "")
        } else {
            w
        };
        let (ok, v, err) = run(&dir, cmd, &w);
        assert!(ok, "{who} write: {err}");
        assert_eq!(counts(&v)[0].4, 16, "{who}: 16 blocks written");
        let p = dir.join("f");
        let mut b = std::fs::read(&p).unwrap();
        change(&mut b);
        std::fs::write(&p, &b).unwrap();
        let r = format!("{common}[r]\nrw=read\n");
        let (_, v, err) = run(&dir, cmd, &r);
        let c = counts(&v);
        eprintln!("{tag} {who}: {c:?} {}", err.trim());
        // fio: "verify: bad header ..." or "...: verify failed at file".
        let reported = err.contains("verify failed") || err.contains("verify: bad");
        out.push((who, (c[0].2, c[0].5, reported)));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(dir.with_extension("fio"));
    }
    out
}

/// Byte 5 of the second 512-byte interval of block 3: the header's length
/// field in both tools' formats (fio's and nvme-bench's headers both keep
/// it at 4..8).
fn second_interval_header(b: &mut [u8]) {
    b[3 * 4096 + 512 + 5] ^= 0x01;
}

/// verify_interval=512: each interval of a block carries its own header,
/// so a change in the second interval's header is caught on its own (the
/// read stops at block 3, EILSEQ). Without verify_interval the same byte
/// is data, which verify=meta (no pattern) does not check: both tools read
/// all 16 blocks without an error. A verify_interval that does not divide
/// the block size is the block size (fio's fixup), so it lets the header
/// change through as well.
///
/// With verify_pattern, a data byte of the second interval is reported as
/// a verify failure by both, but fio's verify_io_u lets the next
/// interval's result replace a data failure, so only the last interval's
/// data fails the block: the read goes on to all 16 blocks without an
/// error, while the same change in the last interval stops it at block 3.
#[test]
fn verify_interval_catches_the_second_interval_like_fio() {
    for (who, c) in write_change_check("vi-hdr", "verify_interval=512", second_interval_header) {
        assert_eq!(
            c,
            (4, 84, true),
            "{who}: the second interval's header is checked"
        );
    }
    for (who, c) in write_change_check("vi-none", "", second_interval_header) {
        assert_eq!(
            c,
            (16, 0, false),
            "{who}: one header per block, data unchecked"
        );
    }
    for (who, c) in write_change_check("vi-odd", "verify_interval=3000", second_interval_header) {
        assert_eq!(
            c,
            (16, 0, false),
            "{who}: 3000 does not divide 4k: one header per block"
        );
    }
    let pat = "verify_interval=512\nverify_pattern=0xaa555aa5";
    for (who, c) in write_change_check("vi-pat", pat, |b| b[3 * 4096 + 512 + 300] ^= 0x40) {
        assert_eq!(
            c,
            (16, 0, true),
            "{who}: the pattern of the second interval, reported"
        );
    }
    for (who, c) in write_change_check("vi-pat-last", pat, |b| b[3 * 4096 + 3584 + 300] ^= 0x40) {
        assert_eq!(c, (4, 84, true), "{who}: the pattern of the last interval");
    }
}

/// verify=meta: block 2 copied over block 5 is whole and well formed but
/// in the wrong place; the header's offset catches it in both tools (the
/// read stops at block 5, EILSEQ). A data byte changed is not caught
/// (meta checks the header only, fio's VERIFY_HDR_ONLY), nor is a block
/// copied onto itself.
#[test]
fn verify_meta_catches_a_misplaced_block_like_fio() {
    let copy = |from: usize, to: usize| {
        move |b: &mut [u8]| {
            let blk = b[from * 4096..(from + 1) * 4096].to_vec();
            b[to * 4096..(to + 1) * 4096].copy_from_slice(&blk);
        }
    };
    for (who, c) in write_change_check("meta-moved", "", copy(2, 5)) {
        assert_eq!(c, (6, 84, true), "{who}: block 5 holds block 2");
    }
    for (who, c) in write_change_check("meta-same", "", copy(5, 5)) {
        assert_eq!(c, (16, 0, false), "{who}: nothing moved");
    }
    for (who, c) in write_change_check("meta-data", "", |b| b[5 * 4096 + 2000] ^= 1) {
        assert_eq!(c, (16, 0, false), "{who}: meta leaves the data unchecked");
    }
}

/// The options parse as fio's: `verify_interval` below fio's minimum (80,
/// twice its header) is refused, at 80 and above accepted; `fill_device`
/// (alias `fill_fs`), `create_serialize` and `verify=meta` accepted; and
/// `--parse-only` groups surface-scan's jobs as fio (the stonewall).
#[test]
fn options_parse_and_group_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("vf-parse");
    for (line, accepted) in [
        ("verify_interval=79", false),
        ("verify_interval=80", true),
        ("verify_interval=1k", true),
        ("fill_device=1", true),
        ("fill_fs=1", true),
        ("create_serialize=0", true),
        ("verify=meta", true),
    ] {
        let job = format!("[w]\nfilename=x\nsize=64k\nrw=write\nbs=4k\nverify=crc32c\n{line}\n");
        std::fs::write(dir.join("p.fio"), job).unwrap();
        for cmd in [fio.as_str(), BENCH] {
            let o = Command::new(cmd)
                .current_dir(&dir)
                .args(["--parse-only", "p.fio"])
                .output()
                .unwrap();
            assert_eq!(
                o.status.success(),
                accepted,
                "{cmd} {line}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            if !accepted {
                let e = String::from_utf8_lossy(&o.stderr);
                assert!(
                    e.contains("min value out of range: 79 (80 min)"),
                    "{cmd}: {e}"
                );
            }
        }
    }
    // The job header lines: fio prints them on a run (--create_only
    // makes one that does no I/O), nvme-bench on --parse-only.
    let job = surface_scan(0).replace("fill_device=1", "fill_device=1\nsize=64k");
    std::fs::write(dir.join("s.fio"), &job).unwrap();
    // (So that fio's verify phase, sized when it starts, finds a file.)
    std::fs::write(dir.join("datafile.tmp"), vec![0u8; 64 << 10]).unwrap();
    let heads = |args: &[&str], cmd: &str| -> Vec<String> {
        let o = Command::new(cmd)
            .current_dir(&dir)
            .args(args)
            .arg("s.fio")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(": (g=") || l.starts_with("Starting "))
            .map(str::to_string)
            .collect()
    };
    let theirs = heads(&["--create_only=1"], &fio);
    let ours = heads(&["--parse-only"], BENCH);
    assert_eq!(ours, theirs);
    assert!(theirs[1].starts_with("verify-phase: (g=1)"), "{theirs:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
