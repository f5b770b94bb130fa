/**
 * The hostexec wire protocol, version 1: how `hostexec` inside a sandbox asks the guardian to run
 * a command on the host. This header is the contract; native/hostexec.c is the client and keeps in
 * step with it. This module only encodes, decodes and validates; it does no I/O.
 *
 * Transport. The client opens a fresh TCP connection to the address in its CLOISTER_PROXY
 * (http://USER:TOKEN@127.0.0.1:PORT, the sandbox's proxy port, bridged to the guardian's unix
 * socket for that sandbox). One connection carries one command.
 *
 * Client -> guardian:
 *   1. Magic, 4 bytes: C7 48 58 01. 0xC7 begins no HTTP method and is not SOCKS5's 0x05, so the
 *      guardian tells hostexec apart from proxy traffic by the first byte; then "HX"; then the
 *      protocol version (1).
 *   2. One frame `R` (request), payload UTF-8 JSON, at most 1 MiB:
 *        {"token": string, "argv": [string, ...], "cwd": string}
 *      token: the TOKEN of CLOISTER_PROXY (authenticates the sandbox, as for the proxy).
 *      argv:  the command and its arguments, exactly as given to hostexec; at least one element,
 *             the first non-empty; no NUL; each at most 131071 UTF-8 bytes (the kernel's limit
 *             for one exec argument).
 *      cwd:   the client's working directory inside the sandbox, or "" if unknown; informational
 *             only (the command runs in the project directory on the host).
 *      Every string must be valid Unicode (the guardian refuses lone surrogates and invalid UTF-8).
 *   3. Optionally, later, one frame `C` (cancel) with an empty payload. Closing the connection
 *      also cancels.
 *   The client sends nothing else; in particular standard input is not forwarded.
 *
 * Guardian -> client, any number of P, O and E frames, then exactly one X frame:
 *   `P` JSON {"id": string, "message": string}: the request waits for a human decision; the
 *       client prints "hostexec: <message>" to stderr, once per P frame.
 *   `O` raw bytes of the command's stdout; `E` raw bytes of its stderr. The client writes them to
 *       its fd 1 / fd 2 as they arrive.
 *   `X` JSON {"status": string, "exitCode": number, "message"?: string}: the last frame. The
 *       client prints "hostexec: <message>" to stderr if message is non-empty, then exits with
 *       exitCode clamped to 0..255. A cancelled request ends with status "cancelled", exit code
 *       130. A request refused as malformed (parseRequest) ends with an X frame whose message
 *       is the WireError's. (A client whose stdout was closed has cancelled; it prints nothing
 *       more and exits 141.)
 *   The client treats an unknown frame type, a payload over 16 MiB, malformed JSON or the
 *   connection closing before X as a failure of hostexec itself (exit 125).
 *
 * Framing, both directions: u8 type (an ASCII letter) | u32 payload length, big endian | payload.
 */

export const MAGIC: Buffer = Buffer.from([0xc7, 0x48, 0x58, 0x01]);
export const PROTOCOL_VERSION = 1;

/** The frame types, by the letter that is their type byte. */
export const FrameType = {
  Request: "R",
  Cancel: "C",
  Pending: "P",
  Stdout: "O",
  Stderr: "E",
  Exit: "X",
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** u8 type + u32 length. */
export const HEADER_LENGTH = 5;
/** Largest payload of a client frame; the guardian refuses more. */
export const MAX_CLIENT_PAYLOAD = 1024 * 1024;
/** Largest payload of a guardian frame; the client refuses more. */
export const MAX_GUARDIAN_PAYLOAD = 16 * 1024 * 1024;
/** Linux's MAX_ARG_STRLEN (32 pages) less the terminating NUL: execve refuses a longer argument. */
export const MAX_ARGUMENT_BYTES = 128 * 1024 - 1;
/** PATH_MAX less the terminating NUL. */
export const MAX_CWD_BYTES = 4095;
/** Far more than any token cloister issues (64 hex digits); only bounds what is kept. */
export const MAX_TOKEN_LENGTH = 256;

/** Which end wrote a frame; each accepts only the other's types. */
export type Sender = "client" | "guardian";

const SENT_BY: Readonly<Record<Sender, readonly FrameType[]>> = {
  client: [FrameType.Request, FrameType.Cancel],
  guardian: [FrameType.Pending, FrameType.Stdout, FrameType.Stderr, FrameType.Exit],
};
const MAX_PAYLOAD: Readonly<Record<Sender, number>> = { client: MAX_CLIENT_PAYLOAD, guardian: MAX_GUARDIAN_PAYLOAD };

function senderOf(type: FrameType): Sender {
  return SENT_BY.client.includes(type) ? "client" : "guardian";
}

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

export interface HostexecRequest {
  token: string;
  argv: string[];
  cwd: string;
}

export interface ExitInfo {
  status: string;
  exitCode: number;
  message?: string;
}

/** Anything that breaks the protocol; the message is fit to show the agent (in an X frame). */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

/** One frame. An object payload is sent as JSON; a string as UTF-8. */
export function encodeFrame(type: FrameType, payload: Uint8Array | string | object = Buffer.alloc(0)): Buffer {
  const body =
    payload instanceof Uint8Array
      ? payload
      : Buffer.from(typeof payload === "string" ? payload : JSON.stringify(payload), "utf8");
  const limit = MAX_PAYLOAD[senderOf(type)];
  if (body.length > limit) throw new WireError(`a '${type}' frame of ${body.length} bytes exceeds the ${limit}-byte limit`);
  if (type === FrameType.Cancel && body.length > 0) throw new WireError("a cancel frame has no payload");
  const frame = Buffer.allocUnsafe(HEADER_LENGTH + body.length);
  frame.write(type, 0, "latin1");
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, HEADER_LENGTH);
  return frame;
}

export function pendingFrame(id: string, message: string): Buffer {
  return encodeFrame(FrameType.Pending, { id, message });
}

/** Output of any size: split into as many frames as the payload limit needs, concatenated. */
export function outputFrame(stream: typeof FrameType.Stdout | typeof FrameType.Stderr, bytes: Uint8Array): Buffer {
  if (bytes.length <= MAX_GUARDIAN_PAYLOAD) return encodeFrame(stream, bytes);
  const frames: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += MAX_GUARDIAN_PAYLOAD) {
    frames.push(encodeFrame(stream, bytes.subarray(at, at + MAX_GUARDIAN_PAYLOAD)));
  }
  return Buffer.concat(frames);
}

export function exitFrame(exit: ExitInfo): Buffer {
  const { status, exitCode, message } = exit;
  return encodeFrame(FrameType.Exit, message === undefined ? { status, exitCode } : { status, exitCode, message });
}

export interface FrameDecoderOptions {
  /** Consume (and check) the 4 magic bytes before the first frame: the guardian's view of a connection. */
  expectMagic?: boolean;
  /** Whose frames this decoder reads; default "client" (the guardian decodes what clients send). */
  from?: Sender;
}

/**
 * Reassembles frames from a byte stream cut at any point. push() returns the frames the chunk
 * completed; it throws WireError (and stays broken) on a bad magic, a type the sender may not
 * send, or an over-limit length, all judged from the header so nothing oversize is buffered.
 * A payload may share memory with the pushed chunk.
 */
export class FrameDecoder {
  private readonly types: readonly string[];
  private readonly limit: number;
  /** Bytes still wanted before the magic is complete; 0 once it is (or if none is expected). */
  private magicLeft: number;
  /** The header being assembled. */
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFill = 0;
  /** The frame whose payload is arriving, with its parts so far. */
  private current: { type: FrameType; left: number; parts: Buffer[] } | undefined;
  private failed: WireError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    const from = options.from ?? "client";
    this.types = SENT_BY[from];
    this.limit = MAX_PAYLOAD[from];
    this.magicLeft = options.expectMagic ? MAGIC.length : 0;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    const frames: Frame[] = [];
    let at = 0;
    while (at < data.length) {
      if (this.magicLeft > 0) {
        at = this.readMagic(data, at);
      } else if (!this.current) {
        const used = Math.min(HEADER_LENGTH - this.headerFill, data.length - at);
        data.copy(this.header, this.headerFill, at, at + used);
        this.headerFill += used;
        at += used;
        if (this.headerFill === HEADER_LENGTH) this.startFrame();
      } else {
        const part = data.subarray(at, at + this.current.left);
        this.current.parts.push(part);
        this.current.left -= part.length;
        at += part.length;
      }
      if (this.current?.left === 0) {
        const { type, parts } = this.current;
        frames.push({ type, payload: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts) });
        this.current = undefined;
      }
    }
    return frames;
  }

  /** True while bytes of an unfinished magic or frame are held (the stream ended mid-frame). */
  get partial(): boolean {
    return (this.magicLeft > 0 && this.magicLeft < MAGIC.length) || this.headerFill > 0 || this.current !== undefined;
  }

  private readMagic(data: Buffer, at: number): number {
    const offset = MAGIC.length - this.magicLeft;
    const used = Math.min(this.magicLeft, data.length - at);
    if (!data.subarray(at, at + used).equals(MAGIC.subarray(offset, offset + used))) {
      this.fail("not a hostexec connection (bad magic bytes)");
    }
    this.magicLeft -= used;
    return at + used;
  }

  private startFrame(): void {
    this.headerFill = 0;
    const byte = this.header.readUInt8(0);
    const type = String.fromCharCode(byte);
    const length = this.header.readUInt32BE(1);
    if (!this.types.includes(type)) this.fail(`unexpected frame type 0x${byte.toString(16).padStart(2, "0")}`);
    if (length > this.limit) this.fail(`a frame of ${length} bytes exceeds the ${this.limit}-byte limit`);
    if (type === FrameType.Cancel && length > 0) this.fail("a cancel frame has no payload");
    this.current = { type: type as FrameType, left: length, parts: [] };
  }

  private fail(message: string): never {
    this.failed = new WireError(message);
    throw this.failed;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** In a `u` regexp a surrogate pair is one code point, so this matches lone surrogates only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function checkString(what: string, value: unknown, maxBytes: number): string {
  if (typeof value !== "string") throw new WireError(`${what} must be a string`);
  if (value.includes("\0")) throw new WireError(`${what} cannot contain a NUL byte`);
  if (LONE_SURROGATE.test(value)) throw new WireError(`${what} is not valid Unicode (it has a lone surrogate)`);
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > maxBytes) throw new WireError(`${what} is ${bytes} bytes long; the limit is ${maxBytes}`);
  return value;
}

/** Validates the payload of an R frame. Throws WireError saying what is wrong. */
export function parseRequest(payload: Uint8Array): HostexecRequest {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(payload));
  } catch {
    throw new WireError("the request is not valid UTF-8 JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WireError("the request must be a JSON object");
  }
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (key !== "token" && key !== "argv" && key !== "cwd") throw new WireError(`the request has an unknown field '${key}'`);
  }
  const token = checkString("the token", fields.token, MAX_TOKEN_LENGTH);
  if (token === "") throw new WireError("the token is empty");
  const cwd = checkString("the working directory", fields.cwd, MAX_CWD_BYTES);
  if (cwd !== "" && !cwd.startsWith("/")) throw new WireError("the working directory must be an absolute path");
  const { argv } = fields;
  if (!Array.isArray(argv)) throw new WireError("argv must be an array of strings");
  if (argv.length === 0) throw new WireError("no command given (argv is empty)");
  const args = argv.map((arg: unknown) => checkString("an argument", arg, MAX_ARGUMENT_BYTES));
  if (args[0] === "") throw new WireError("the command name is empty");
  return { token, argv: args, cwd };
}
