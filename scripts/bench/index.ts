// Benchmark harness: `npm run bench -- [step|pipeline|onnx|ops|learning|predict|distributed] [--quick] [--threads N]
// [--device cpu|cuda[:N]]` (a GPU: the step part only).
// Each part prints one aligned table and writes every figure, with the machine it ran on, to
// bench/results/<part>-<YYYYMMDD-HHMMSS>.json, so numbers from different machines and days can be compared later.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkDevice } from '../../src/backend/native.js';
import { nativeInfo } from '../../src/index.js';
import { runDistributed } from './distributed.js';
import { runLearning } from './learning.js';
import { runOnnxPart } from './onnx.js';
import { runOps } from './ops.js';
import { runPipeline } from './pipeline.js';
import { runPredict } from './predict.js';
import { runStep } from './step.js';

export interface BenchContext {
  quick: boolean;
  threads: number;
  /** cpu, or cuda[:N] for the parts that run there (step) */
  device: string;
  /** progress, to stderr, so stdout holds only the table */
  log: (msg: string) => void;
}

export interface PartResult {
  head: string[];
  rows: string[][];
  /** lines printed under the table */
  notes: string[];
  /** every figure, for the JSON file */
  data: unknown;
}

const PARTS: Record<string, ((ctx: BenchContext) => Promise<PartResult>) | null> = {
  step: runStep,
  pipeline: runPipeline,
  onnx: runOnnxPart,
  ops: runOps,
  learning: runLearning,
  predict: runPredict,
  distributed: runDistributed,
};

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const USAGE = `usage: npm run bench -- [${Object.keys(PARTS).join('|')}] [--quick] [--threads N] [--device cpu|cuda[:N]]`;
/** the parts that run on a GPU when --device names one */
const GPU_PARTS = ['step'];

function parseArgs(argv: string[]): { parts: string[]; quick: boolean; threads: number; device: string } {
  const parts: string[] = [];
  let quick = false;
  let device = 'cpu';
  let threads = os.availableParallelism();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--threads' || a.startsWith('--threads=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      threads = Number(v);
      if (!Number.isInteger(threads) || threads < 1) fail(`--threads must be a positive integer, got '${v ?? ''}'`);
    } else if (a === '--device' || a.startsWith('--device=')) {
      device = (a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]) ?? '';
      try {
        checkDevice(device);   // the trainer's own check: the form, and a GPU this build can give
      } catch (e) {
        fail(`--device: ${(e as Error).message}`);
      }
    } else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (a in PARTS) parts.push(a);
    else fail(`unknown argument '${a}'`);
  }
  for (const p of parts) {
    if (!PARTS[p]) {
      console.error(`not implemented yet: ${p}`);
      process.exit(2);
    }
  }
  if (device !== 'cpu') {
    const cpuOnly = parts.filter((p) => !GPU_PARTS.includes(p));
    if (!parts.length || cpuOnly.length) fail(`--device ${device}: only ${GPU_PARTS.join(', ')} runs on a GPU; name it alone${cpuOnly.length ? ` (not ${cpuOnly.join(', ')})` : ''}`);
  }
  // no part named: every part that exists
  return { parts: parts.length ? parts : Object.keys(PARTS).filter((p) => PARTS[p]), quick, threads, device };
}

function fail(msg: string): never {
  console.error(`${msg}\n${USAGE}`);
  process.exit(2);
}

/** First column left-aligned (names), the others right-aligned (numbers). */
function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function machine() {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    libtorch: nativeInfo().torchVersion,
  };
}

interface CpuSnap { idle: number; all: number; self: number }

/** Machine-wide CPU times and this process's own plus its reaped children's (PyTorch runs), in ms. */
function cpuSnap(): CpuSnap {
  let idle = 0;
  let all = 0;
  for (const { times: t } of os.cpus()) {
    idle += t.idle;
    all += t.idle + t.user + t.nice + t.sys + t.irq;
  }
  let self = 0;
  try {
    // utime stime cutime cstime, in clock ticks (100 Hz on Linux)
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    self = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
  } catch {
    self = NaN; // not Linux: unknown
  }
  return { idle, all, self };
}

/** Share of the machine's CPU that OTHER processes used between two snapshots: on a shared box, a figure taken
 *  while something else ran is not worth comparing, so the table says so and the JSON keeps it. */
function othersBusy(a: CpuSnap, b: CpuSnap): number | null {
  const all = b.all - a.all;
  if (!(all > 0) || Number.isNaN(b.self)) return null;
  return Math.max(0, (all - (b.idle - a.idle) - (b.self - a.self)) / all);
}

async function main() {
  const { parts, quick, threads, device } = parseArgs(process.argv.slice(2));
  const ctx: BenchContext = { quick, threads, device, log: (msg) => console.error(`[bench] ${msg}`) };
  const mach = machine();
  for (const part of parts) {
    const started = new Date();
    const snap0 = cpuSnap();
    const t0 = performance.now();
    const r = await PARTS[part]!(ctx);
    const seconds = (performance.now() - t0) / 1000;
    const othersCpu = othersBusy(snap0, cpuSnap());
    if (othersCpu !== null && othersCpu > 0.1) {
      r.notes.push(`WARNING: other processes used ${(othersCpu * 100).toFixed(0)}% of the CPU during this run: ` +
        'figures are unreliable; rerun on a quiet machine');
    }
    console.log(`\n${part}${quick ? ' (quick)' : ''} — ${mach.cpuModel}, ${mach.cores} cores, node ${mach.node}, ` +
      `LibTorch ${mach.libtorch}, ${seconds.toFixed(0)} s`);
    console.log(formatTable(r.head, r.rows));
    for (const n of r.notes) console.log(n);
    const dir = path.join(ROOT, 'bench', 'results');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${part}-${stamp(started)}.json`);
    const json = { part, quick, threads, startedAt: started.toISOString(), seconds, machine: { ...mach, othersCpu }, table: { head: r.head, rows: r.rows }, notes: r.notes, data: r.data };
    fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
    console.log(`results: ${path.relative(process.cwd(), file)}`);
  }
}

await main();
