//! The digests behind `verify=md5|sha1|sha256|sha512|sha3-224|sha3-256|
//! sha3-384|sha3-512|crc32` (fio 3.33's names; it has no sha224/sha384).
//!
//! The RustCrypto crates (`md-5`, `sha1`, `sha2`, `sha3`) and `crc32fast`
//! compute them: well-kept, audited implementations with hardware
//! acceleration where the CPU has it. The tests below pin each to its
//! standard's vectors (RFC 1321, FIPS 180-4, FIPS 202, ISO-HDLC/zlib), and
//! the tests also check them against python3's `hashlib`/`zlib`.

use sha2::Digest as _;

use crate::options::HashKind;

pub fn md5(data: &[u8]) -> [u8; 16] {
    md5::Md5::digest(data).into()
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

pub fn sha512(data: &[u8]) -> [u8; 64] {
    sha2::Sha512::digest(data).into()
}

/// CRC-32 (ISO-HDLC, zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The digest `h` of `data` (CRC-32 as 4 big-endian bytes).
pub fn digest(h: HashKind, data: &[u8]) -> Vec<u8> {
    match h {
        HashKind::Md5 => md5(data).to_vec(),
        HashKind::Sha1 => sha1(data).to_vec(),
        HashKind::Sha256 => sha256(data).to_vec(),
        HashKind::Sha512 => sha512(data).to_vec(),
        HashKind::Sha3_224 => sha3::Sha3_224::digest(data).to_vec(),
        HashKind::Sha3_256 => sha3::Sha3_256::digest(data).to_vec(),
        HashKind::Sha3_384 => sha3::Sha3_384::digest(data).to_vec(),
        HashKind::Sha3_512 => sha3::Sha3_512::digest(data).to_vec(),
        HashKind::Crc32 => crc32(data).to_be_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RFC 1321 appendix A.5.
    #[test]
    fn md5_rfc1321() {
        for (m, d) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(hex(&md5(m.as_bytes())), d, "md5({m:?})");
        }
    }

    /// FIPS 180 / RFC 3174 and RFC 6234 vectors.
    #[test]
    fn sha_fips180() {
        let abc = b"abc";
        let two = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(abc)), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha1(two)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha1(&million_a)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        assert_eq!(
            hex(&sha256(abc)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(two)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&million_a)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        assert_eq!(
            hex(&sha512(abc)),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    /// FIPS 202 examples ("abc" and the empty string).
    #[test]
    fn sha3_fips202() {
        assert_eq!(
            hex(&digest(HashKind::Sha3_256, b"")),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
        assert_eq!(
            hex(&digest(HashKind::Sha3_256, b"abc")),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
        assert_eq!(
            hex(&digest(HashKind::Sha3_224, b"abc")),
            "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf"
        );
        assert_eq!(
            hex(&digest(HashKind::Sha3_512, b"abc")),
            "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e\
             10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// Every digest against python3's hashlib/zlib on random inputs of
    /// each length 0..300 (all padding cases of 64- and 128-byte blocks and
    /// the SHA-3 rates) and a few large ones. Skipped without python3.
    #[test]
    fn matches_python_hashlib() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        let mut r = crate::gen::Rng::new(0x5eed);
        let mut lens: Vec<usize> = (0..300).collect();
        lens.extend([4096, 65536 + 7, 1 << 20, 3 * 136 * 1000 + 135]);
        for len in lens {
            inputs.push((0..len).map(|_| r.next_u64() as u8).collect());
        }
        // Python reads length-prefixed inputs and prints one line of hex
        // digests per input, in NAMES order.
        let script = r#"
import sys, hashlib, zlib, struct
d = sys.stdin.buffer.read()
i = 0
out = []
while i < len(d):
    (n,) = struct.unpack_from('<I', d, i); i += 4
    m = d[i:i+n]; i += n
    h = [hashlib.new(x.replace('-', '_'), m).hexdigest() for x in
         ['md5','sha1','sha256','sha512','sha3-224','sha3-256','sha3-384','sha3-512']]
    h.append('%08x' % (zlib.crc32(m) & 0xffffffff))
    out.append(' '.join(h))
sys.stdout.write('\n'.join(out) + '\n')
"#;
        let Ok(mut child) = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("python3 not found: skipped");
            return;
        };
        let mut feed = Vec::new();
        for m in &inputs {
            feed.extend((m.len() as u32).to_le_bytes());
            feed.extend(m);
        }
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&feed));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), inputs.len());
        for (m, line) in inputs.iter().zip(lines) {
            let want: Vec<&str> = line.split(' ').collect();
            for (h, w) in HashKind::ALL.iter().zip(want) {
                let got = hex(&digest(*h, m));
                assert_eq!(got, w, "{h:?} of {} bytes", m.len());
            }
        }
    }
}
