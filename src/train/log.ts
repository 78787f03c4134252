// The run log: every line the console shows also goes to output/training_logs/<model>_<timestamp>.log.
// The progress bar is for terminals only and never reaches the log.
import fs from 'node:fs';
import path from 'node:path';
import { writeFailure } from '../util/atomic.js';

export class RunLog {
  private barShown = false;

  constructor(readonly file: string, private readonly quiet = false) {
    this.write(() => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '');
    });
  }

  /** A log line that cannot be written (disk full) stops the run with a WriteError naming the log. */
  private write(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw writeFailure(this.file, e);
    }
  }

  info(line: string): void {
    this.clearBar();
    if (!this.quiet) console.log(line);
    this.write(() => fs.appendFileSync(this.file, line + '\n'));
  }

  warn(line: string): void {
    this.clearBar();
    console.warn(line);
    this.write(() => fs.appendFileSync(this.file, line + '\n'));
  }

  /** `label 12/40 [#####     ] 34.5 img/s ETA 0:45` (batches done of total), on a terminal only */
  progress(label: string, done: number, total: number, imgPerSec: number, elapsedSeconds: number): void {
    if (this.quiet || !process.stdout.isTTY) return;
    const width = 24;
    const filled = Math.round((done / Math.max(1, total)) * width);
    const eta = done > 0 ? (elapsedSeconds / done) * (total - done) : NaN;
    const etaText = Number.isFinite(eta) ? `${Math.floor(eta / 60)}:${String(Math.round(eta % 60)).padStart(2, '0')}` : '-:--';
    process.stdout.write(`\r${label} ${done}/${total} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${imgPerSec.toFixed(1)} img/s ETA ${etaText}\x1b[K`);
    this.barShown = true;
  }

  clearBar(): void {
    if (this.barShown) process.stdout.write('\r\x1b[K');
    this.barShown = false;
  }
}

/** YYYYMMDD-HHMMSS in local time, as the original's file names. */
export function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
