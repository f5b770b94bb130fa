import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { onAbort, untilAborted } from "../../src/abort.js";

const listeners = (signal: AbortSignal): number => getEventListeners(signal, "abort").length;

describe("onAbort", () => {
  it("puts one listener on a signal however many wait on it, and calls every wait at the abort", () => {
    const controller = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (warning: Error): number => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      let called = 0;
      for (let i = 0; i < 50; i++) onAbort(controller.signal, () => called++);
      assert.equal(listeners(controller.signal), 1);
      controller.abort();
      assert.equal(called, 50);
      assert.equal(listeners(controller.signal), 0);
    } finally {
      process.off("warning", onWarning);
    }
    assert.deepEqual(warnings, []);
  });

  it("takes its listener off the signal once every wait is forgotten, and forgets only the wait it was given", () => {
    const controller = new AbortController();
    const calls: string[] = [];
    const callback = (): number => calls.push("same");
    const forgetFirst = onAbort(controller.signal, callback);
    const forgetSecond = onAbort(controller.signal, callback);
    forgetFirst();
    forgetFirst(); // twice is harmless: the second wait stays
    assert.equal(listeners(controller.signal), 1);
    forgetSecond();
    assert.equal(listeners(controller.signal), 0);

    // Waiting again after all were forgotten puts the listener back.
    onAbort(controller.signal, () => calls.push("later"));
    controller.abort();
    assert.deepEqual(calls, ["later"]);
  });

  it("keeps signals apart", () => {
    const first = new AbortController();
    const second = new AbortController();
    const calls: string[] = [];
    onAbort(first.signal, () => calls.push("first"));
    onAbort(second.signal, () => calls.push("second"));
    second.abort();
    assert.deepEqual(calls, ["second"]);
    assert.equal(listeners(first.signal), 1);
  });
});

describe("untilAborted", () => {
  it("settles as the promise does and leaves no listener behind", async () => {
    const controller = new AbortController();
    assert.equal(await untilAborted(Promise.resolve(7), controller.signal), 7);
    await assert.rejects(untilAborted(Promise.reject(new Error("failed")), controller.signal), /failed/);
    assert.equal(listeners(controller.signal), 0);
  });

  it("rejects with the signal's reason at the abort, for each of many waits on one signal", async () => {
    const controller = new AbortController();
    const never = new Promise<never>(() => undefined);
    const waits = Array.from({ length: 20 }, () => untilAborted(never, controller.signal));
    controller.abort(new Error("called off"));
    for (const wait of waits) await assert.rejects(wait, /called off/);
  });

  it("throws at once when the signal has aborted already (in an async caller's await: a rejection)", () => {
    assert.throws(() => untilAborted(Promise.resolve(1), AbortSignal.abort(new Error("too late"))), /too late/);
  });
});
