/**
 * The session protocol spoken with `cloister-init init` over its unix socket (one connection =
 * one command). The contract is docs/internals/init-protocol.md; this module only encodes and
 * decodes frames and does no I/O.
 *
 * Frame: u8 type | u32 payload length (little endian) | payload. Payloads are at most 1 MiB.
 */

export const FrameType = {
  // client -> init
  Request: 0x01,
  Stdin: 0x02,
  StdinEof: 0x03,
  Resize: 0x04,
  Signal: 0x05,
  // init -> client
  Started: 0x81,
  Stdout: 0x82,
  Stderr: 0x83,
  Error: 0x84,
  Exit: 0x85,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Largest payload either side accepts. */
export const MAX_PAYLOAD = 1024 * 1024;
export const HEADER_LENGTH = 5;
const REQUEST_HEADER_LENGTH = 13;

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

export interface ExecRequest {
  /** Run under a fresh PTY (stdout and stderr both arrive as STDOUT). */
  tty: boolean;
  /** With tty: the command's stderr is a pipe of its own, arriving as STDERR (the caller's stderr is not the terminal). */
  separateStderr?: boolean;
  /** Initial window size; only meaningful with tty. */
  rows?: number;
  cols?: number;
  cwd: string;
  /** argv[0] is looked up in the PATH of `env`. */
  argv: readonly string[];
  /** The command's entire environment: an object (undefined values skipped) or "KEY=VALUE" strings. */
  env: Readonly<Record<string, string | undefined>> | readonly string[];
}

/** Thrown for anything that breaks the wire format, on either side. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

export function encodeFrame(type: FrameType, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) {
    throw new ProtocolError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  }
  const frame = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  frame.writeUInt8(type, 0);
  frame.writeUInt32LE(payload.length, 1);
  frame.set(payload, HEADER_LENGTH);
  return frame;
}

function u16(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new RangeError(`${name} must be an integer in 0..65535, got ${value}`);
  }
  return value;
}

function cString(what: string, value: string): Buffer {
  if (value.includes("\0")) throw new ProtocolError(`${what} contains a NUL byte`);
  return Buffer.from(`${value}\0`, "utf8");
}

function envEntries(env: ExecRequest["env"]): string[] {
  if (Array.isArray(env)) return [...(env as readonly string[])];
  const entries: string[] = [];
  for (const [key, value] of Object.entries(env as Readonly<Record<string, string | undefined>>)) {
    if (value === undefined) continue;
    if (key === "" || key.includes("=")) throw new ProtocolError(`invalid environment variable name '${key}'`);
    entries.push(`${key}=${value}`);
  }
  return entries;
}

/** The REQUEST frame that opens every session. */
export function encodeRequest(request: ExecRequest): Buffer {
  if (request.argv.length < 1) throw new ProtocolError("argv must not be empty");
  const env = envEntries(request.env);
  const header = Buffer.alloc(REQUEST_HEADER_LENGTH);
  header.writeUInt8(request.tty ? (request.separateStderr ? 2 : 1) : 0, 0);
  header.writeUInt16LE(u16("rows", request.rows ?? 0), 1);
  header.writeUInt16LE(u16("cols", request.cols ?? 0), 3);
  header.writeUInt32LE(request.argv.length, 5);
  header.writeUInt32LE(env.length, 9);
  const payload = Buffer.concat([
    header,
    cString("cwd", request.cwd),
    ...request.argv.map((arg, i) => cString(`argv[${i}]`, arg)),
    ...env.map((entry) => cString("environment entry", entry)),
  ]);
  if (payload.length > MAX_PAYLOAD) {
    throw new ProtocolError(`request of ${payload.length} bytes exceeds ${MAX_PAYLOAD} (argv and env too large)`);
  }
  return encodeFrame(FrameType.Request, payload);
}

/** Inverse of encodeRequest (for tests and fakes of init). */
export function decodeRequest(payload: Buffer): Required<Pick<ExecRequest, "tty" | "separateStderr" | "rows" | "cols" | "cwd">> & {
  argv: string[];
  env: string[];
} {
  if (payload.length < REQUEST_HEADER_LENGTH) throw new ProtocolError("REQUEST too short");
  const argc = payload.readUInt32LE(5);
  const envc = payload.readUInt32LE(9);
  const strings: string[] = [];
  let at = REQUEST_HEADER_LENGTH;
  for (let i = 0; i < 1 + argc + envc; i++) {
    const nul = payload.indexOf(0, at);
    if (nul < 0) throw new ProtocolError("REQUEST string not NUL-terminated");
    strings.push(payload.toString("utf8", at, nul));
    at = nul + 1;
  }
  if (at !== payload.length) throw new ProtocolError("REQUEST has trailing bytes");
  return {
    tty: payload.readUInt8(0) !== 0,
    separateStderr: payload.readUInt8(0) === 2,
    rows: payload.readUInt16LE(1),
    cols: payload.readUInt16LE(3),
    cwd: strings[0] ?? "",
    argv: strings.slice(1, 1 + argc),
    env: strings.slice(1 + argc),
  };
}

/** STDIN frames for `data`; more than one (concatenated) if it exceeds the payload limit. */
export function encodeStdin(data: Uint8Array): Buffer {
  const frames: Buffer[] = [];
  for (let at = 0; at < data.length; at += MAX_PAYLOAD) {
    frames.push(encodeFrame(FrameType.Stdin, data.subarray(at, at + MAX_PAYLOAD)));
  }
  return Buffer.concat(frames);
}

export function encodeStdinEof(): Buffer {
  return encodeFrame(FrameType.StdinEof);
}

export function encodeResize(rows: number, cols: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16LE(u16("rows", rows), 0);
  payload.writeUInt16LE(u16("cols", cols), 2);
  return encodeFrame(FrameType.Resize, payload);
}

export function encodeSignal(signo: number): Buffer {
  if (!Number.isInteger(signo) || signo < 1 || signo > 255) throw new RangeError(`invalid signal number ${signo}`);
  return encodeFrame(FrameType.Signal, Buffer.from([signo]));
}

/** The u32 of a STARTED frame / the i32 of an EXIT frame. */
export function decodeStarted(payload: Buffer): number {
  if (payload.length !== 4) throw new ProtocolError(`STARTED payload is ${payload.length} bytes, not 4`);
  return payload.readUInt32LE(0);
}

export function decodeExit(payload: Buffer): number {
  if (payload.length !== 4) throw new ProtocolError(`EXIT payload is ${payload.length} bytes, not 4`);
  return payload.readInt32LE(0);
}

/**
 * Reassembles frames from a byte stream cut anywhere. push() returns the frames completed by
 * the chunk; it throws ProtocolError (and stays broken) on an unknown type or an oversize
 * length, both detected from the header alone so nothing oversize is ever buffered.
 * Payloads may share memory with the pushed chunks (no copy when a frame sits in one chunk).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: { type: FrameType; length: number } | undefined;
  private failed: ProtocolError | undefined;

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < HEADER_LENGTH) break;
        const h = this.take(HEADER_LENGTH);
        const type = h.readUInt8(0);
        const length = h.readUInt32LE(1);
        if (!KNOWN_TYPES.has(type)) this.fail(`unknown frame type 0x${type.toString(16).padStart(2, "0")}`);
        if (length > MAX_PAYLOAD) this.fail(`frame of ${length} bytes exceeds the ${MAX_PAYLOAD}-byte limit`);
        this.header = { type: type as FrameType, length };
      }
      if (this.buffered < this.header.length) break;
      frames.push({ type: this.header.type, payload: this.take(this.header.length) });
      this.header = undefined;
    }
    return frames;
  }

  /** Bytes received but not yet part of a complete frame (a clean end of stream has none). */
  get pendingBytes(): number {
    return this.buffered + (this.header ? HEADER_LENGTH : 0);
  }

  private fail(message: string): never {
    this.failed = new ProtocolError(message);
    throw this.failed;
  }

  /** Remove and return the first n buffered bytes (n <= buffered). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      // common case: no copy
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0; // chunks fully used; removed in one splice (shift per chunk is quadratic)
    while (filled < n) {
      const c = this.chunks[i] as Buffer;
      const used = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, used);
      filled += used;
      if (used === c.length) i++;
      else this.chunks[i] = c.subarray(used);
    }
    this.chunks.splice(0, i);
    this.buffered -= n;
    return out;
  }
}
