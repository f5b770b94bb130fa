import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  encodeFrame,
  exitFrame,
  FrameDecoder,
  FrameType,
  MAGIC,
  MAX_ARGUMENT_BYTES,
  MAX_CLIENT_PAYLOAD,
  MAX_GUARDIAN_PAYLOAD,
  outputFrame,
  parseRequest,
  pendingFrame,
  WireError,
  type Frame,
} from "../../src/guardian/hostexec/wire.js";

const TOKEN = "ab".repeat(32);

function header(type: string | number, length: number): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(typeof type === "string" ? type.charCodeAt(0) : type, 0);
  h.writeUInt32BE(length, 1);
  return h;
}

function request(fields: object): Buffer {
  return Buffer.from(JSON.stringify(fields));
}

/** Guardian frames as a client sees them, with P and X payloads parsed. */
function decodeGuardian(bytes: Buffer): { type: string; body: unknown }[] {
  return new FrameDecoder({ from: "guardian" })
    .push(bytes)
    .map((f) => ({ type: f.type, body: f.type === "P" || f.type === "X" ? JSON.parse(f.payload.toString()) : f.payload }));
}

describe("hostexec wire: encoding", () => {
  it("lays out a frame as a type letter, big-endian length, payload", () => {
    assert.deepEqual(encodeFrame(FrameType.Stdout, Buffer.from("hi")), Buffer.from([0x4f, 0, 0, 0, 2, 0x68, 0x69]));
    assert.deepEqual(encodeFrame(FrameType.Cancel), Buffer.from([0x43, 0, 0, 0, 0]));
    assert.deepEqual(encodeFrame(FrameType.Stderr, "é"), Buffer.concat([header("E", 2), Buffer.from("é")]));
    assert.deepEqual(encodeFrame(FrameType.Request, { a: 1 }), Buffer.concat([header("R", 7), Buffer.from('{"a":1}')]));
    assert.deepEqual(MAGIC, Buffer.from([0xc7, 0x48, 0x58, 0x01]));
  });

  it("builds P, O, E and X frames", () => {
    const bytes = Buffer.concat([
      pendingFrame("id1", "waiting for approval"),
      outputFrame("O", Buffer.from("out")),
      outputFrame("E", Buffer.from([0xff, 0])),
      exitFrame({ status: "exited", exitCode: 3 }),
      exitFrame({ status: "denied", exitCode: 126, message: "no" }),
    ]);
    assert.deepEqual(decodeGuardian(bytes), [
      { type: "P", body: { id: "id1", message: "waiting for approval" } },
      { type: "O", body: Buffer.from("out") },
      { type: "E", body: Buffer.from([0xff, 0]) },
      { type: "X", body: { status: "exited", exitCode: 3 } },
      { type: "X", body: { status: "denied", exitCode: 126, message: "no" } },
    ]);
  });

  it("splits output over the payload limit into several frames", () => {
    const big = Buffer.alloc(MAX_GUARDIAN_PAYLOAD + 10, 7);
    const frames = new FrameDecoder({ from: "guardian" }).push(outputFrame("O", big));
    assert.deepEqual(
      frames.map((f) => f.payload.length),
      [MAX_GUARDIAN_PAYLOAD, 10],
    );
    assert.deepEqual(Buffer.concat(frames.map((f) => f.payload)), big);
  });

  it("refuses frames over their sender's limit and a cancel with a payload", () => {
    assert.throws(() => encodeFrame(FrameType.Request, Buffer.alloc(MAX_CLIENT_PAYLOAD + 1)), WireError);
    assert.throws(() => encodeFrame(FrameType.Cancel, "x"), /no payload/);
    assert.doesNotThrow(() => encodeFrame(FrameType.Stdout, Buffer.alloc(MAX_CLIENT_PAYLOAD + 1)));
  });
});

describe("hostexec wire: decoding", () => {
  const stream = Buffer.concat([
    MAGIC,
    encodeFrame(FrameType.Request, { token: TOKEN, argv: ["ls", "-l"], cwd: "/w" }),
    encodeFrame(FrameType.Cancel),
  ]);
  const expected: Frame[] = [
    { type: "R", payload: stream.subarray(9, stream.length - 5) },
    { type: "C", payload: Buffer.alloc(0) },
  ];

  it("decodes magic and several frames from one chunk", () => {
    assert.deepEqual(new FrameDecoder({ expectMagic: true }).push(stream), expected);
  });

  it("decodes the same when the stream is cut at any byte, in two pieces or one byte at a time", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder({ expectMagic: true });
      const frames = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      assert.deepEqual(frames, expected, `cut at ${cut}`);
      assert.equal(d.partial, false);
    }
    const d = new FrameDecoder({ expectMagic: true });
    const frames: Frame[] = [];
    for (const byte of stream) frames.push(...d.push(Buffer.from([byte])));
    assert.deepEqual(frames, expected);
  });

  it("reports a stream that stopped mid-frame", () => {
    const d = new FrameDecoder({ expectMagic: true });
    assert.equal(d.partial, false);
    d.push(MAGIC.subarray(0, 2));
    assert.equal(d.partial, true);
    d.push(Buffer.concat([MAGIC.subarray(2), header("R", 4), Buffer.from("{}")]));
    assert.equal(d.partial, true);
  });

  it("refuses a bad magic, even in the first byte, and stays broken", () => {
    const d = new FrameDecoder({ expectMagic: true });
    assert.throws(() => d.push(Buffer.from("CONNECT x:443 HTTP/1.1\r\n")), /bad magic/);
    assert.throws(() => d.push(stream), /bad magic/);
    const versioned = new FrameDecoder({ expectMagic: true });
    versioned.push(MAGIC.subarray(0, 3));
    assert.throws(() => versioned.push(Buffer.from([0x02])), WireError);
  });

  it("refuses a type the sender may not send", () => {
    assert.throws(() => new FrameDecoder().push(header("X", 0)), /unexpected frame type 0x58/);
    assert.throws(() => new FrameDecoder({ from: "guardian" }).push(header("R", 0)), /unexpected frame type 0x52/);
    assert.throws(() => new FrameDecoder().push(header(0, 0)), /0x00/);
  });

  it("refuses an over-limit length from the header alone", () => {
    assert.throws(() => new FrameDecoder().push(header("R", MAX_CLIENT_PAYLOAD + 1)), /exceeds/);
    assert.throws(() => new FrameDecoder({ from: "guardian" }).push(header("O", MAX_GUARDIAN_PAYLOAD + 1)), /exceeds/);
    assert.throws(() => new FrameDecoder().push(header("C", 1)), /no payload/);
    assert.equal(new FrameDecoder().push(header("R", MAX_CLIENT_PAYLOAD)).length, 0);
  });
});

describe("hostexec wire: requests", () => {
  it("returns a well-formed request as it is", () => {
    const argv = ["sh", "-c", "echo 'a b'\n", "", "é🎉"];
    assert.deepEqual(parseRequest(request({ token: TOKEN, argv, cwd: "/home/u/p" })), { token: TOKEN, argv, cwd: "/home/u/p" });
    assert.deepEqual(parseRequest(request({ token: TOKEN, argv: ["x"], cwd: "" })).cwd, "");
  });

  const refusals: [string, Buffer, RegExp][] = [
    ["not JSON", Buffer.from("{"), /not valid UTF-8 JSON/],
    ["invalid UTF-8", Buffer.from([0x7b, 0xff, 0x7d]), /not valid UTF-8 JSON/],
    ["an array", request([]), /must be a JSON object/],
    ["null", Buffer.from("null"), /must be a JSON object/],
    ["an unknown field", request({ token: TOKEN, argv: ["x"], cwd: "/", env: {} }), /unknown field 'env'/],
    ["no token", request({ argv: ["x"], cwd: "/" }), /token must be a string/],
    ["an empty token", request({ token: "", argv: ["x"], cwd: "/" }), /token is empty/],
    ["a long token", request({ token: "a".repeat(257), argv: ["x"], cwd: "/" }), /token is 257 bytes/],
    ["argv not an array", request({ token: TOKEN, argv: "ls", cwd: "/" }), /argv must be an array/],
    ["empty argv", request({ token: TOKEN, argv: [], cwd: "/" }), /argv is empty/],
    ["a number in argv", request({ token: TOKEN, argv: ["ls", 1], cwd: "/" }), /an argument must be a string/],
    ["an empty command", request({ token: TOKEN, argv: ["", "x"], cwd: "/" }), /command name is empty/],
    ["a NUL", request({ token: TOKEN, argv: ["ls", "a\0b"], cwd: "/" }), /^WireError: an argument cannot contain a NUL byte$/],
    ["a lone surrogate", Buffer.from(`{"token":"${TOKEN}","argv":["\\ud800"],"cwd":"/"}`), /lone surrogate/],
    ["a huge argument", request({ token: TOKEN, argv: ["x", "a".repeat(MAX_ARGUMENT_BYTES + 1)], cwd: "/" }), /limit is 131071/],
    ["a relative cwd", request({ token: TOKEN, argv: ["x"], cwd: "w" }), /absolute path/],
    ["a cwd that is no string", request({ token: TOKEN, argv: ["x"], cwd: null }), /working directory must be a string/],
  ];
  for (const [what, payload, message] of refusals) {
    it(`refuses ${what} with a WireError`, () => {
      assert.throws(
        () => parseRequest(payload),
        (error: unknown) => error instanceof WireError && message.test(String(error)),
      );
    });
  }

  it("accepts an argument at exactly the limit, counted in UTF-8 bytes", () => {
    const base = "a".repeat(MAX_ARGUMENT_BYTES - 1);
    assert.equal(parseRequest(request({ token: TOKEN, argv: ["x", base + "a"], cwd: "/" })).argv[1]?.length, MAX_ARGUMENT_BYTES);
    assert.throws(() => parseRequest(request({ token: TOKEN, argv: ["x", base + "é"], cwd: "/" })), /131072 bytes/);
  });
});
