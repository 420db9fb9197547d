#!/usr/bin/env python3
"""Write the seed corpora in fuzz/seeds/<target>/: a few valid inputs per
target, built the way the device (nvme-model/src/admin.rs), the kernel
(nvme-vfio/src/caps.rs tests) or the user (nvme-bench/jobs, docs/fio-compat.md)
shapes them. Deterministic; re-run after changing it and commit the result."""
import os, struct, shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(ROOT, "seeds")


def put(b, off, data):
    b[off:off + len(data)] = data


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def identify_controller(serial="deadbeef", model="nvme-model", fw="1.0", mdts=5,
                        version=0x00010400, oacs=0x010a, oncs=0x005f, sgls=1, vwc=True, nn=1):
    b = bytearray(4096)
    put(b, 0, struct.pack("<HH", 0x1b36, 0x1af4))
    put(b, 4, serial.ljust(20).encode())
    put(b, 24, model.ljust(40).encode())
    put(b, 64, fw.ljust(8).encode())
    b[72] = 6
    put(b, 73, bytes([0x00, 0x54, 0x52]))
    b[77] = mdts
    put(b, 80, struct.pack("<I", version))
    b[111] = 1
    put(b, 256, struct.pack("<H", oacs))
    b[258], b[259], b[260], b[261], b[262] = 3, 3, 0b11, 0b100, 63
    put(b, 266, struct.pack("<HH", 343, 373))
    b[512], b[513] = 0x66, 0x44
    put(b, 516, struct.pack("<I", nn))
    put(b, 520, struct.pack("<H", oncs))
    b[525] = 0b111 if vwc else 0
    put(b, 536, struct.pack("<I", sgls))
    put(b, 768, ("nqn.2019-08.org.qemu:" + serial).encode()[:255])
    put(b, 2048, struct.pack("<H", 2500))
    return b


def identify_namespace(nsid=1, blocks=2048, block_size=512, metadata=0):
    b = bytearray(4096)
    put(b, 0, struct.pack("<QQQ", blocks, blocks, blocks))
    lbads = 12 if block_size == 4096 else 9
    if metadata == 0:
        b[25] = 1
        b[26] = 1 if lbads == 12 else 0
    else:
        b[25], b[26], b[27] = 2, 2, 0b10
        put(b, 136, struct.pack("<I", (lbads << 16) | metadata))
    b[33] = 0b1001
    put(b, 104, struct.pack(">I", nsid) + b"MODL" + bytes(8))
    put(b, 120, bytes([0x52, 0x54, 0, 0]) + struct.pack(">I", nsid))
    put(b, 128, struct.pack("<II", 9 << 16, 12 << 16))
    return b


def status_field(sct, sc, dnr=False, more=False, crd=0, phase=0):
    return phase | (sc << 1) | (sct << 9) | (crd << 12) | (more << 14) | (dnr << 15)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    # Identify Controller: the model's page, and variants (no MDTS, big MDTS, old device).
    write("identify_controller", "model", identify_controller())
    write("identify_controller", "qemu-like", identify_controller("1234", "QEMU NVMe Ctrl", "8.2.0", 7, 0x00010400, 0x010a, 0x015f, 0, False, 256))
    write("identify_controller", "no-mdts", identify_controller(mdts=0, version=0, sgls=2))
    write("identify_controller", "mdts-20", identify_controller(mdts=20))
    # Identify Namespace: 512 B, 4 KiB, 4 KiB + 8 B metadata, inactive, 64 formats.
    write("identify_namespace", "512", identify_namespace())
    write("identify_namespace", "4k", identify_namespace(2, 1 << 20, 4096))
    write("identify_namespace", "4k-md8", identify_namespace(3, 1 << 20, 4096, 8))
    write("identify_namespace", "inactive", bytearray(4096))
    many = identify_namespace()
    many[25], many[26] = 63, 0b0110_0001
    for i in range(64):
        put(many, 128 + 4 * i, struct.pack("<I", ((9 + i % 8) << 16) | (i * 8)))
    write("identify_namespace", "64-formats", many)
    # Log pages: SMART page followed by the error-log entries (one input feeds both).
    smart = bytearray(512)
    put(smart, 1, struct.pack("<H", 323))
    smart[3], smart[4] = 100, 10
    put(smart, 32, (1234).to_bytes(16, "little"))
    put(smart, 64, (12345).to_bytes(16, "little"))
    put(smart, 112, (1).to_bytes(16, "little"))
    put(smart, 176, (2).to_bytes(16, "little"))
    errs = bytearray(64 * 4)
    for i, (sct, sc) in enumerate([(0, 0x80), (2, 0x81), (1, 0x09)]):
        o = i * 64
        put(errs, o, struct.pack("<QHHHHQI", 3 - i, 1, 7 + i, status_field(sct, sc, dnr=True), 0xffff, 100 * i, 1))
    write("log_pages", "smart+errors", smart + errs)
    write("log_pages", "smart", smart)
    write("log_pages", "errors", errs)
    # Completion entries: success (both phases), LBA out of range + DNR, vendor specific, path error with More.
    ces = b""
    for st in [status_field(0, 0, phase=1), status_field(0, 0), status_field(0, 0x80, dnr=True, phase=1),
               status_field(1, 0x01), status_field(7, 0xc0, crd=2), status_field(3, 0x71, more=True),
               status_field(5, 0x10)]:
        ces += struct.pack("<IIHHHH", 0xdead, 0, 3, 1, 42, st)
    write("completion", "entries", ces)
    write("completion", "one", ces[32:48])
    # Registers: CAP (QEMU with CMB), VS, CC, CSTS, AQA, CMBLOC, CMBSZ, CMBMSC, CMBSTS, ...
    cap = 0x7ff | (1 << 16) | (0xf << 24) | (0x41 << 37) | (4 << 52) | (1 << 57)
    cc = 1 | (6 << 16) | (4 << 20) | (1 << 14)
    regs = struct.pack("<QQQQQQQQQQ", cap, 0x00010400, cc, 1, (31 | (31 << 16)), 0x2002,
                       (64 << 12) | (2 << 8) | 0b11101, 0xfe00_0003, 0, 0)
    write("registers", "qemu-cmb", regs)
    write("registers", "ones", b"\xff" * 120)
    write("registers", "zero", bytes(120))
    write("registers", "cmb-szu6", struct.pack("<QQQQQQQ", cap, 0x00020000, 0, 0, 0, 0x1000, (1 << 12) | (6 << 8) | 1))
    # VFIO: region info with sparse mmap (+ unknown cap first), plain, and IOMMU info with IOVA ranges.
    def region(size, offset, sparse=None, extra_first=False):
        b = bytearray(32)
        put(b, 4, struct.pack("<I", 0x7 | (8 if sparse is not None else 0)))
        put(b, 16, struct.pack("<QQ", size, offset))
        if sparse is not None:
            first = len(b)
            if extra_first:
                at = len(b)
                b += struct.pack("<HHI", 2, 1, at + 16) + bytes(8)
                first = at
            b += struct.pack("<HHIII", 1, 1, 0, len(sparse), 0)
            for o, s in sparse:
                b += struct.pack("<QQ", o, s)
            put(b, 12, struct.pack("<I", first))
        put(b, 0, struct.pack("<I", len(b)))
        return b
    write("vfio_caps", "region-plain", b"\x00" + region(0x4000, 1 << 32))
    write("vfio_caps", "region-sparse", b"\x08" + region(0x4000, 0, [(0, 0x3000)], True))
    write("vfio_caps", "region-sparse2", b"\x08" + region(0x10000, 0, [(0, 0x2000), (0x3000, 0xd000)]))
    msix = bytearray(region(0x4000, 0))
    put(msix, 4, struct.pack("<I", 0xf)); put(msix, 12, struct.pack("<I", 32))
    msix += struct.pack("<HHI", 3, 1, 0)
    put(msix, 0, struct.pack("<I", len(msix)))
    write("vfio_caps", "region-msix", b"\x08" + msix)
    io = bytearray(24)
    put(io, 4, struct.pack("<I", 3)); put(io, 8, struct.pack("<Q", 0x4020_1000)); put(io, 16, struct.pack("<I", 24))
    nxt = 24 + 16 + 32
    io += struct.pack("<HHIII", 1, 1, nxt, 2, 0)
    for s, e in [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]:
        io += struct.pack("<QQ", s, e)
    io += struct.pack("<HHII", 3, 1, 0, 65535)
    put(io, 0, struct.pack("<I", len(io)))
    write("vfio_caps", "iommu-ranges", b"\x06" + io)
    # PAT list.
    write("pat_list", "debugfs", "PAT memtype list:\n"
          "PAT: [mem 0x00000000fe600000-0x00000000fe604000] uncached-minus\n"
          "PAT: [mem 0x0000000800000000-0x0000000801000000] write-combining\n"
          "PAT: [mem 0x00000000fed00000-0x00000000fed01000] uncached-minus\n"
          "bogus line\n")
    write("pat_list", "one-wb", "PAT: [mem 0x0000000000000000-0x00000000000a0000] write-back\n")
    # PCI addresses.
    for i, a in enumerate(["0000:01:00.0", "01:00.0", "0000.01.00.0", "10000:e1:00.0", "0001:af:1f.7", " 0000:5e:00.1\n"]):
        write("pci_address", f"addr{i}", a)
    # fio value parsers.
    for i, v in enumerate(["4k", "4KiB", "1.5m", "0x1000", "512", "50%", "10s", "250ms", "1h", "0-3,8,10-11",
                           "0xdeadbeef", "'abc'", "1234", "a\\:b", "trtype=PCIe traddr=0000.01.00.0 ns=1",
                           "4k/10:64k/50:32k/40", "filename=ic2.dat ; scratch"]):
        write("fio_units", f"v{i:02}", v)
    # Job files: the demo, fio-compat examples, a few command lines.
    with open(os.path.join(ROOT, "..", "nvme-bench", "jobs", "demo.fio")) as f:
        write("job_file", "demo.fio", f.read())
    write("job_file", "null", "[global]\nioengine=null\nsize=1g\n\n[a]\nrw=randread\nbs=4k,8k\niodepth=32\n"
          "iodepth_batch_submit=8\niodepth_batch_complete_min=4\n[b]\nrw=randrw\nrwmixread=70\n"
          "bssplit=4k/10:64k/50:32k/40,8k\ncpus_allowed=0-1\npercentile_list=50:99:99.9\nstonewall\n")
    write("job_file", "include", "include inc-global.fio\n[x]\nioengine=null\nsize=${FUZZ_SIZE}\nbs=${FUZZ_BS}\n"
          "include inc-nested.fio\n")
    write("job_file", "include-loop", "include inc-self.fio\n")
    write("job_file", "psync", "[global]\ndirectory=/tmp/x\n[f]\nioengine=psync\nrw=write\nsize=1m\n"
          "verify=crc32c\nverify_pattern=0xdeadbeef\nfilename=ic2.dat ; scratch file\nnumjobs=4 # four\n")
    write("job_file", "cli", "\0--name=c\0--ioengine=null\0--size=4k\0--bsrange=4k-64k\0--iodepth=2")
    write("job_file", "cli+file", "[j]\nioengine=io_uring\nfilename=/dev/nvme0n1\ndirect=1\n"
          "\0--output-format=json+\0--rw=randread\0--runtime=1s\0--time_based")


if __name__ == "__main__":
    main()
