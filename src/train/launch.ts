// penny-train's own launcher, as torchrun: the ranks of this machine, each a child process (rank-main.ts) that runs
// train() as one rank of the run. Rank 0's console is this process's; the others print only what goes wrong, each
// line marked [rank N]. A stop (Ctrl-C, SIGTERM, an AbortSignal) reaches every rank, which agree on the step to stop
// after (distributed.ts); a rank that dies ends the run: the others see it at once (Gloo's connections close) or at
// the timeout, and whatever is still running after that is stopped, with the rank that failed first named.
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { InterruptedError, UsageError } from '../errors.js';
import { DistributedError, type worldOf } from './distributed.js';
import type { EpochReport, TrainOptions, TrainResult } from './train.js';

/** how long the other ranks have to end after one failed, before they are killed */
const KILL_GRACE_MS = 10_000;

/** What a rank's process says to its launcher. */
export type RankMessage =
  | { epoch: EpochReport }
  | { result: TrainResult }
  | { error: RankError };

/** how a rank failed: the error's class name, message, exit status, and for an interruption the checkpoint saved */
export interface RankError {
  name: string;
  message: string;
  exitCode?: number;
  checkpoint?: string;
}

/** What the launcher says to a rank: its work, or to stop. */
export type LauncherMessage = { train: { modelKey: string; options: TrainOptions } } | { stop: string };

const HERE = fileURLToPath(import.meta.url);
/** the rank's entry: compiled JS beside this file, or the TypeScript source under tsx (tests, benchmarks) */
const ENTRY = path.join(path.dirname(HERE), `rank-main${path.extname(HERE)}`);
const execArgv = () => (path.extname(HERE) === '.ts' ? ['--import', import.meta.resolve('tsx')] : []);

/** Launches this machine's ranks of `world` and resolves with the run's result (rank 0's). */
export async function launchRanks(modelKey: string, options: TrainOptions, world: ReturnType<typeof worldOf>): Promise<TrainResult> {
  const worldSize = world.nproc * world.nnodes;
  // the cores shared out, as torchrun's OMP_NUM_THREADS: two ranks of two threads each on two cores run 2x slower
  const threads = options.threads ?? Math.max(1, Math.floor(os.availableParallelism() / world.nproc));
  const { signal, onEpoch, distributed: _, ...plain } = options;
  const ranks: Rank[] = [];
  for (let local = 0; local < world.nproc; local++) {
    const rank = world.nodeRank * world.nproc + local;
    const child = fork(ENTRY, [], {
      execArgv: execArgv(),
      env: {
        ...process.env, RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(local),
        MASTER_ADDR: world.masterAddr, MASTER_PORT: String(world.masterPort),
      },
      stdio: rank === 0 ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    if (rank !== 0) for (const s of [child.stdout!, child.stderr!]) marked(s, `[rank ${rank}] `);
    const r: Rank = { rank, child, exited: new Promise((done) => child.once('exit', (code, sig) => done({ code, signal: sig }))) };
    child.on('message', (m: RankMessage) => {
      if ('epoch' in m) void Promise.resolve(onEpoch?.(m.epoch)).catch(() => {});
      else if ('result' in m) r.result = m.result;
      else r.error = m.error;
    });
    const message: LauncherMessage = {
      train: { modelKey, options: { ...plain, threads, distributed: { rank, worldSize, localRank: local, masterAddr: world.masterAddr, masterPort: world.masterPort, timeoutS: world.timeoutS } } },
    };
    child.send(message);
    ranks.push(r);
  }
  const stop = () => ranks.forEach((r) => r.child.connected && r.child.send({ stop: String(signal?.reason ?? 'SIGTERM') } satisfies LauncherMessage));
  signal?.addEventListener('abort', stop, { once: true });

  // The first rank to fail is the cause. The others are stopped as torchrun stops them: SIGTERM at once (a rank
  // waiting in a collective sees the dead peer anyway; one still in the rendezvous would wait out the timeout), SIGKILL
  // after a grace period.
  let first: { rank: Rank; how: string } | undefined;
  let reaper: NodeJS.Timeout | undefined;
  await Promise.all(ranks.map(async (r) => {
    const { code, signal: sig } = await r.exited;
    if ((code === 0 && r.result) || first || signal?.aborted) return;   // a stop: every rank ends on its own
    first = { rank: r, how: sig ? `was killed by ${sig}` : `exited with status ${code}` };
    // a rank that gave up waiting while another still runs: that one hangs (a rank on another machine cannot be named)
    const silent = ranks.find((o) => o !== r && o.child.exitCode === null && o.child.signalCode === null);
    if (r.error?.name === 'DistributedError' && silent) {
      first = { rank: silent, how: `did not answer within ${world.timeoutS} s (rank ${r.rank} gave up waiting for it)` };
    }
    for (const o of ranks) if (o !== r && o.child.exitCode === null) o.child.kill('SIGTERM');
    reaper = setTimeout(() => ranks.forEach((o) => o.child.kill('SIGKILL')), KILL_GRACE_MS);
  }));
  clearTimeout(reaper);
  signal?.removeEventListener('abort', stop);

  const done = ranks.find((r) => r.result);   // every rank resolves with the run's result
  if (!first && done) return done.result!;
  if (signal?.aborted) {   // stopped by the user: rank 0 (or the lowest rank here) saved the state
    const stopped = [...ranks].sort((x, y) => x.rank - y.rank).find((r) => r.error?.name === 'InterruptedError');
    throw new InterruptedError(stopped?.error?.checkpoint, signal.reason);
  }
  const cause = first?.rank ?? ranks[0];
  const e = cause.error ?? first?.rank.error;
  if (e?.exitCode === 2) throw new UsageError(`rank ${cause.rank}: ${e.message}`);
  throw new DistributedError(`rank ${cause.rank} (pid ${cause.child.pid}) ${first?.how ?? 'ended without a result'}${e ? `: ${e.message}` : ''}; the run stopped`);
}

interface Rank {
  rank: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  result?: TrainResult;
  error?: RankError;
}

/** Copies a rank's output to this process's stderr, each line marked with the rank. */
function marked(stream: NodeJS.ReadableStream, mark: string): void {
  readline.createInterface({ input: stream }).on('line', (line) => process.stderr.write(`${mark}${line}\n`));
}
