/**
 * The cloister's seccomp filter: the whole policy, and the generator that turns it into the classic
 * BPF program bwrap loads with `--seccomp FD` (bwrap reads raw struct sock_filter bytes until EOF).
 *
 * Why a filter at all, when the sandbox already has no capabilities: most of what is blocked here
 * would fail for lack of capabilities anyway, *except* that a process can regain every capability by
 * creating a new user namespace, and several blocked interfaces need none (io_uring, keyrings, perf,
 * userfaultfd, TIOCSTI, vsock). The filter closes the ways back to capabilities (new user
 * namespaces, setns), the mount API that would detach the read-only binds once there, and large
 * kernel attack surface that an agent has no use for.
 *
 * Shape of the program (linear; every syscall runs ~60 compare instructions, microseconds of nothing):
 *
 *   ld arch;  arch != native            -> KILL_PROCESS   (other ABIs use other syscall numbers)
 *   ld nr;    [x86_64] nr >= 0x40000000 -> KILL_PROCESS   (x32 ABI), except nr == -1 (see below)
 *   jeq nr, <blocked syscall>           -> shared "ret ERRNO(e)"
 *   jeq nr, <syscall with an argument rule> -> that rule's block, which looks at one argument
 *   ret ALLOW
 *
 * Argument checks only ever load the LOW 32 bits of an argument: every argument checked here is an
 * int / unsigned int in the kernel (or, for clone/unshare, a flag word whose bit we test lives in the
 * low half), and the kernel truncates it, so 0xffffffff_00005412 *is* TIOCSTI. Comparing all 64 bits
 * would let the upper half smuggle a value past the filter.
 */
import { CloisterError } from "../../errors.js";
import {
  AUDIT_ARCH_AARCH64,
  AUDIT_ARCH_X86_64,
  BPF_ABS,
  BPF_JEQ,
  BPF_JGE,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_MAXINSNS,
  BPF_RET,
  BPF_W,
  OFFSET_ARCH,
  OFFSET_NR,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_DATA,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  encode,
  offsetArgLo,
  type Instruction,
} from "./bpf.js";

export {
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_TRAP,
  SECCOMP_RET_LOG,
  SECCOMP_RET_ACTION_FULL,
  SECCOMP_RET_DATA,
  AUDIT_ARCH_X86_64,
  AUDIT_ARCH_AARCH64,
  AUDIT_ARCH_I386,
  AUDIT_ARCH_ARM,
} from "./bpf.js";

export type SeccompArch = "x64" | "arm64";

/** errno values (identical on x86_64 and arm64: both use asm-generic/errno). */
export const EPERM = 1;
export const ENOSYS = 38;
export const EAFNOSUPPORT = 97;

/** Action for a syscall made through another ABI (i386 int 0x80, x32, AArch32): the process dies
 * with SIGSYS. Nothing legitimate in a cloister uses those ABIs, and an attempt is an attack on the
 * filter itself, so we stop the whole process rather than return an error it could probe around. */
export const FOREIGN_ABI_ACTION = SECCOMP_RET_KILL_PROCESS;

export const AUDIT_ARCH: Record<SeccompArch, number> = {
  x64: AUDIT_ARCH_X86_64,
  arm64: AUDIT_ARCH_AARCH64,
};

/** x86_64: syscall numbers with this bit set are the x32 ABI's; the filter would otherwise match
 * them against x86_64 numbers and miss them. */
export const X32_SYSCALL_BIT = 0x40000000;

/**
 * Syscall numbers for every syscall the policy names, written by hand from the kernel's
 * arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h (which arm64 uses).
 * A syscall absent on an arch (arm64 has no uselib) has no entry and is simply not checked there.
 * Numbers from 424 up are shared by all architectures. test/unit/seccomp.test.ts cross-checks these
 * against the installed kernel headers.
 */
export const SYSCALLS: Readonly<Record<string, Partial<Record<SeccompArch, number>>>> = {
  // mount API, old and new
  mount: { x64: 165, arm64: 40 },
  umount2: { x64: 166, arm64: 39 },
  pivot_root: { x64: 155, arm64: 41 },
  chroot: { x64: 161, arm64: 51 },
  open_tree: { x64: 428, arm64: 428 },
  move_mount: { x64: 429, arm64: 429 },
  fsopen: { x64: 430, arm64: 430 },
  fsconfig: { x64: 431, arm64: 431 },
  fsmount: { x64: 432, arm64: 432 },
  fspick: { x64: 433, arm64: 433 },
  mount_setattr: { x64: 442, arm64: 442 },
  open_tree_attr: { x64: 467, arm64: 467 }, // Linux 6.15
  // namespaces
  setns: { x64: 308, arm64: 268 },
  unshare: { x64: 272, arm64: 97 },
  clone: { x64: 56, arm64: 220 },
  clone3: { x64: 435, arm64: 435 },
  // kernel attack surface
  bpf: { x64: 321, arm64: 280 },
  perf_event_open: { x64: 298, arm64: 241 },
  keyctl: { x64: 250, arm64: 219 },
  add_key: { x64: 248, arm64: 217 },
  request_key: { x64: 249, arm64: 218 },
  io_uring_setup: { x64: 425, arm64: 425 },
  io_uring_enter: { x64: 426, arm64: 426 },
  io_uring_register: { x64: 427, arm64: 427 },
  userfaultfd: { x64: 323, arm64: 282 },
  // whole-machine administration
  kexec_load: { x64: 246, arm64: 104 },
  kexec_file_load: { x64: 320, arm64: 294 },
  init_module: { x64: 175, arm64: 105 },
  finit_module: { x64: 313, arm64: 273 },
  delete_module: { x64: 176, arm64: 106 },
  open_by_handle_at: { x64: 304, arm64: 265 },
  name_to_handle_at: { x64: 303, arm64: 264 },
  quotactl: { x64: 179, arm64: 60 },
  quotactl_fd: { x64: 443, arm64: 443 },
  swapon: { x64: 167, arm64: 224 },
  swapoff: { x64: 168, arm64: 225 },
  reboot: { x64: 169, arm64: 142 },
  syslog: { x64: 103, arm64: 116 },
  acct: { x64: 163, arm64: 89 },
  lookup_dcookie: { x64: 212, arm64: 18 },
  uselib: { x64: 134 },
  personality: { x64: 135, arm64: 92 },
  // argument-checked
  ioctl: { x64: 16, arm64: 29 },
  socket: { x64: 41, arm64: 198 },
  socketpair: { x64: 53, arm64: 199 },
};

export interface BlockedSyscall {
  name: string;
  errno: number;
  reason: string;
}

/** Syscalls refused outright, whatever their arguments. */
export const BLOCKED_SYSCALLS: readonly BlockedSyscall[] = [
  // A nested user namespace would hand back CAP_SYS_ADMIN; with any mount call it could then detach
  // or remount the read-only binds that protect .git/hooks, rc files and the rest.
  { name: "mount", errno: EPERM, reason: "could remount or cover the cloister's read-only binds" },
  { name: "umount2", errno: EPERM, reason: "could detach read-only binds and expose what they cover" },
  { name: "pivot_root", errno: EPERM, reason: "changes the root the mount layout relies on" },
  { name: "chroot", errno: EPERM, reason: "root games; nothing in a cloister needs it" },
  { name: "open_tree", errno: EPERM, reason: "new mount API: clones mounts that can be moved elsewhere" },
  { name: "move_mount", errno: EPERM, reason: "new mount API: attaches or moves mounts" },
  { name: "fsopen", errno: EPERM, reason: "new mount API: creates a filesystem context" },
  { name: "fsconfig", errno: EPERM, reason: "new mount API: configures / reconfigures a superblock" },
  { name: "fsmount", errno: EPERM, reason: "new mount API: turns a context into a mount" },
  { name: "fspick", errno: EPERM, reason: "new mount API: reconfigures an existing mount's superblock" },
  { name: "mount_setattr", errno: EPERM, reason: "new mount API: could clear MOUNT_ATTR_RDONLY" },
  { name: "open_tree_attr", errno: EPERM, reason: "open_tree + mount_setattr in one call (Linux 6.15)" },
  { name: "setns", errno: EPERM, reason: "joining another namespace leaves the cloister's" },
  // clone3 passes its flags in a struct the filter cannot read, so CLONE_NEWUSER cannot be seen.
  // ENOSYS (not EPERM) makes glibc and others fall back to clone(), whose flags we can check.
  { name: "clone3", errno: ENOSYS, reason: "flags are in memory; ENOSYS makes libc fall back to clone()" },
  { name: "bpf", errno: EPERM, reason: "eBPF verifier/JIT: large kernel attack surface" },
  { name: "perf_event_open", errno: EPERM, reason: "kernel attack surface and side channels" },
  { name: "keyctl", errno: EPERM, reason: "kernel keyrings are not namespaced per cloister" },
  { name: "add_key", errno: EPERM, reason: "kernel keyrings are not namespaced per cloister" },
  { name: "request_key", errno: EPERM, reason: "can call out to host-side /sbin/request-key helpers" },
  { name: "io_uring_setup", errno: EPERM, reason: "io_uring: long CVE history, bypasses syscall filtering" },
  { name: "io_uring_enter", errno: EPERM, reason: "io_uring (see io_uring_setup)" },
  { name: "io_uring_register", errno: EPERM, reason: "io_uring (see io_uring_setup)" },
  { name: "userfaultfd", errno: EPERM, reason: "stalls kernel page faults: a classic race-exploit primitive" },
  { name: "kexec_load", errno: EPERM, reason: "loads a new kernel" },
  { name: "kexec_file_load", errno: EPERM, reason: "loads a new kernel" },
  { name: "init_module", errno: EPERM, reason: "loads kernel code" },
  { name: "finit_module", errno: EPERM, reason: "loads kernel code" },
  { name: "delete_module", errno: EPERM, reason: "unloads kernel code" },
  { name: "open_by_handle_at", errno: EPERM, reason: "opens files by handle, bypassing the mount view" },
  { name: "name_to_handle_at", errno: EPERM, reason: "mints handles for open_by_handle_at; leaks inode ids" },
  { name: "quotactl", errno: EPERM, reason: "host filesystem administration" },
  { name: "quotactl_fd", errno: EPERM, reason: "host filesystem administration" },
  { name: "swapon", errno: EPERM, reason: "host memory administration" },
  { name: "swapoff", errno: EPERM, reason: "host memory administration" },
  { name: "reboot", errno: EPERM, reason: "host administration" },
  { name: "syslog", errno: EPERM, reason: "kernel log leaks host activity and kernel addresses" },
  { name: "acct", errno: EPERM, reason: "host process accounting" },
  { name: "lookup_dcookie", errno: EPERM, reason: "obsolete oprofile interface (removed in 6.8)" },
  { name: "uselib", errno: EPERM, reason: "obsolete a.out loader (x86_64 only)" },
];

/** A rule that looks at one argument: `when` says which values are refused. */
export interface ArgumentRule {
  name: string;
  /** Which argument; only its low 32 bits are loaded (see the file comment). */
  arg: number;
  when:
    | { kind: "any-bit-set"; mask: number } // refused if (arg & mask) != 0
    | { kind: "one-of"; values: readonly number[] } // refused if arg is one of values
    | { kind: "none-of"; values: readonly number[] }; // refused unless arg is one of values
  errno: number;
  reason: string;
}

export const CLONE_NEWUSER = 0x10000000;
export const TIOCSTI = 0x5412;
export const TIOCLINUX = 0x541c;
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const PERSONALITY_QUERY = 0xffffffff;
export const PER_LINUX = 0;
export const ADDR_NO_RANDOMIZE = 0x0040000;

const SOCKET_FAMILIES = [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK] as const;

export const ARGUMENT_RULES: readonly ArgumentRule[] = [
  {
    // The kernel truncates clone's flags to 32 bits (lower_32_bits in kernel/fork.c); arg0 holds the
    // flags on both x86_64 and arm64. Other namespace flags fail anyway: the cloister has no caps.
    name: "clone",
    arg: 0,
    when: { kind: "any-bit-set", mask: CLONE_NEWUSER },
    errno: EPERM,
    reason: "a new user namespace regains every capability inside it",
  },
  {
    name: "unshare",
    arg: 0,
    when: { kind: "any-bit-set", mask: CLONE_NEWUSER },
    errno: EPERM,
    reason: "a new user namespace regains every capability inside it",
  },
  {
    // cmd is `unsigned int` in sys_ioctl: compare the low word only, whatever the high word holds.
    name: "ioctl",
    arg: 1,
    when: { kind: "one-of", values: [TIOCSTI, TIOCLINUX] },
    errno: EPERM,
    reason: "TIOCSTI/TIOCLINUX inject keystrokes into a terminal the host user is reading",
  },
  {
    // AF_VSOCK (40) reaches the hypervisor and is not network-namespaced; AF_PACKET, AF_BLUETOOTH,
    // AF_CAN, AF_XDP and the other rare families are kernel attack surface with no use here.
    name: "socket",
    arg: 0,
    when: { kind: "none-of", values: SOCKET_FAMILIES },
    errno: EAFNOSUPPORT,
    reason: "only unix, inet, inet6 and netlink sockets; vsock would bypass the network namespace",
  },
  {
    // socketpair() runs the same per-family create code as socket(); same allowlist.
    name: "socketpair",
    arg: 0,
    when: { kind: "none-of", values: SOCKET_FAMILIES },
    errno: EAFNOSUPPORT,
    reason: "same family allowlist as socket()",
  },
  {
    // Allowed: PER_LINUX (0, the default and what programs restore), 0xffffffff (query), and
    // ADDR_NO_RANDOMIZE alone (gdb and `setarch -R` disable ASLR for the debuggee; setuid exec would
    // clear it, and no_new_privs already makes setuid inert). Everything else, e.g.
    // READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, PER_LINUX32, is refused.
    name: "personality",
    arg: 0,
    when: { kind: "none-of", values: [PER_LINUX, PERSONALITY_QUERY, ADDR_NO_RANDOMIZE] },
    errno: EPERM,
    reason: "execution-domain flags (READ_IMPLIES_EXEC, MMAP_PAGE_ZERO…) weaken memory protections",
  },
];

// ---------------------------------------------------------------------------------------------
// A tiny assembler: instructions whose jump targets are labels, resolved to relative offsets.

/** A jump target: a label, or NEXT to fall through to the following instruction. */
type Target = string;
const NEXT: Target = "";

interface PendingInstruction {
  code: number;
  k: number;
  jt: Target;
  jf: Target;
}

class Assembler {
  private readonly code: PendingInstruction[] = [];
  private readonly labels = new Map<string, number>();

  label(name: string): void {
    if (this.labels.has(name)) throw new Error(`duplicate label ${name}`);
    this.labels.set(name, this.code.length);
  }
  load(offset: number): void {
    this.code.push({ code: BPF_LD | BPF_W | BPF_ABS, k: offset, jt: NEXT, jf: NEXT });
  }
  jeq(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf });
  }
  jge(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP | BPF_JGE | BPF_K, k, jt, jf });
  }
  jset(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP | BPF_JSET | BPF_K, k, jt, jf });
  }
  ret(k: number): void {
    this.code.push({ code: BPF_RET | BPF_K, k, jt: NEXT, jf: NEXT });
  }

  assemble(): Instruction[] {
    return this.code.map((ins, pc) => {
      const rel = (target: Target): number => {
        if (target === NEXT) return 0;
        const at = this.labels.get(target);
        if (at === undefined) throw new Error(`undefined label ${target}`);
        const offset = at - (pc + 1);
        // Classic BPF jumps are forward-only and 8 bits wide.
        if (offset < 0 || offset > 255) throw new Error(`jump from ${pc} to ${target} out of range`);
        return offset;
      };
      return { code: ins.code, k: ins.k >>> 0, jt: rel(ins.jt), jf: rel(ins.jf) };
    });
  }
}

// ---------------------------------------------------------------------------------------------

export function hostSeccompArch(nodeArch: string = process.arch): SeccompArch {
  if (nodeArch === "x64" || nodeArch === "arm64") return nodeArch;
  throw new CloisterError(
    `no seccomp filter for architecture ${nodeArch}`,
    "cloister supports x86_64 and arm64 hosts",
  );
}

/** Syscall name for a number on an arch, from SYSCALLS (for disassembly comments). */
export function syscallName(arch: SeccompArch, nr: number): string | undefined {
  return Object.entries(SYSCALLS).find(([, nrs]) => nrs[arch] === nr)?.[0];
}

const errnoLabel = (errno: number): string => `errno_${errno}`;

/** Builds the filter for `arch` as raw struct sock_filter bytes, ready for bwrap --seccomp FD. */
export function buildSeccompFilter(arch: SeccompArch = hostSeccompArch()): Buffer {
  if (!(arch in AUDIT_ARCH)) throw new CloisterError(`no seccomp filter for architecture ${arch}`);
  const nrOf = (name: string): number | undefined => {
    const entry = SYSCALLS[name];
    if (entry === undefined) throw new Error(`syscall ${name} missing from SYSCALLS`);
    return entry[arch];
  };
  const asm = new Assembler();

  // 1. ABI check. Syscall numbers mean different things per ABI (i386's 1 is exit, x86_64's is
  //    write), so a filter that matched numbers without checking the arch could be walked around.
  asm.load(OFFSET_ARCH);
  asm.jeq(AUDIT_ARCH[arch], NEXT, "kill");
  asm.load(OFFSET_NR);
  if (arch === "x64") {
    // x32 shares AUDIT_ARCH_X86_64 but sets bit 30 in nr. -1 also lands here: a debugger sets nr to
    // -1 to skip a syscall (and seccomp re-checks after ptrace), so it goes through; the kernel
    // returns ENOSYS for it. Any other number >= 0x40000000 dies.
    asm.jge(X32_SYSCALL_BIT, "x32_or_minus_one", NEXT);
  }

  // 2. Dispatch on the syscall number.
  const errnos = new Set<number>();
  for (const rule of BLOCKED_SYSCALLS) {
    const nr = nrOf(rule.name);
    if (nr === undefined) continue;
    errnos.add(rule.errno);
    asm.jeq(nr, errnoLabel(rule.errno), NEXT);
  }
  const argRules: Array<[ArgumentRule, number]> = [];
  for (const rule of ARGUMENT_RULES) {
    const nr = nrOf(rule.name);
    if (nr === undefined) continue;
    argRules.push([rule, nr]);
    asm.jeq(nr, `rule_${rule.name}`, NEXT);
  }
  asm.ret(SECCOMP_RET_ALLOW); // not named: everything below jumps forward to the "allow" return

  // 3. One block per argument rule; each ends in "allow" or a shared errno return.
  for (const [rule] of argRules) {
    const deny = errnoLabel(rule.errno);
    errnos.add(rule.errno);
    asm.label(`rule_${rule.name}`);
    asm.load(offsetArgLo(rule.arg));
    const w = rule.when;
    if (w.kind === "any-bit-set") {
      asm.jset(w.mask, deny, "allow");
    } else {
      const [hit, miss] = w.kind === "one-of" ? [deny, "allow"] : ["allow", deny];
      w.values.forEach((v, i) => asm.jeq(v, hit, i === w.values.length - 1 ? miss : NEXT));
    }
  }

  // 4. Shared returns.
  if (arch === "x64") {
    asm.label("x32_or_minus_one");
    asm.jeq(0xffffffff, "allow", "kill");
  }
  asm.label("allow");
  asm.ret(SECCOMP_RET_ALLOW);
  for (const errno of [...errnos].sort((a, b) => a - b)) {
    asm.label(errnoLabel(errno));
    asm.ret(SECCOMP_RET_ERRNO | (errno & SECCOMP_RET_DATA));
  }
  asm.label("kill");
  asm.ret(FOREIGN_ABI_ACTION);

  const program = asm.assemble();
  if (program.length > BPF_MAXINSNS) throw new Error(`seccomp program too long: ${program.length}`);
  return encode(program);
}
