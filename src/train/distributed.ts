// Data-parallel training, one process per rank, over LibTorch's c10d (native/distributed.cc: a TCPStore rendezvous
// served by rank 0, a Gloo process group). Each rank trains on its part of every batch (data/loader.ts shardRange:
// the global batch is batch_size, split as evenly as can be in rank order; the order and augmentation draws are the
// single-process run's), its gradients averaged with the others' before every step, so N ranks take the steps one
// process would. Rank 0 alone validates, tests, writes checkpoints, logs, the run record and the ONNX; the others
// wait for it at a barrier after each epoch and end with its result.
import { loadAddon, type GroupOptions, type NativeGroup } from '../backend/native.js';
import type { TrainingConfig } from '../config/config.js';
import { UsageError } from '../errors.js';

/** torchrun's defaults */
export const DEFAULT_MASTER_ADDR = '127.0.0.1';
export const DEFAULT_MASTER_PORT = 29500;
/** as torch.distributed's default: long enough for rank 0's validation between two collectives */
export const DEFAULT_TIMEOUT_S = 1800;

/** How a run spreads over processes and machines (CLI: --nproc, --nnodes, --node_rank, --master_addr, --master_port). */
export interface DistributedOptions {
  /** ranks on this machine (default 1) */
  nproc?: number;
  /** machines (default 1); each runs `nproc` ranks */
  nnodes?: number;
  /** this machine's place among them, 0 ... nnodes - 1 (default 0) */
  nodeRank?: number;
  /** rank 0's machine, which serves the rendezvous (default 127.0.0.1) */
  masterAddr?: string;
  /** its port (default 29500) */
  masterPort?: number;
  /** seconds a rank waits for the others (rendezvous, each collective) before the run stops with an error (default 1800) */
  timeoutS?: number;
}

/** One rank's place in the run: what the launcher (or torchrun's environment) gives each process. */
export interface RankInfo {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  timeoutS: number;
}

/** The ranks and rendezvous of `o`, checked; the world size is nnodes x nproc. */
export function worldOf(o: DistributedOptions): { nproc: number; nnodes: number; nodeRank: number; masterAddr: string; masterPort: number; timeoutS: number } {
  const w = {
    nproc: o.nproc ?? 1, nnodes: o.nnodes ?? 1, nodeRank: o.nodeRank ?? 0,
    masterAddr: o.masterAddr ?? DEFAULT_MASTER_ADDR, masterPort: o.masterPort ?? DEFAULT_MASTER_PORT, timeoutS: o.timeoutS ?? DEFAULT_TIMEOUT_S,
  };
  const int = (v: number, min: number, max: number) => Number.isInteger(v) && v >= min && v <= max;
  if (!int(w.nproc, 1, 1024)) throw new UsageError(`distributed: nproc must be an integer >= 1, got ${o.nproc}`);
  if (!int(w.nnodes, 1, 1024)) throw new UsageError(`distributed: nnodes must be an integer >= 1, got ${o.nnodes}`);
  if (!int(w.nodeRank, 0, w.nnodes - 1)) throw new UsageError(`distributed: node_rank must lie in [0, ${w.nnodes - 1}], got ${o.nodeRank}`);
  if (!int(w.masterPort, 1, 65535)) throw new UsageError(`distributed: master_port must lie in [1, 65535], got ${o.masterPort}`);
  if (!(w.timeoutS > 0)) throw new UsageError(`distributed: timeout must be > 0 seconds, got ${o.timeoutS}`);
  return w;
}

/**
 * This process's rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which
 * penny-train's own launcher sets too; undefined when RANK and WORLD_SIZE are not both set.
 */
export function rankFromEnv(env: NodeJS.ProcessEnv = process.env, timeoutS = DEFAULT_TIMEOUT_S): RankInfo | undefined {
  if (env.RANK === undefined || env.WORLD_SIZE === undefined) return undefined;
  const num = (name: string, fallback?: number) => {
    const raw = env[name];
    const v = raw === undefined ? fallback : Number(raw);
    if (v === undefined || !Number.isInteger(v) || v < 0) throw new UsageError(`distributed: environment ${name}=${raw} is not a non-negative integer`);
    return v;
  };
  const info: RankInfo = {
    rank: num('RANK'), worldSize: num('WORLD_SIZE'), localRank: num('LOCAL_RANK', 0), masterAddr: env.MASTER_ADDR ?? DEFAULT_MASTER_ADDR,
    masterPort: num('MASTER_PORT', DEFAULT_MASTER_PORT), timeoutS,
  };
  if (info.worldSize < 1 || info.rank >= info.worldSize) throw new UsageError(`distributed: RANK=${info.rank} must lie in [0, WORLD_SIZE=${info.worldSize})`);
  return info;
}

/** how long the other ranks wait for rank 0's test and export */
const OUTCOME_WAIT_MS = 24 * 3600 * 1000;

/** `distributed` with an explicit rank (train({ distributed: { rank, worldSize, ... } })), checked. */
export function rankInfo(d: DistributedOptions & { rank?: number; worldSize?: number; localRank?: number }): RankInfo {
  const w = worldOf(d);
  const worldSize = d.worldSize ?? w.nproc * w.nnodes;
  if (!Number.isInteger(d.rank) || d.rank! < 0 || d.rank! >= worldSize) throw new UsageError(`distributed: rank must lie in [0, ${worldSize}), got ${d.rank}`);
  return { rank: d.rank!, worldSize, localRank: d.localRank ?? d.rank! % w.nproc, masterAddr: w.masterAddr, masterPort: w.masterPort, timeoutS: w.timeoutS };
}

/** What a distributed run of `cfg` over `world` ranks needs; refused before anything starts. */
export function checkDistributable(cfg: TrainingConfig, world: number): void {
  if (cfg.backend !== 'native') throw new UsageError(`distributed training runs on the native backend; the config asks for backend: ${cfg.backend}`);
  if (cfg.device && cfg.device !== 'cpu') {
    throw new UsageError(`distributed training on ${cfg.device} is not built yet (it needs NCCL); use device cpu (Gloo), or one process`);
  }
  if (cfg.batch_size < world) {
    throw new UsageError(`batch_size ${cfg.batch_size} is the global batch, split over ${world} ranks: it must be at least ${world}`);
  }
}

/** The run's result on a rank other than 0: rank 0's, or the error rank 0 ended with. */
export function resultOf<T>(o: { result: T } | { error: string }): T {
  if ('error' in o) throw new DistributedError(`rank 0 failed: ${o.error}`);
  return o.result;
}

/** Rank 0's end of a run (`finish`), its result or error passed on to every other rank. */
export async function published<T>(group: RankGroup, finish: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await finish();
  } catch (e) {
    await group.outcome({ error: (e as Error).message }).catch(() => {});
    throw e;
  }
  await group.outcome({ result });
  return result;
}

/** A rank's link to the others, as the training loop uses it. */
export class RankGroup {
  private constructor(private readonly g: NativeGroup, readonly rank: number, readonly size: number, readonly timeoutS: number,
    /** `127.0.0.1:29500, Gloo, timeout 1800 s` */
    readonly describe: string) {}

  /** Joins the run: waits (up to the timeout) until every rank has arrived. */
  static async join(r: RankInfo): Promise<RankGroup> {
    const addon = loadAddon();
    if (!addon.NativeGroup) throw new UsageError('distributed training: this build of the addon has no c10d/Gloo (its LibTorch lacks torch/csrc/distributed)');
    const g = new addon.NativeGroup({
      rank: r.rank, size: r.worldSize, masterAddr: r.masterAddr, masterPort: r.masterPort, timeoutMs: Math.round(r.timeoutS * 1000),
      ifname: process.env.GLOO_SOCKET_IFNAME,
    });
    try {
      await g.connect();
    } catch (e) {
      throw rendezvousError(e as Error, r);
    }
    return new RankGroup(g, r.rank, r.worldSize, r.timeoutS, `${r.masterAddr}:${r.masterPort}, Gloo, timeout ${r.timeoutS} s`);
  }

  get leader(): boolean {
    return this.rank === 0;
  }

  /** True on every rank when any rank asks to stop (a signal): all stop after the same step. */
  async anyStop(local: boolean): Promise<boolean> {
    return (await this.collective('stop', this.g.allreduce(Float64Array.of(local ? 1 : 0), 'max')))[0] > 0;
  }

  /** Element-wise sums over the ranks. */
  sum(values: Float64Array): Promise<Float64Array> {
    return this.collective('sum', this.g.allreduce(values, 'sum'));
  }

  /** Every rank waits here for the others (rank 0's validation and checkpoints, between epochs). */
  barrier(what: string): Promise<void> {
    return this.collective(what, this.g.barrier());
  }

  /**
   * Rank 0's weights and buffers to every rank, then the model's gradients are averaged over the ranks in every
   * train step (buckets of `bucketMB`, launched while backward runs; with `syncBn`, batch norm's statistics are the
   * whole batch's). Returns the number of buckets.
   */
  share(model: { joinGroup(g: NativeGroup, o: GroupOptions): Promise<number> }, o: { syncBn: boolean; bucketMB?: number }): Promise<number> {
    const options = { bucketBytes: (o.bucketMB ?? 25) * 2 ** 20, firstBucketBytes: 2 ** 20, syncBn: o.syncBn };
    return this.collective('weights from rank 0', model.joinGroup(this.g, options));
  }

  /**
   * The run's outcome, from rank 0 to every rank: rank 0 gives `outcome` (its result, or the message it failed with),
   * the others receive it (waiting while rank 0 tests and exports; a rank 0 that dies ends the wait at once).
   */
  async outcome<T>(outcome?: { result: T } | { error: string }): Promise<{ result: T } | { error: string }> {
    if (this.leader) {
      await this.collective('publishing the result', this.g.publish('outcome', JSON.stringify(outcome)));
    } else {
      outcome = JSON.parse(await this.collective("rank 0's result", this.g.fetch('outcome', OUTCOME_WAIT_MS))) as { result: T } | { error: string };
    }
    await this.barrier('the end of the run');   // rank 0 keeps the store up until every rank has read it
    return outcome!;
  }

  close(): void {
    this.g.close();
  }

  /**
   * `p`, which communicates with the other ranks (a train step's gradient allreduce too): when that fails (a rank
   * died, or did not answer within the timeout) the error says which rank this is and what it waited for.
   */
  async collective<T>(what: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      const msg = (e as Error).message;
      if (!GLOO_FAILURE.test(msg)) throw e;
      throw new DistributedError(`rank ${this.rank} of ${this.size}: ${what}: the other ranks did not answer within ${this.timeoutS} s or left the run ` +
        `(${firstLine(msg).replace(/\[[^\]]*\.(cc|h|hpp|cpp):\d+\]\s*/g, '')})`);
    }
  }
}

/** A run whose ranks lost each other: exit 1 (not the user's input). */
export class DistributedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistributedError';
  }
}

/** what Gloo and c10d say when a peer is gone or silent (anything else is not the group's doing, and passes as is) */
const GLOO_FAILURE = /gloo|c10d|Connection closed|Connection reset|Timed out|timeout|peer|Broken pipe|socket/i;

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim())?.trim() ?? s;
}

function rendezvousError(e: Error, r: RankInfo): Error {
  const msg = e.message;
  if (/EADDRINUSE|address already in use/i.test(msg)) {
    return new UsageError(`distributed: master_port ${r.masterPort} is in use on this machine: choose another with --master_port (or MASTER_PORT)`);
  }
  if (/timed? ?out|Timeout/i.test(msg)) {
    return new DistributedError(`rank ${r.rank} of ${r.worldSize}: not every rank reached the rendezvous at ${r.masterAddr}:${r.masterPort} within ${r.timeoutS} s ` +
      `(${firstLine(msg)})`);
  }
  return new DistributedError(`rank ${r.rank} of ${r.worldSize}: rendezvous at ${r.masterAddr}:${r.masterPort} failed: ${firstLine(msg)}`);
}
