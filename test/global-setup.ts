// Every temporary file of a test run (the tests', and the CLI runs' and Python tools' they start) goes in one folder,
// removed when the run ends: a run makes ~100 scratch folders, and they used to stay in the system's temp folder.
// A test worker that dies in the middle of a file (a native crash, the OOM killer) is said with its signal and the
// test it was running (worker-marker.ts): vitest itself says only "Worker exited unexpectedly".
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function reportWorkerDeaths(markers: string): void {
  const emit = ChildProcess.prototype.emit;
  ChildProcess.prototype.emit = function (this: ChildProcess, event: string | symbol, ...args: unknown[]) {
    if (event === 'exit' && this.spawnargs.some((a) => a.endsWith(path.join('workers', 'forks.js')))) {
      const [code, signal] = args as [number | null, NodeJS.Signals | null];
      const marker = path.join(markers, String(this.pid));
      // SIGTERM is vitest stopping a worker (one whose tests were all skipped keeps its marker)
      if (signal !== 'SIGTERM' && fs.existsSync(marker)) {
        process.stderr.write(
          `\ntest worker ${this.pid} died (${signal ? `signal ${signal}` : `exit code ${code}`}) during: ` +
            `${fs.readFileSync(marker, 'utf8')}; memory free ${(os.freemem() / 2 ** 30).toFixed(1)} of ` +
            `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB\n`,
        );
      }
    }
    return emit.apply(this, [event, ...args] as Parameters<ChildProcess['emit']>);
  } as ChildProcess['emit'];
}

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-test-'));
  process.env.TMPDIR = dir;
  process.env.PENNY_TEST_WORKERS = path.join(dir, 'workers');
  fs.mkdirSync(process.env.PENNY_TEST_WORKERS);
  reportWorkerDeaths(process.env.PENNY_TEST_WORKERS);
  return () => fs.rmSync(dir, { recursive: true, force: true });
}
