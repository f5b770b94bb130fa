import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { CloisterError } from "../../src/errors.js";
import {
  BPF_MAXINSNS,
  INSTRUCTION_SIZE,
  decode,
  disassemble,
  encode,
  runFilter,
  validate,
  type FilterResult,
} from "../../src/sandbox/bwrap/bpf.js";
import {
  ARGUMENT_RULES,
  AUDIT_ARCH,
  AUDIT_ARCH_AARCH64,
  AUDIT_ARCH_ARM,
  AUDIT_ARCH_I386,
  AUDIT_ARCH_X86_64,
  BLOCKED_SYSCALLS,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SYSCALLS,
  buildSeccompFilter,
  hostSeccompArch,
  syscallName,
  type SeccompArch,
} from "../../src/sandbox/bwrap/seccomp.js";

// Independent oracle: written here, not derived from the policy tables, so that dropping a rule
// from seccomp.ts fails a test.
const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

const EXPECTED_BLOCKED: Record<string, number> = {
  mount: EPERM,
  umount2: EPERM,
  pivot_root: EPERM,
  chroot: EPERM,
  open_tree: EPERM,
  move_mount: EPERM,
  fsopen: EPERM,
  fsconfig: EPERM,
  fsmount: EPERM,
  fspick: EPERM,
  mount_setattr: EPERM,
  open_tree_attr: EPERM,
  setns: EPERM,
  clone3: ENOSYS,
  bpf: EPERM,
  perf_event_open: EPERM,
  keyctl: EPERM,
  add_key: EPERM,
  request_key: EPERM,
  io_uring_setup: EPERM,
  io_uring_enter: EPERM,
  io_uring_register: EPERM,
  userfaultfd: EPERM,
  kexec_load: EPERM,
  kexec_file_load: EPERM,
  init_module: EPERM,
  finit_module: EPERM,
  delete_module: EPERM,
  open_by_handle_at: EPERM,
  name_to_handle_at: EPERM,
  quotactl: EPERM,
  quotactl_fd: EPERM,
  swapon: EPERM,
  swapoff: EPERM,
  reboot: EPERM,
  syslog: EPERM,
  acct: EPERM,
  lookup_dcookie: EPERM,
  uselib: EPERM,
};

/** Numbers for syscalls the policy must leave alone (and a few it checks by argument). */
const NR: Record<SeccompArch, Record<string, number>> = {
  x64: { read: 0, write: 1, openat: 257, execve: 59, ptrace: 101, getpid: 39, mount: 165, ioctl: 16,
    socket: 41, socketpair: 53, clone: 56, unshare: 272, personality: 135, clone3: 435,
    process_vm_writev: 311, seccomp: 317, memfd_create: 319 },
  arm64: { read: 63, write: 64, openat: 56, execve: 221, ptrace: 117, getpid: 172, mount: 40, ioctl: 29,
    socket: 198, socketpair: 199, clone: 220, unshare: 97, personality: 92, clone3: 435,
    process_vm_writev: 271, seccomp: 277, memfd_create: 279 },
};

const CLONE_NEWNS = 0x00020000n;
const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWNET = 0x40000000n;
const SIGCHLD = 17n;
const THREAD_FLAGS = 0x003d0f00n; // glibc pthread_create: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|…TID
const TIOCSTI = 0x5412n;
const TIOCLINUX = 0x541cn;
const TCGETS = 0x5401n;
const HIGH = 0xffffffff00000000n;

const ARCHES: readonly SeccompArch[] = ["x64", "arm64"];

function nr(arch: SeccompArch, name: string): number {
  const n = NR[arch][name] ?? SYSCALLS[name]?.[arch];
  if (n === undefined) throw new Error(`no number for ${name} on ${arch}`);
  return n;
}

function call(arch: SeccompArch, name: string, args: bigint[] = []): FilterResult {
  return runFilter(buildSeccompFilter(arch), { nr: nr(arch, name), arch: AUDIT_ARCH[arch], args });
}

function assertAllowed(r: FilterResult, what: string): void {
  assert.equal(r.action, SECCOMP_RET_ALLOW, `${what} should be allowed, got 0x${r.ret.toString(16)}`);
}
function assertErrno(r: FilterResult, errno: number, what: string): void {
  assert.equal(r.action, SECCOMP_RET_ERRNO, `${what} should fail with errno, got 0x${r.ret.toString(16)}`);
  assert.equal(r.errno, errno, `${what}: errno`);
}
function assertKilled(r: FilterResult, what: string): void {
  assert.equal(r.action, SECCOMP_RET_KILL_PROCESS, `${what} should kill, got 0x${r.ret.toString(16)}`);
}

describe("policy tables", () => {
  it("the blocked list is exactly the expected one, with the expected errnos", () => {
    const policy = Object.fromEntries(BLOCKED_SYSCALLS.map((b) => [b.name, b.errno]));
    assert.deepEqual(policy, EXPECTED_BLOCKED);
  });

  it("every rule has a reason and a syscall number on at least one arch", () => {
    for (const rule of [...BLOCKED_SYSCALLS, ...ARGUMENT_RULES]) {
      assert.ok(rule.reason.length > 10, `${rule.name} reason`);
      const nrs = SYSCALLS[rule.name];
      assert.ok(nrs && (nrs.x64 !== undefined || nrs.arm64 !== undefined), `${rule.name} numbers`);
    }
  });

  it("no syscall appears twice, and no number is shared by two names on one arch", () => {
    const names = [...BLOCKED_SYSCALLS, ...ARGUMENT_RULES].map((r) => r.name);
    assert.equal(new Set(names).size, names.length);
    for (const arch of ARCHES) {
      const numbers = Object.values(SYSCALLS).flatMap((n) => (n[arch] === undefined ? [] : [n[arch]]));
      assert.equal(new Set(numbers).size, numbers.length, arch);
    }
  });

  it("arm64 has no uselib (absent syscalls are skipped)", () => {
    assert.equal(SYSCALLS.uselib?.arm64, undefined);
    assert.equal(SYSCALLS.uselib?.x64, 134);
  });

  // The hand-written numbers against the installed kernel headers, where they exist. Headers older
  // than a syscall (open_tree_attr is 6.15) simply do not define it.
  const headers: Array<[SeccompArch, string]> = [
    ["x64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"],
    ["arm64", "/usr/include/asm-generic/unistd.h"],
  ];
  for (const [arch, file] of headers) {
    it(`${arch} numbers match ${file}`, { skip: existsSync(file) ? false : `${file} not installed` }, () => {
      const defined = new Map<string, number>();
      for (const m of readFileSync(file, "utf8").matchAll(/^#define\s+__NR_(\w+)\s+(\d+)\s*$/gm)) {
        defined.set(m[1] ?? "", Number(m[2]));
      }
      let checked = 0;
      const tables: Array<[string, number | undefined]> = [
        ...Object.entries(SYSCALLS).map(([n, v]): [string, number | undefined] => [n, v[arch]]),
        ...Object.entries(NR[arch]),
      ];
      for (const [name, mine] of tables) {
        const theirs = defined.get(name);
        if (theirs === undefined) {
          assert.equal(mine === undefined || mine >= 424, true, `${name} unknown to ${file}`);
          continue;
        }
        assert.equal(mine, theirs, `${arch} ${name}`);
        checked += 1;
      }
      assert.ok(checked >= 40, `only ${checked} numbers checked`);
    });
  }
});

for (const arch of ARCHES) {
  describe(`filter for ${arch}`, () => {
    const prog = buildSeccompFilter(arch);
    const auditArch = AUDIT_ARCH[arch];

    it("is a well-formed program well under the kernel limit", () => {
      assert.equal(prog.length % INSTRUCTION_SIZE, 0);
      const n = prog.length / INSTRUCTION_SIZE;
      assert.ok(n > 10 && n < BPF_MAXINSNS, `${n} instructions`);
      assert.deepEqual(validate(prog), []);
    });

    it("every jump target is in range and the program ends in a return", () => {
      const insns = decode(prog);
      insns.forEach((ins, pc) => {
        const cls = ins.code & 0x07;
        if (cls !== 0x05) return; // BPF_JMP
        const targets = (ins.code & 0xf0) === 0x00 ? [pc + 1 + ins.k] : [pc + 1 + ins.jt, pc + 1 + ins.jf];
        for (const t of targets) assert.ok(t > pc && t < insns.length, `jump at ${pc} to ${t}`);
      });
      assert.equal((insns[insns.length - 1]?.code ?? 0) & 0x07, 0x06); // BPF_RET
    });

    it("is deterministic and round-trips through decode/encode", () => {
      assert.deepEqual(buildSeccompFilter(arch), prog);
      assert.deepEqual(encode(decode(prog)), prog);
    });

    it("disassembles to one readable line per instruction", () => {
      const lines = disassemble(prog, { syscallName: (n) => syscallName(arch, n) });
      assert.equal(lines.length, prog.length / INSTRUCTION_SIZE);
      assert.match(lines[0] ?? "", /ld \[4\].*; arch/);
      assert.match(lines[1] ?? "", new RegExp(`jeq #0x${auditArch.toString(16)}`));
      const text = lines.join("\n");
      for (const s of ["ret ALLOW", "ret ERRNO(1)", "ret ERRNO(38)", "ret ERRNO(97)", "ret KILL_PROCESS", "; mount", "; clone3"]) {
        assert.ok(text.includes(s), `missing ${s}`);
      }
    });

    it("blocks each listed syscall with its errno, whatever the arguments", () => {
      for (const [name, errno] of Object.entries(EXPECTED_BLOCKED)) {
        const n = SYSCALLS[name]?.[arch];
        if (n === undefined) continue;
        for (const args of [[], [0n, 0n, 0n, 0n, 0n, 0n], [HIGH | 1n, 2n, 3n, HIGH, 0xffffffffn, 42n]]) {
          assertErrno(runFilter(prog, { nr: n, arch: auditArch, args }), errno, name);
        }
      }
    });

    it("allows ordinary syscalls", () => {
      for (const name of ["read", "write", "openat", "execve", "getpid", "ptrace", "process_vm_writev", "seccomp", "memfd_create"]) {
        assertAllowed(call(arch, name, [1n, 2n, 3n]), name);
      }
      assertAllowed(runFilter(prog, { nr: 1000, arch: auditArch, args: [] }), "unknown number");
    });

    it("kills syscalls from any other ABI", () => {
      const others = [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64, 0].filter((a) => a !== auditArch);
      for (const other of others) {
        for (const n of [0, 1, 20, nr(arch, "getpid"), nr(arch, "read")]) {
          assertKilled(runFilter(prog, { nr: n, arch: other, args: [] }), `arch 0x${other.toString(16)} nr ${n}`);
        }
      }
    });

    it("lets nr -1 through (a tracer skipping a syscall; the kernel answers ENOSYS)", () => {
      assertAllowed(runFilter(prog, { nr: -1, arch: auditArch, args: [] }), "nr -1");
    });

    it("clone: CLONE_NEWUSER refused, everything else allowed", () => {
      assertErrno(call(arch, "clone", [CLONE_NEWUSER | SIGCHLD]), EPERM, "clone(NEWUSER)");
      assertErrno(call(arch, "clone", [CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET]), EPERM, "clone(NEWUSER|NEWNS|NEWNET)");
      assertErrno(call(arch, "clone", [HIGH | CLONE_NEWUSER]), EPERM, "clone(NEWUSER, high bits)");
      assertAllowed(call(arch, "clone", [SIGCHLD]), "clone(SIGCHLD)");
      assertAllowed(call(arch, "clone", [THREAD_FLAGS]), "clone(thread)");
      assertAllowed(call(arch, "clone", [SIGCHLD, 0n, 0n, 0n, CLONE_NEWUSER]), "NEWUSER bit in another argument");
    });

    it("unshare: CLONE_NEWUSER refused, other namespaces left to the missing capabilities", () => {
      assertErrno(call(arch, "unshare", [CLONE_NEWUSER | CLONE_NEWNS]), EPERM, "unshare(NEWUSER|NEWNS)");
      assertErrno(call(arch, "unshare", [CLONE_NEWUSER]), EPERM, "unshare(NEWUSER)");
      assertErrno(call(arch, "unshare", [HIGH | CLONE_NEWUSER]), EPERM, "unshare(NEWUSER, high bits)");
      assertAllowed(call(arch, "unshare", [CLONE_NEWNS]), "unshare(NEWNS)");
      assertAllowed(call(arch, "unshare", [0n]), "unshare(0)");
    });

    it("clone3: ENOSYS, so libc falls back to clone()", () => {
      assertErrno(call(arch, "clone3", [0n, 88n]), ENOSYS, "clone3");
    });

    it("ioctl: TIOCSTI and TIOCLINUX refused on the low 32 bits of cmd only", () => {
      for (const cmd of [TIOCSTI, TIOCLINUX, HIGH | TIOCSTI, 0x100000000n | TIOCSTI, HIGH | TIOCLINUX]) {
        assertErrno(call(arch, "ioctl", [0n, cmd, 0x1234n]), EPERM, `ioctl 0x${cmd.toString(16)}`);
      }
      for (const cmd of [TCGETS, HIGH | TCGETS, 0x5413n /* TIOCGWINSZ */, 0x5414n /* TIOCSWINSZ */, 0x540en /* TIOCSCTTY */]) {
        assertAllowed(call(arch, "ioctl", [0n, cmd]), `ioctl 0x${cmd.toString(16)}`);
      }
      // The value must be matched in cmd (arg1), not in the fd or the pointer.
      assertAllowed(call(arch, "ioctl", [TIOCSTI, TCGETS, TIOCSTI]), "TIOCSTI in fd/arg");
    });

    it("socket/socketpair: only unix, inet, inet6 and netlink", () => {
      for (const call_ of ["socket", "socketpair"]) {
        for (const family of [1n, 2n, 10n, 16n, HIGH | 2n]) {
          assertAllowed(call(arch, call_, [family, 1n, 0n]), `${call_}(${family})`);
        }
        // vsock 40, packet 17, bluetooth 31, can 29, alg 38, xdp 44, unspec 0, garbage
        for (const family of [40n, 17n, 31n, 29n, 38n, 44n, 0n, 0xffffffffn, HIGH | 40n, 0x100000000n | 40n]) {
          assertErrno(call(arch, call_, [family, 1n, 0n]), EAFNOSUPPORT, `${call_}(0x${family.toString(16)})`);
        }
      }
    });

    it("personality: only PER_LINUX, the query and ADDR_NO_RANDOMIZE", () => {
      for (const p of [0n, 0xffffffffn, 0x0040000n, HIGH]) assertAllowed(call(arch, "personality", [p]), `personality(0x${p.toString(16)})`);
      for (const p of [0x0400000n /* READ_IMPLIES_EXEC */, 0x0008n /* PER_LINUX32 */, 0x0100000n /* MMAP_PAGE_ZERO */, 0x0440000n]) {
        assertErrno(call(arch, "personality", [p]), EPERM, `personality(0x${p.toString(16)})`);
      }
    });
  });
}

describe("x86_64 ABI specifics", () => {
  const prog = buildSeccompFilter("x64");
  it("x32 syscall numbers kill the process", () => {
    for (const n of [0x40000000 | 39, 0x40000000 | 165, 0x40000000 | 0x200, 0x40000000, 0x7fffffff, 0xfffffffe]) {
      assertKilled(runFilter(prog, { nr: n, arch: AUDIT_ARCH_X86_64, args: [] }), `nr 0x${n.toString(16)}`);
    }
  });
  it("i386 getpid (int 0x80) kills the process", () => {
    assertKilled(runFilter(prog, { nr: 20, arch: AUDIT_ARCH_I386, args: [] }), "i386 getpid");
  });
});

describe("host arch selection", () => {
  it("maps node's arch names and refuses the rest", () => {
    assert.equal(hostSeccompArch("x64"), "x64");
    assert.equal(hostSeccompArch("arm64"), "arm64");
    assert.throws(() => hostSeccompArch("ia32"), CloisterError);
    assert.throws(() => hostSeccompArch("riscv64"), CloisterError);
  });
  it("builds for the host by default", { skip: process.arch === "x64" || process.arch === "arm64" ? false : "unsupported host" }, () => {
    assert.deepEqual(buildSeccompFilter(), buildSeccompFilter(hostSeccompArch()));
  });
});

describe("BPF interpreter and decoder", () => {
  const ins = (code: number, k: number, jt = 0, jf = 0) => ({ code, jt, jf, k });
  const RET = 0x06;
  it("executes JGT, JGE, JA and ALU AND like the kernel", () => {
    // A = nr & 0xff; if A > 10 ret 1 else if A >= 5 ret 2 else ja -> ret 3
    const prog = encode([
      ins(0x20, 0), // ld [0]
      ins(0x54, 0xff), // and #0xff
      ins(0x25, 10, 0, 1), // jgt #10
      ins(RET, 1),
      ins(0x35, 5, 0, 1), // jge #5
      ins(RET, 2),
      ins(0x05, 1), // ja +1
      ins(RET, 99),
      ins(RET, 3),
    ]);
    const run = (n: number) => runFilter(prog, { nr: n, arch: 0, args: [] }).ret;
    assert.equal(run(0x1ff), 1);
    assert.equal(run(0x105), 2);
    assert.equal(run(10), 2);
    assert.equal(run(4), 3);
    assert.match(disassemble(prog)[6] ?? "", /ja 0008/);
  });
  it("reads 64-bit arguments as two little-endian words", () => {
    const prog = encode([ins(0x20, 20), ins(0x15, 0xdeadbeef, 0, 1), ins(RET, 1), ins(RET, 2)]);
    assert.equal(runFilter(prog, { nr: 0, arch: 0, args: [0xdeadbeef_00000000n] }).ret, 1);
    assert.equal(runFilter(prog, { nr: 0, arch: 0, args: [0xdeadbeefn] }).ret, 2);
  });
  it("refuses programs the kernel would refuse", () => {
    const bad = [
      Buffer.alloc(0),
      Buffer.alloc(7),
      encode([ins(0x15, 0, 5, 0), ins(RET, 0)]), // jump past the end
      encode([ins(0x20, 0)]), // no return
      encode([ins(0x20, 64), ins(RET, 0)]), // load beyond seccomp_data
      encode([ins(0x20, 2), ins(RET, 0)]), // unaligned load
      encode([ins(0x61, 0), ins(RET, 0)]), // LDX MEM: not supported here
    ];
    for (const b of bad) {
      assert.notDeepEqual(validate(b), []);
      assert.throws(() => runFilter(b, { nr: 0, arch: 0, args: [] }));
    }
  });
});
