/**
 * Classic BPF as seccomp uses it: the instruction encoding, a decoder/disassembler and a small
 * interpreter. The generator (seccomp.ts) emits programs; this module reads them back so tests and
 * `cloister doctor` can check what the kernel will actually run, byte for byte, instead of trusting
 * the generator's own description of itself.
 *
 * Layout of one instruction (struct sock_filter, 8 bytes, native = little endian on x86_64/arm64):
 *   u16 code | u8 jt | u8 jf | u32 k
 * Jumps are relative to the next instruction and only go forward, so every program terminates.
 */

// ---- Instruction classes and fields (linux/bpf_common.h) ----
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;

export const BPF_W = 0x00;
export const BPF_ABS = 0x20;

export const BPF_AND = 0x50;

export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;

export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;

/** Kernel limit on a classic BPF program (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;
export const INSTRUCTION_SIZE = 8;

// ---- seccomp ABI (linux/seccomp.h, linux/audit.h) ----
/** Return actions: the high 16 bits of a RET value; the low 16 bits are data (the errno for ERRNO). */
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

export const AUDIT_ARCH_X86_64 = 0xc000003e; // EM_X86_64 (62) | 64BIT | LE
export const AUDIT_ARCH_AARCH64 = 0xc00000b7; // EM_AARCH64 (183) | 64BIT | LE
export const AUDIT_ARCH_I386 = 0x40000003; // EM_386 | LE: int 0x80 / sysenter from a 64-bit process
export const AUDIT_ARCH_ARM = 0x40000028; // EM_ARM | LE: AArch32 compat tasks on arm64

/**
 * struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; } — 64 bytes.
 * Loads are 32-bit, so a 64-bit argument is two words; on little-endian the low word comes first.
 */
export const SECCOMP_DATA_SIZE = 64;
export const OFFSET_NR = 0;
export const OFFSET_ARCH = 4;
export const OFFSET_IP_LO = 8;
export const OFFSET_IP_HI = 12;
export function offsetArgLo(i: number): number {
  return 16 + 8 * i;
}
export function offsetArgHi(i: number): number {
  return 20 + 8 * i;
}

export interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export function encode(program: readonly Instruction[]): Buffer {
  const buf = Buffer.alloc(program.length * INSTRUCTION_SIZE);
  program.forEach((ins, i) => {
    const o = i * INSTRUCTION_SIZE;
    buf.writeUInt16LE(ins.code, o);
    buf.writeUInt8(ins.jt, o + 2);
    buf.writeUInt8(ins.jf, o + 3);
    buf.writeUInt32LE(ins.k >>> 0, o + 4);
  });
  return buf;
}

export function decode(buf: Buffer): Instruction[] {
  if (buf.length % INSTRUCTION_SIZE !== 0) {
    throw new Error(`BPF program length ${buf.length} is not a multiple of ${INSTRUCTION_SIZE}`);
  }
  const out: Instruction[] = [];
  for (let o = 0; o < buf.length; o += INSTRUCTION_SIZE) {
    out.push({
      code: buf.readUInt16LE(o),
      jt: buf.readUInt8(o + 2),
      jf: buf.readUInt8(o + 3),
      k: buf.readUInt32LE(o + 4),
    });
  }
  return out;
}

// The opcodes this module understands (what seccomp.ts emits, plus RET A for completeness).
const LD_W_ABS = BPF_LD | BPF_W | BPF_ABS;
const ALU_AND_K = BPF_ALU | BPF_AND | BPF_K;
const JMP_JA = BPF_JMP | BPF_JA;
const JMP_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
const JMP_JGT_K = BPF_JMP | BPF_JGT | BPF_K;
const JMP_JGE_K = BPF_JMP | BPF_JGE | BPF_K;
const JMP_JSET_K = BPF_JMP | BPF_JSET | BPF_K;
const RET_K = BPF_RET | BPF_K;
const RET_A = BPF_RET | BPF_A;

const CONDITIONAL: Record<number, string> = {
  [JMP_JEQ_K]: "jeq",
  [JMP_JGT_K]: "jgt",
  [JMP_JGE_K]: "jge",
  [JMP_JSET_K]: "jset",
};

/**
 * Structural checks the kernel also makes (net/core/filter.c bpf_check_classic +
 * seccomp_check_filter), limited to the instructions above. Returns the problems found; an empty
 * list means the kernel would accept the program as far as these rules go.
 */
export function validate(buf: Buffer): string[] {
  const problems: string[] = [];
  let prog: Instruction[];
  try {
    prog = decode(buf);
  } catch (e) {
    return [(e as Error).message];
  }
  if (prog.length === 0) problems.push("empty program");
  if (prog.length > BPF_MAXINSNS) problems.push(`${prog.length} instructions > ${BPF_MAXINSNS}`);
  prog.forEach((ins, pc) => {
    const remaining = prog.length - pc - 1;
    if (ins.code === LD_W_ABS) {
      if (ins.k >= SECCOMP_DATA_SIZE || ins.k % 4 !== 0) problems.push(`${pc}: bad load offset ${ins.k}`);
    } else if (ins.code === JMP_JA) {
      if (ins.k >= remaining) problems.push(`${pc}: ja target out of range`);
    } else if (CONDITIONAL[ins.code] !== undefined) {
      if (ins.jt >= remaining || ins.jf >= remaining) problems.push(`${pc}: jump target out of range`);
    } else if (ins.code !== ALU_AND_K && ins.code !== RET_K && ins.code !== RET_A) {
      problems.push(`${pc}: unsupported opcode 0x${ins.code.toString(16)}`);
    }
  });
  const last = prog[prog.length - 1];
  if (last && last.code !== RET_K && last.code !== RET_A) problems.push("last instruction is not a return");
  return problems;
}

const ACTION_NAMES: ReadonlyArray<[number, string]> = [
  [SECCOMP_RET_KILL_PROCESS, "KILL_PROCESS"],
  [SECCOMP_RET_KILL_THREAD, "KILL_THREAD"],
  [SECCOMP_RET_TRAP, "TRAP"],
  [SECCOMP_RET_ERRNO, "ERRNO"],
  [SECCOMP_RET_USER_NOTIF, "USER_NOTIF"],
  [SECCOMP_RET_TRACE, "TRACE"],
  [SECCOMP_RET_LOG, "LOG"],
  [SECCOMP_RET_ALLOW, "ALLOW"],
];

/** "ALLOW", "ERRNO", "KILL_PROCESS"… for an action (high 16 bits of a RET value). */
export function actionName(action: number): string {
  const hit = ACTION_NAMES.find(([a]) => a === (action & SECCOMP_RET_ACTION_FULL) >>> 0);
  return hit ? hit[1] : `ACTION(0x${(action >>> 0).toString(16)})`;
}

function describeRet(k: number): string {
  const action = (k & SECCOMP_RET_ACTION_FULL) >>> 0;
  const data = k & SECCOMP_RET_DATA;
  if (action === SECCOMP_RET_ERRNO) return `ERRNO(${data})`;
  return data === 0 ? actionName(action) : `${actionName(action)}(${data})`;
}

function describeOffset(k: number): string {
  if (k === OFFSET_NR) return "nr";
  if (k === OFFSET_ARCH) return "arch";
  if (k === OFFSET_IP_LO) return "instruction_pointer (low)";
  if (k === OFFSET_IP_HI) return "instruction_pointer (high)";
  if (k >= 16 && k < SECCOMP_DATA_SIZE) return `args[${(k - 16) >> 3}] (${k % 8 === 0 ? "low" : "high"} 32 bits)`;
  return "?";
}

function hex(n: number, width: number): string {
  return (n >>> 0).toString(16).padStart(width, "0");
}

export interface DisassembleOptions {
  /**
   * Names syscall numbers in comparisons that follow a load of `nr`. The tracking is linear (the
   * last load before the instruction, in program order), which matches straight-line generated code;
   * it only affects comments.
   */
  syscallName?: (nr: number) => string | undefined;
}

/** One line per instruction: index, raw fields, mnemonic with absolute jump targets, a comment. */
export function disassemble(buf: Buffer, options: DisassembleOptions = {}): string[] {
  const prog = decode(buf);
  const width = Math.max(4, String(prog.length).length);
  const at = (pc: number): string => String(pc).padStart(width, "0");
  let loaded: number | undefined;
  return prog.map((ins, pc) => {
    const raw = `${hex(ins.code, 4)} ${hex(ins.jt, 2)} ${hex(ins.jf, 2)} ${hex(ins.k, 8)}`;
    let text: string;
    let comment = "";
    const cond = CONDITIONAL[ins.code];
    if (ins.code === LD_W_ABS) {
      text = `ld [${ins.k}]`;
      comment = describeOffset(ins.k);
      loaded = ins.k;
    } else if (ins.code === ALU_AND_K) {
      text = `and #0x${hex(ins.k, 1)}`;
      loaded = undefined;
    } else if (ins.code === JMP_JA) {
      text = `ja ${at(pc + 1 + ins.k)}`;
    } else if (cond !== undefined) {
      text = `${cond} #0x${hex(ins.k, 1)}, ${at(pc + 1 + ins.jt)}, ${at(pc + 1 + ins.jf)}`;
      if (loaded === OFFSET_NR && cond === "jeq") comment = options.syscallName?.(ins.k) ?? "";
    } else if (ins.code === RET_K) {
      text = `ret ${describeRet(ins.k)}`;
    } else if (ins.code === RET_A) {
      text = "ret A";
    } else {
      text = `.insn 0x${hex(ins.code, 4)}`;
      comment = "not understood by this disassembler";
    }
    const line = `${at(pc)}: ${raw}  ${text}`;
    return comment ? `${line.padEnd(56)} ; ${comment}` : line;
  });
}

export interface SyscallRecord {
  nr: number;
  arch: number;
  /** Up to six 64-bit arguments; missing ones are 0. */
  args: readonly bigint[];
  instructionPointer?: bigint;
}

export interface FilterResult {
  /** High 16 bits of the returned value: compare with the SECCOMP_RET_* constants. */
  action: number;
  /** The full 32-bit value the program returned. */
  ret: number;
  /** Set when action is SECCOMP_RET_ERRNO. */
  errno?: number;
}

function seccompData(rec: SyscallRecord): Buffer {
  if (rec.args.length > 6) throw new Error("seccomp_data has six arguments");
  const data = Buffer.alloc(SECCOMP_DATA_SIZE);
  data.writeUInt32LE(rec.nr >>> 0, OFFSET_NR); // int nr: negative numbers are stored two's complement
  data.writeUInt32LE(rec.arch >>> 0, OFFSET_ARCH);
  data.writeBigUInt64LE(BigInt.asUintN(64, rec.instructionPointer ?? 0n), OFFSET_IP_LO);
  rec.args.forEach((a, i) => data.writeBigUInt64LE(BigInt.asUintN(64, a), offsetArgLo(i)));
  return data;
}

/**
 * Runs the program on one syscall record the way the kernel's classic-BPF interpreter does
 * (32-bit unsigned accumulator, forward jumps). Throws on anything validate() rejects, so a test
 * can never pass on a program the kernel would refuse to load.
 */
export function runFilter(buf: Buffer, rec: SyscallRecord): FilterResult {
  const problems = validate(buf);
  if (problems.length > 0) throw new Error(`invalid BPF program: ${problems.join("; ")}`);
  const prog = decode(buf);
  const data = seccompData(rec);
  let a = 0;
  let pc = 0;
  for (;;) {
    const ins = prog[pc];
    if (ins === undefined) throw new Error(`fell off the end of the program at ${pc}`);
    pc += 1;
    switch (ins.code) {
      case LD_W_ABS:
        a = data.readUInt32LE(ins.k);
        break;
      case ALU_AND_K:
        a = (a & ins.k) >>> 0;
        break;
      case JMP_JA:
        pc += ins.k;
        break;
      case JMP_JEQ_K:
        pc += a === ins.k ? ins.jt : ins.jf;
        break;
      case JMP_JGT_K:
        pc += a > ins.k ? ins.jt : ins.jf;
        break;
      case JMP_JGE_K:
        pc += a >= ins.k ? ins.jt : ins.jf;
        break;
      case JMP_JSET_K:
        pc += (a & ins.k) !== 0 ? ins.jt : ins.jf;
        break;
      case RET_K:
      case RET_A: {
        const ret = (ins.code === RET_K ? ins.k : a) >>> 0;
        const action = (ret & SECCOMP_RET_ACTION_FULL) >>> 0;
        return action === SECCOMP_RET_ERRNO ? { action, ret, errno: ret & SECCOMP_RET_DATA } : { action, ret };
      }
      default:
        throw new Error(`unsupported opcode 0x${ins.code.toString(16)} at ${pc - 1}`);
    }
  }
}
