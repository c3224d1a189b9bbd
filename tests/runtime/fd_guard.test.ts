import assert from "node:assert/strict";
import { test } from "node:test";
import { FdGuard } from "../../src/runtime/fd_guard.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** A guard over a fake listener and a fake count of free descriptors. */
function guarded(options: { resumeFails?: boolean } = {}) {
  const clock = new FakeClock();
  const state = { free: 100, paused: 0, resumed: 0, probes: [] as number[], resumeFails: options.resumeFails ?? false };
  const guard = new FdGuard({
    clock,
    intervalMs: 1000,
    headroom: 32,
    probe: (count) => {
      state.probes.push(count);
      return state.free >= count;
    },
    pause: () => void state.paused++,
    resume: () => {
      if (state.resumeFails) return false;
      state.resumed++;
      return true;
    },
  });
  return { clock, state, guard };
}

test("fd guard: pauses the listener at the first check that finds no free descriptor, resumes with headroom", async () => {
  const { clock, state, guard } = guarded();
  guard.start();
  await clock.advance(3000);
  assert.deepEqual([state.paused, state.resumed], [0, 0]);
  assert.deepEqual(state.probes, [1, 1, 1], "one descriptor probed a second while there are free ones");

  state.free = 0;
  await clock.advance(1000);
  assert.equal(state.paused, 1);
  assert.equal(guard.paused, true);

  state.free = 10; // some free, but less than the headroom
  await clock.advance(2000);
  assert.equal(state.resumed, 0);
  state.free = 40;
  await clock.advance(1000);
  assert.deepEqual([state.paused, state.resumed], [1, 1]);
  assert.equal(guard.paused, false);
  guard.close();
  assert.equal(clock.pending, 0, "close() leaves no timer");
});

test("fd guard: a pause soon after a resume lasts twice as long as the one before, up to 30 s", async () => {
  const { clock, state, guard } = guarded();
  guard.start();
  const pauseLengths: number[] = [];
  for (let round = 0; round < 7; round++) {
    state.free = 0;
    await clock.advance(1000); // the check that pauses
    const pausedAt = clock.now();
    state.free = 100;
    while (state.resumed === round) await clock.advance(1000);
    pauseLengths.push(clock.now() - pausedAt);
  }
  assert.deepEqual(pauseLengths, [1000, 1000, 2000, 4000, 8000, 16000, 30000]);
  guard.close();
});

test("fd guard: a resume that fails (the port was taken) is tried again at the next check", async () => {
  const { clock, state, guard } = guarded({ resumeFails: true });
  guard.start();
  state.free = 0;
  await clock.advance(1000);
  state.free = 100;
  await clock.advance(3000);
  assert.equal(guard.paused, true);
  state.resumeFails = false;
  await clock.advance(1000);
  assert.equal(guard.paused, false);
  assert.equal(state.resumed, 1);
  guard.close();
});

test("fd guard: the default probe opens and closes /dev/null without leaking descriptors", async () => {
  const { readdirSync } = await import("node:fs");
  const fds = () => readdirSync("/proc/self/fd").length;
  const clock = new FakeClock();
  let pauses = 0;
  const guard = new FdGuard({ clock, pause: () => void pauses++, resume: () => true });
  guard.start();
  const before = fds();
  await clock.advance(5000);
  assert.equal(pauses, 0, "a process with free descriptors is not paused");
  assert.equal(fds(), before);
  guard.close();
});
