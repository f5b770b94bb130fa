import type { Socket } from "node:net";
import { canonicalHost, HostSyntaxError, type Host } from "../../policy/hosts.js";
import type { EgressContext } from "./context.js";
import type { Refused } from "./judge.js";
import {
  encodeMethodChoice,
  encodeReply,
  encodeUserPassStatus,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USER_PASS,
  parseGreeting,
  parseRequest,
  parseUserPass,
  SocksProtocolError,
  SocksReply,
  type Parsed,
  type SocksAddress,
} from "./socks5.js";
import { dial, DialError } from "./tunnel.js";
import { intercept } from "../broker/intercept.js";
import { whileHeld } from "./held-client.js";

const HANDSHAKE_TIMEOUT_MS = 15_000;

/** No single handshake message is longer than 513 bytes; an unfinished one beyond this is not SOCKS. */
const MAX_HANDSHAKE_BYTES = 1024;

/**
 * A SOCKS5 session: user/password authentication with the cloister's token (RFC 1929; a client
 * offering only "no authentication" is refused, because the token is required on every path),
 * then one CONNECT judged by the same decision function as HTTP. BIND and UDP ASSOCIATE are refused.
 * `overLimit` (the cap that was hit) refuses the request with a general failure instead of judging it.
 */
export function serveSocks(context: EgressContext, socket: Socket, overLimit?: string): void {
  const reader = new HandshakeReader(socket);
  // Like HTTP's header timeout: a client dripping its handshake does not hold a connection for long.
  const deadline = setTimeout(() => {
    if (!reader.done) {
      context.refused("socks", "invalid", "handshake not finished in time");
      socket.destroy();
    }
  }, HANDSHAKE_TIMEOUT_MS);
  deadline.unref();
  socket.once("close", () => clearTimeout(deadline));
  void session(context, socket, reader, overLimit).catch((error: unknown) => {
    reader.stop();
    context.refused("socks", "invalid", error instanceof Error ? error.message : String(error));
    if (error instanceof SocksProtocolError && error.reply !== undefined && socket.writable) socket.end(encodeReply(error.reply));
    else socket.destroy();
  });
}

async function session(context: EgressContext, socket: Socket, reader: HandshakeReader, overLimit: string | undefined): Promise<void> {
  const greeting = await reader.next(parseGreeting);
  if (!greeting.methods.includes(METHOD_USER_PASS)) {
    context.refused("socks", "unauthenticated", "client offered no user/password authentication");
    reader.stop();
    return void socket.end(encodeMethodChoice(METHOD_NONE_ACCEPTABLE));
  }
  socket.write(encodeMethodChoice(METHOD_USER_PASS));

  const credentials = await reader.next(parseUserPass);
  if (!context.tokenMatches(credentials.password)) {
    context.refused("socks", "unauthenticated", "");
    reader.stop();
    return void socket.end(encodeUserPassStatus(false));
  }
  socket.write(encodeUserPassStatus(true));

  const request = await reader.next(parseRequest);
  if (overLimit !== undefined) {
    reader.stop();
    context.refused("socks", "over-limit", overLimit);
    return void socket.end(encodeReply(SocksReply.GeneralFailure));
  }
  // Nothing more is read until the tunnel is up; bytes the client pipelined after its request
  // belong to the destination.
  const leftover = reader.leftover();
  if (request.command !== "connect") {
    context.refused("socks", "unsupported", request.command);
    return void socket.end(encodeReply(SocksReply.CommandNotSupported));
  }
  let host: Host;
  try {
    host = socksHost(request.address);
  } catch (error) {
    if (!(error instanceof HostSyntaxError)) throw error;
    context.refused("socks", "invalid", error.message);
    return void socket.end(encodeReply(SocksReply.GeneralFailure));
  }

  const { result: verdict, early } = await whileHeld(socket, leftover, () => context.judge("socks", host, request.port, socket));
  if (!verdict.ok) return void socket.end(encodeReply(refusalReply(verdict)));
  let plan;
  try {
    plan = await context.credentials?.interception(verdict.host, verdict.port);
  } catch {
    context.ended("socks", verdict, { bytesUp: 0, bytesDown: 0, durationMs: 0, end: "error" });
    return void socket.end(encodeReply(SocksReply.GeneralFailure));
  }
  if (plan) {
    socket.write(encodeReply(SocksReply.Succeeded));
    return void context.ended("socks", verdict, await intercept(context, verdict, plan, socket, early));
  }
  let upstream: Socket;
  try {
    upstream = await dial(verdict.address, verdict.port, context.settings.connect_timeout);
  } catch (error) {
    context.ended("socks", verdict, { bytesUp: 0, bytesDown: 0, durationMs: 0, end: "unreachable" });
    const timedOut = error instanceof DialError && error.status === 504;
    return void socket.end(encodeReply(timedOut ? SocksReply.TtlExpired : SocksReply.ConnectionRefused));
  }
  if (socket.destroyed) return void upstream.destroy();
  // BND.ADDR/BND.PORT say 0.0.0.0:0 (encodeReply's default), as many proxies do: the upstream
  // socket's own address would tell the cloister the host's outbound address and its ports.
  socket.write(encodeReply(SocksReply.Succeeded));
  context.ended("socks", verdict, await context.tunnel(socket, upstream, early));
}

function socksHost(address: SocksAddress): Host {
  // A domain goes through the same canonicalization as an HTTP authority, so "127.1" or
  // "LOCALHOST." are recognised for what they are; IPs are canonical already.
  return canonicalHost(address.kind === "domain" ? address.name : address.kind === "ipv6" ? `[${address.address}]` : address.address);
}

function refusalReply(verdict: Refused): SocksReply {
  if (verdict.status === 502) return SocksReply.HostUnreachable;
  return SocksReply.NotAllowedByRuleset;
}

/**
 * Reads handshake messages off a socket one at a time: buffers until the parser has a whole
 * message, keeps what follows for the next one. Bounded, and it fails on close or error.
 */
class HandshakeReader {
  /** The handshake is over (the request was read, or the session was refused). */
  done = false;
  private buffered = Buffer.alloc(0);
  private waiting?: { parse: (buf: Buffer) => Parsed<unknown>; resolve: (value: unknown) => void; reject: (error: Error) => void };

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.once("end", () => this.fail(new SocksProtocolError("the client closed the connection during the handshake")));
    socket.once("close", () => this.fail(new SocksProtocolError("connection closed during the handshake")));
  }

  next<T>(parse: (buf: Buffer) => Parsed<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting = { parse, resolve: resolve as (value: unknown) => void, reject };
      this.tryParse();
    });
  }

  /**
   * The handshake ended in a refusal or an error. Nothing the client sends now means anything, and
   * with half-open sockets it could go on sending: everything used to be appended to the buffer
   * (no message was waiting, so the length limit never fired), growing the guardian's memory and
   * re-copying the whole buffer on every chunk. Now the buffer is dropped and more bytes close the
   * connection.
   */
  stop(): void {
    this.done = true;
    this.socket.off("data", this.onData);
    this.buffered = Buffer.alloc(0);
    this.socket.on("data", () => this.socket.destroy());
  }

  /** Stops reading and returns the bytes that arrived after the last message. */
  leftover(): Buffer {
    this.done = true;
    this.socket.off("data", this.onData);
    this.socket.pause();
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    this.tryParse();
    // Only an unfinished message counts: a client may pipeline its first payload after the request.
    if (this.buffered.length > MAX_HANDSHAKE_BYTES) this.fail(new SocksProtocolError("handshake too long"));
  };

  private tryParse(): void {
    const waiting = this.waiting;
    if (!waiting) return;
    try {
      const parsed = waiting.parse(this.buffered);
      if (parsed === "incomplete") return;
      this.buffered = this.buffered.subarray(parsed.used);
      this.waiting = undefined;
      waiting.resolve(parsed.value);
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private fail(error: Error): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(error);
  }
}
