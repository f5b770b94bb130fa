import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeExit,
  decodeRequest,
  decodeStarted,
  encodeFrame,
  encodeRequest,
  encodeResize,
  encodeSignal,
  encodeStdin,
  encodeStdinEof,
  FrameDecoder,
  FrameType,
  MAX_PAYLOAD,
  ProtocolError,
  type Frame,
} from "../../src/sandbox/init-protocol.js";

function decodeAll(bytes: Buffer): Frame[] {
  return new FrameDecoder().push(bytes);
}

function header(type: number, length: number): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(type, 0);
  h.writeUInt32LE(length, 1);
  return h;
}

describe("init protocol: encoding", () => {
  it("lays out a frame as type, little-endian length, payload", () => {
    assert.deepEqual(encodeFrame(FrameType.Stdout, Buffer.from("hi")), Buffer.from([0x82, 2, 0, 0, 0, 0x68, 0x69]));
    assert.deepEqual(encodeStdinEof(), Buffer.from([0x03, 0, 0, 0, 0]));
  });

  it("encodes a REQUEST with its header and NUL-terminated cwd, argv and env", () => {
    const frame = encodeRequest({ tty: true, rows: 24, cols: 80, cwd: "/w", argv: ["ls", "-l"], env: { A: "1", B: undefined } });
    assert.equal(frame.readUInt8(0), FrameType.Request);
    const payload = frame.subarray(5);
    assert.equal(frame.readUInt32LE(1), payload.length);
    assert.deepEqual(
      payload,
      Buffer.concat([Buffer.from([1, 24, 0, 80, 0, 2, 0, 0, 0, 1, 0, 0, 0]), Buffer.from("/w\0ls\0-l\0A=1\0")]),
    );
  });

  it("round-trips a REQUEST, with env given as an object or as KEY=VALUE strings", () => {
    const fromObject = encodeRequest({ tty: false, cwd: "/tmp", argv: ["sh", "-c", "echo é"], env: { PATH: "/bin", EMPTY: "" } });
    assert.deepEqual(decodeRequest(fromObject.subarray(5)), {
      tty: false,
      separateStderr: false,
      rows: 0,
      cols: 0,
      cwd: "/tmp",
      argv: ["sh", "-c", "echo é"],
      env: ["PATH=/bin", "EMPTY="],
    });
    const fromList = encodeRequest({ tty: true, rows: 1, cols: 65535, cwd: "/", argv: ["x"], env: ["K=V=W"] });
    assert.deepEqual(decodeRequest(fromList.subarray(5)), { tty: true, separateStderr: false, rows: 1, cols: 65535, cwd: "/", argv: ["x"], env: ["K=V=W"] });
    const apart = encodeRequest({ tty: true, separateStderr: true, rows: 2, cols: 3, cwd: "/", argv: ["x"], env: [] });
    assert.equal(apart[5], 2, "terminal mode 2: a PTY with stderr on a pipe of its own");
    assert.deepEqual(decodeRequest(apart.subarray(5)), { tty: true, separateStderr: true, rows: 2, cols: 3, cwd: "/", argv: ["x"], env: [] });
  });

  it("refuses requests the init would reject or misread", () => {
    const base = { tty: false, cwd: "/", argv: ["true"], env: {} };
    assert.throws(() => encodeRequest({ ...base, argv: [] }), ProtocolError);
    assert.throws(() => encodeRequest({ ...base, argv: ["a\0b"] }), ProtocolError);
    assert.throws(() => encodeRequest({ ...base, env: { "A=B": "c" } }), ProtocolError);
    assert.throws(() => encodeRequest({ ...base, rows: 70000 }), RangeError);
    assert.throws(() => encodeRequest({ ...base, argv: ["x".repeat(MAX_PAYLOAD)] }), /exceeds/);
  });

  it("encodes RESIZE, SIGNAL, STARTED and EXIT payloads", () => {
    assert.deepEqual(encodeResize(50, 132), Buffer.from([0x04, 4, 0, 0, 0, 50, 0, 132, 0]));
    assert.deepEqual(encodeSignal(15), Buffer.from([0x05, 1, 0, 0, 0, 15]));
    assert.throws(() => encodeSignal(0), RangeError);
    assert.throws(() => encodeSignal(256), RangeError);
    const u32 = Buffer.alloc(4);
    u32.writeUInt32LE(4242);
    assert.equal(decodeStarted(u32), 4242);
    u32.writeInt32LE(137);
    assert.equal(decodeExit(u32), 137);
    assert.throws(() => decodeExit(Buffer.alloc(3)), ProtocolError);
  });

  it("splits stdin larger than the payload limit into several frames", () => {
    const data = Buffer.alloc(MAX_PAYLOAD * 2 + 10, 7);
    const frames = decodeAll(encodeStdin(data));
    assert.deepEqual(
      frames.map((f) => [f.type, f.payload.length]),
      [
        [FrameType.Stdin, MAX_PAYLOAD],
        [FrameType.Stdin, MAX_PAYLOAD],
        [FrameType.Stdin, 10],
      ],
    );
    assert.deepEqual(Buffer.concat(frames.map((f) => f.payload)), data);
    assert.equal(encodeStdin(Buffer.alloc(0)).length, 0);
  });
});

describe("init protocol: FrameDecoder", () => {
  const stream = Buffer.concat([
    encodeFrame(FrameType.Started, Buffer.from([1, 0, 0, 0])),
    encodeFrame(FrameType.Stdout, Buffer.from("hello")),
    encodeFrame(FrameType.Stderr, Buffer.alloc(0)),
    encodeFrame(FrameType.Stdout, Buffer.alloc(70_000, 1)),
    encodeFrame(FrameType.Exit, Buffer.from([0, 0, 0, 0])),
  ]);
  const expected = decodeAll(stream);

  it("decodes several frames from one chunk", () => {
    assert.deepEqual(
      expected.map((f) => [f.type, f.payload.length]),
      [
        [FrameType.Started, 4],
        [FrameType.Stdout, 5],
        [FrameType.Stderr, 0],
        [FrameType.Stdout, 70_000],
        [FrameType.Exit, 4],
      ],
    );
  });

  it("gives the same frames however the stream is cut", () => {
    for (const size of [1, 2, 3, 5, 6, 4096, 65_536]) {
      const decoder = new FrameDecoder();
      const frames: Frame[] = [];
      for (let at = 0; at < stream.length; at += size) frames.push(...decoder.push(stream.subarray(at, at + size)));
      assert.deepEqual(frames, expected, `chunk size ${size}`);
      assert.equal(decoder.pendingBytes, 0);
    }
  });

  it("holds an incomplete frame until the rest arrives", () => {
    const decoder = new FrameDecoder();
    const frame = encodeFrame(FrameType.Stdout, Buffer.from("abc"));
    assert.deepEqual(decoder.push(frame.subarray(0, 6)), []);
    assert.equal(decoder.pendingBytes, 6);
    assert.deepEqual(decoder.push(frame.subarray(6)), [{ type: FrameType.Stdout, payload: Buffer.from("abc") }]);
  });

  it("accepts a payload of exactly 1 MiB", () => {
    const frames = decodeAll(encodeFrame(FrameType.Stdout, Buffer.alloc(MAX_PAYLOAD)));
    assert.equal(frames[0]?.payload.length, MAX_PAYLOAD);
  });

  it("rejects an oversize length from the header alone, and stays failed", () => {
    const decoder = new FrameDecoder();
    assert.throws(() => decoder.push(header(FrameType.Stdout, MAX_PAYLOAD + 1)), /exceeds/);
    assert.throws(() => decoder.push(encodeFrame(FrameType.Stdout, Buffer.from("x"))), ProtocolError);
  });

  it("rejects an unknown frame type", () => {
    assert.throws(() => decodeAll(header(0x42, 0)), /unknown frame type 0x42/);
    assert.throws(() => decodeAll(Buffer.concat([encodeFrame(FrameType.Stdout, Buffer.from("ok")), header(0x00, 0)])), ProtocolError);
  });

  it("rejects a malformed REQUEST payload when decoding it", () => {
    const payload = encodeRequest({ tty: false, cwd: "/", argv: ["a"], env: [] }).subarray(5);
    assert.throws(() => decodeRequest(payload.subarray(0, payload.length - 1)), /NUL/);
    assert.throws(() => decodeRequest(Buffer.concat([payload, Buffer.from("x")])), /trailing/);
    assert.throws(() => decodeRequest(Buffer.alloc(12)), /too short/);
  });
});
