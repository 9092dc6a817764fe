// Interleaved timing: the configurations being compared take turns, one
// sample each per round, so slow drifts of a noisy machine (other tenants,
// frequency, page cache) hit all of them alike and their ratios stay honest.
import { summarize } from './stats.mjs';

/** Seconds per call of `calls` back-to-back calls of fn, by process.hrtime.bigint. */
export function timeCalls(fn, calls) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - start) / 1e9 / calls;
}

/**
 * A participant measures itself: `measure(calls)` performs `calls` operations
 * and returns (or resolves to) seconds per operation. `prepare()` (optional,
 * untimed, may return a promise) runs before each sample, e.g. to switch the
 * kernel ISA. A participant in another process (a PyTorch worker) times its
 * calls itself, so the round trip to it is not part of its figure.
 *
 * @param {{name: string, measure: (calls: number) => number | Promise<number>, prepare?: () => void | Promise<void>}[]} participants
 * @param {{budgetSec: number, minRounds: number, maxRounds: number, sampleSec: number, warmupSec: number}} plan
 * @returns {Promise<{name: string, callsPerSample: number, samples: number[], stats: ReturnType<typeof summarize>}[]>}
 */
export async function interleave(participants, plan) {
  const state = participants.map((p) => ({ p, callsPerSample: 1, samples: [] }));
  // Warm-up doubles as the estimate that sizes a sample: enough calls that
  // timer overhead and the first call after a switch are negligible.
  for (const s of state) {
    const until = performance.now() + plan.warmupSec * 1e3;
    let estimate = Infinity;
    let calls = 0;
    do {
      await s.p.prepare?.();
      estimate = Math.min(estimate, await s.p.measure(1));
      calls++;
    } while (calls < 3 || (performance.now() < until && calls < 1000));
    s.callsPerSample = Math.max(1, Math.min(10000, Math.round(plan.sampleSec / estimate)));
  }
  const start = performance.now();
  for (let round = 0; round < plan.maxRounds; round++) {
    if (round >= plan.minRounds && performance.now() - start >= plan.budgetSec * 1e3) break;
    // Rotate who goes first so no participant always follows the same one.
    for (let k = 0; k < state.length; k++) {
      const s = state[(round + k) % state.length];
      await s.p.prepare?.();
      s.samples.push(await s.p.measure(s.callsPerSample));
    }
  }
  return state.map((s) => ({
    name: s.p.name,
    callsPerSample: s.callsPerSample,
    samples: s.samples,
    stats: summarize(s.samples),
  }));
}
