// The run log: every line the console shows also goes to output/training_logs/<model>_<timestamp>.log, there with a
// timestamp; the log alone also gets the resolved config, the versions and a fatal error. Progress is a bar that
// fits the terminal on a TTY, and without one a plain line every PLAIN_PROGRESS_SECONDS (console and log).
import fs from 'node:fs';
import path from 'node:path';
import { writeFailure } from '../util/atomic.js';

/** how often a run without a terminal prints a progress line */
const PLAIN_PROGRESS_SECONDS = 30;

export interface Progress {
  /** `Epoch 2/10` */
  label: string;
  /** batches done of total in this epoch */
  done: number;
  total: number;
  /** running mean of the epoch's train loss */
  loss: number;
  imgPerSec: number;
  /** seconds left in the epoch and in the whole run (NaN: not known yet) */
  epochEta: number;
  runEta: number;
}

/** `1:05`, `1:02:05`; `-:--` when unknown */
export function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-:--';
  const s = Math.round(seconds);
  const p = (n: number) => String(n).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}` : `${Math.floor(s / 60)}:${p(s % 60)}`;
}

export class RunLog {
  private barShown = false;
  private lastPlain = performance.now();

  /** `plainEverySeconds`: how often a run without a terminal prints a progress line; file '': no file (silent) */
  constructor(readonly file: string, private readonly quiet = false, private readonly plainEverySeconds = PLAIN_PROGRESS_SECONDS) {
    if (!file) return;
    this.write(() => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '');
    });
  }

  /** A log that writes nothing anywhere: the ranks of a distributed run other than rank 0, which logs for all. */
  static silent(): RunLog {
    return new RunLog('', true);
  }

  /** A log line that cannot be written (disk full) stops the run with a WriteError naming the log. */
  private write(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw writeFailure(this.file, e);
    }
  }

  /** to the log file only, each line stamped with the local time */
  record(text: string): void {
    if (!this.file) return;
    const at = localTime();
    this.write(() => fs.appendFileSync(this.file, text.split('\n').map((l) => `${at} ${l}\n`).join('')));
  }

  info(line: string): void {
    this.clearBar();
    if (!this.quiet) console.log(line);
    this.record(line);
  }

  warn(line: string): void {
    this.clearBar();
    if (this.file || !this.quiet) console.warn(line);
    this.record(line);
  }

  /**
   * `Epoch 2/10 12/40 [#####     ] loss 1.2345, 34.5 img/s, ETA 0:45, run 5:12`: on a terminal, one line redrawn,
   * as wide as the terminal allows (the bar shrinks, then goes); otherwise a plain line now and then.
   */
  progress(p: Progress): void {
    if (this.quiet) return;
    const figures = `loss ${p.loss.toFixed(4)}, ${p.imgPerSec.toFixed(1)} img/s, ETA ${clock(p.epochEta)}, run ${clock(p.runEta)}`;
    if (!process.stdout.isTTY) {
      if (performance.now() - this.lastPlain < this.plainEverySeconds * 1000) return;
      this.lastPlain = performance.now();
      this.info(`${p.label}: ${p.done}/${p.total} batches, ${figures}`);
      return;
    }
    const head = `${p.label} ${p.done}/${p.total}`;
    const columns = (process.stdout.columns || 80) - 1;   // the last column would wrap on some terminals
    const room = columns - head.length - figures.length - 4;
    const width = Math.min(24, room);
    const filled = Math.round((p.done / Math.max(1, p.total)) * Math.max(0, width));
    const bar = width >= 5 ? ` [${'#'.repeat(filled)}${' '.repeat(width - filled)}]` : '';
    process.stdout.write(`\r${`${head}${bar} ${figures}`.slice(0, columns)}\x1b[K`);
    this.barShown = true;
  }

  clearBar(): void {
    if (this.barShown) process.stdout.write('\r\x1b[K');
    this.barShown = false;
  }
}

/** YYYY-MM-DD HH:MM:SS, local time */
function localTime(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** YYYYMMDD-HHMMSS in local time, as the original's file names. */
export function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
