// Every file penny-train writes lands whole or not at all: it is written to a temporary beside it, synced, and
// renamed over the target, so a crash, a kill -9 or a full disk leaves the previous good file in place. Temporaries
// are named `<file>.tmp-<pid>-<nonce>`: a later run removes those of processes no longer alive (cleanStaleTemps).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';

/** errno codes of a write the user can fix (space, permissions, a read-only mount): exit 2, not a crash */
const USER_FIXABLE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG']);

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device', EDQUOT: 'disk quota exceeded', EFBIG: 'the file is larger than this file system or process allows', EROFS: 'read-only file system',
  EACCES: 'permission denied', EPERM: 'operation not permitted', ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder', ENAMETOOLONG: 'the name is too long',
};

/** A file that could not be written because of the machine (disk full, permissions): the CLI exits 2. */
export class WriteError extends UsageError {
  constructor(readonly file: string, readonly code: string, detail?: string) {
    super(`cannot write ${file}: ${REASONS[code] ?? detail ?? code} (${code})`);
    this.name = 'WriteError';
  }
}

/** The errno code of a Node error, or one the native writer names in its message as `(ECODE)`. */
function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string' && code.startsWith('E')) return code;
  return /\((E[A-Z]+)\)/.exec((e as Error)?.message ?? '')?.[1];
}

/** A write failure as the error to throw: WriteError where the user can fix it, else an Error naming the file. */
export function writeFailure(file: string, e: unknown): Error {
  if (e instanceof WriteError) return e;
  const code = errnoOf(e);
  if (code && USER_FIXABLE.has(code)) return new WriteError(file, code);
  return new Error(`cannot write ${file}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

export function tempPath(file: string): string {
  return `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

const TEMP = /\.tmp-(\d+)(?:-[0-9a-f]+)?$/;

/**
 * Writes `file` through `write(tmp)` (which creates tmp), then syncs and renames it over `file`. On failure the
 * temporary is gone, `file` is as it was, and the error names `file`.
 */
export async function writeAtomic(file: string, write: (tmp: string) => Promise<void> | void): Promise<void> {
  const tmp = tempPath(file);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await write(tmp);
    const fd = fs.openSync(tmp, 'r');
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.rmSync(tmp, { force: true }); } catch { /* already failing */ }
    throw writeFailure(file, e);
  }
  syncDir(path.dirname(file));
}

/** Bytes or text in hand, written the same way, synchronously (the ONNX writer and the label map). */
export function writeFileAtomicSync(file: string, data: Uint8Array | string): void {
  const tmp = tempPath(file);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeAll(tmp, typeof data === 'string' ? Buffer.from(data) : data);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.rmSync(tmp, { force: true }); } catch { /* already failing */ }
    throw writeFailure(file, e);
  }
  syncDir(path.dirname(file));
}

/** Creates `file` with `data`, synced to the disk. */
function writeAll(file: string, data: Uint8Array): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off, Math.min(data.length - off, 1 << 26));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The rename reaches the disk with the folder's entry (best effort: not every file system syncs folders). */
function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  } catch { /* not supported here */ }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';   // someone else's live process
  }
}

/** Removes the temporaries of dead penny-train processes in `dir` (ours by name, their PID gone); returns them. */
export function cleanStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const file = path.join(dir, name);
    try {
      if (fs.lstatSync(file).isFile()) {
        fs.rmSync(file);
        removed.push(file);
      }
    } catch { /* gone meanwhile */ }
  }
  return removed;
}

/** Creates `dir` if needed and proves a file can be written there, before hours of training depend on it. */
export function checkWritable(dir: string): void {
  const probe = path.join(dir, `.penny-train-probe.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(probe, 'probe');
    fs.rmSync(probe);
  } catch (e) {
    try { fs.rmSync(probe, { force: true }); } catch { /* nothing written */ }
    throw writeFailure(dir, e);
  }
}
