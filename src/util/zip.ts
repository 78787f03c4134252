// Checks a zip archive (what torch.save writes) end to end before anything reads it: LibTorch's reader does not
// check CRCs, so a flipped byte in a tensor trained on silently and a truncated file could read past its end.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { UsageError } from '../errors.js';

/** A zip that fails a check; `detail` is the message without the file's name, for callers that name it their way. */
export class ZipError extends UsageError {
  constructor(readonly file: string, readonly detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'ZipError';
  }
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const DESCRIPTOR = 0x08074b50;
const CHUNK = 4 << 20;

interface Entry {
  name: string;
  flags: number;
  method: number;
  crc: number;
  csize: number;
  usize: number;
  offset: number;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/**
 * Throws a ZipError (a UsageError) unless `file` is a well-formed single-disk zip whose entries all lie inside it,
 * do not overlap, agree between central and local headers, and match their CRC-32. Stored entries (method 0, what
 * torch.save writes) are checked in chunks; deflated ones (method 8) are inflated in memory and checked.
 */
export function verifyZip(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new ZipError(file, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    check(file, fd);
  } finally {
    fs.closeSync(fd);
  }
}

function check(file: string, fd: number): void {
  const size = fs.fstatSync(fd).size;
  const fail = (detail: string): never => {
    throw new ZipError(file, detail);
  };
  const read = (pos: number, len: number, what: string): Buffer => {
    if (pos < 0 || len < 0 || pos + len > size) fail(`${what} (bytes ${pos}..${pos + len}) lies past the end of the file (${size} bytes): the file is truncated or corrupt`);
    const b = Buffer.alloc(len);
    if (fs.readSync(fd, b, 0, len, pos) !== len) fail(`short read of ${what} at byte ${pos}`);
    return b;
  };

  // End of central directory: the last 22 bytes plus a comment of up to 64 KiB.
  const tailLen = Math.min(size, 22 + 0xffff);
  const tail = read(size - tailLen, tailLen, 'the end of the archive');
  let e = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) === tailLen) {
      e = i;
      break;
    }
  }
  if (e < 0) fail('not a zip archive (no end-of-central-directory record): the file is truncated or not a torch.save file');
  const eocdPos = size - tailLen + e;
  if (tail.readUInt16LE(e + 4) !== 0 || tail.readUInt16LE(e + 6) !== 0) fail('a multi-disk zip archive is not supported');
  let count = tail.readUInt16LE(e + 10);
  let cdSize = tail.readUInt32LE(e + 12);
  let cdOffset = tail.readUInt32LE(e + 16);
  let cdLimit = eocdPos;   // where the central directory must end
  // torch writes zip64 records (always, in current versions); their figures replace the 16/32-bit ones.
  if (eocdPos >= 20) {
    const loc = read(eocdPos - 20, 20, 'the zip64 locator');
    if (loc.readUInt32LE(0) === ZIP64_LOCATOR) {
      const at = Number(loc.readBigUInt64LE(8));
      const z = read(at, 56, 'the zip64 end-of-central-directory record');
      if (z.readUInt32LE(0) !== ZIP64_EOCD) fail(`the zip64 locator points at byte ${at}, where there is no zip64 end-of-central-directory record`);
      if (at + 56 > eocdPos - 20) fail('the zip64 end-of-central-directory record overlaps its locator');
      count = Number(z.readBigUInt64LE(32));
      cdSize = Number(z.readBigUInt64LE(40));
      cdOffset = Number(z.readBigUInt64LE(48));
      cdLimit = at;
    }
  }
  if (cdOffset + cdSize > cdLimit) fail(`the central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past its end record at byte ${cdLimit}: the file is truncated or corrupt`);
  const cd = read(cdOffset, cdSize, 'the central directory');

  const entries: Entry[] = [];
  const names = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) fail(`central directory entry ${i} of ${count} is missing or corrupt`);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) fail(`central directory entry ${i} runs past the central directory`);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    const entry: Entry = {
      name, flags: cd.readUInt16LE(p + 8), method: cd.readUInt16LE(p + 10), crc: cd.readUInt32LE(p + 16),
      csize: cd.readUInt32LE(p + 20), usize: cd.readUInt32LE(p + 24), offset: cd.readUInt32LE(p + 42),
    };
    applyZip64(entry, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), fail);
    if (names.has(name)) fail(`entry '${name}' appears twice`);
    names.add(name);
    entries.push(entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  if (p !== cd.length) fail(`the central directory holds ${cd.length - p} bytes after its ${count} entries: the file is corrupt`);

  // Each entry's span: local header, name, extra field, data and (flag bit 3) the data descriptor after it.
  const spans: { start: number; end: number; name: string }[] = [];
  for (const en of entries) {
    const where = `entry '${en.name}'`;
    if (en.flags & 1) fail(`${where} is encrypted`);
    if (en.method !== 0 && en.method !== 8) fail(`${where} uses compression method ${en.method}; only stored (0) and deflated (8) entries are read`);
    const local = read(en.offset, 30, `the local header of ${where}`);
    if (local.readUInt32LE(0) !== LOCAL) fail(`${where}: no local header at byte ${en.offset}: the file is corrupt`);
    const nameLen = local.readUInt16LE(26);
    const extraLen = local.readUInt16LE(28);
    const localName = read(en.offset + 30, nameLen, `the name of ${where}`).toString('utf8');
    if (localName !== en.name) fail(`${where}: its local header names it '${localName}': the file is corrupt`);
    if (local.readUInt16LE(8) !== en.method) fail(`${where}: its local and central headers disagree on the compression method`);
    // With flag bit 3 the local CRC and sizes may be zero (they follow the data in a descriptor); zip64 sizes are
    // 0xffffffff here. Anything else must repeat the central header.
    const deferred = (local.readUInt16LE(6) & 8) !== 0;
    const agrees = (v: number, want: number, size: boolean) => v === want || (deferred && v === 0) || (size && v === 0xffffffff);
    if (!agrees(local.readUInt32LE(14), en.crc, false) || !agrees(local.readUInt32LE(18), en.csize, true) || !agrees(local.readUInt32LE(22), en.usize, true)) {
      fail(`${where}: its local and central headers disagree on the CRC or sizes: the file is corrupt`);
    }
    const dataStart = en.offset + 30 + nameLen + extraLen;
    const dataEnd = dataStart + en.csize;
    if (dataEnd > size) fail(`${where}: its data (bytes ${dataStart}..${dataEnd}) runs past the end of the file (${size} bytes): the file is truncated`);
    const end = deferred ? dataEnd + descriptorLength(en, read, dataEnd, fail) : dataEnd;
    spans.push({ start: en.offset, end, name: en.name });
    const crc = en.method === 0 ? crcOf(fd, dataStart, en.csize) : inflatedCrc(en, read(dataStart, en.csize, `the data of ${where}`), fail);
    if (crc !== en.crc) fail(`${where} fails its CRC-32 check (stored ${hex(en.crc)}, computed ${hex(crc)}): the file is corrupt`);
  }
  spans.sort((a, b) => a.start - b.start);
  for (let i = 0; i < spans.length; i++) {
    const next = i + 1 < spans.length ? spans[i + 1] : { start: cdOffset, name: '' };
    if (spans[i].end > next.start) {
      fail(`entry '${spans[i].name}' (bytes ${spans[i].start}..${spans[i].end}) overlaps ${next.name ? `entry '${next.name}'` : 'the central directory'} at byte ${next.start}: the file is corrupt`);
    }
  }
}

/** Replaces 0xffffffff sizes/offset with the zip64 extra field's 64-bit values (in the spec's order). */
function applyZip64(en: Entry, extra: Buffer, fail: (d: string) => never): void {
  const wanted = (['usize', 'csize', 'offset'] as const).filter((k) => en[k] === 0xffffffff);
  if (!wanted.length) return;
  for (let p = 0; p + 4 <= extra.length;) {
    const id = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    if (id === 1) {
      if (len < wanted.length * 8 || p + 4 + len > extra.length) break;
      wanted.forEach((k, i) => (en[k] = Number(extra.readBigUInt64LE(p + 4 + i * 8))));
      return;
    }
    p += 4 + len;
  }
  fail(`entry '${en.name}' has 32-bit sizes marked zip64 but no valid zip64 extra field: the file is corrupt`);
}

/** The data descriptor's length (optional signature, CRC, 32- or 64-bit sizes); it must repeat the central CRC and sizes. */
function descriptorLength(en: Entry, read: (pos: number, len: number, what: string) => Buffer, at: number,
  fail: (d: string) => never): number {
  const what = `the data descriptor of entry '${en.name}'`;
  const sig = read(at, 4, what).readUInt32LE(0) === DESCRIPTOR ? 4 : 0;
  const crc = read(at + sig, 4, what).readUInt32LE(0);
  if (crc !== en.crc) fail(`${what} holds CRC ${hex(crc)}, the central directory ${hex(en.crc)}: the file is corrupt`);
  const small = en.csize < 2 ** 32 && en.usize < 2 ** 32 ? read(at + sig + 4, 8, what) : undefined;
  if (small && small.readUInt32LE(0) === en.csize && small.readUInt32LE(4) === en.usize) return sig + 12;
  const big = read(at + sig + 4, 16, what);
  if (Number(big.readBigUInt64LE(0)) === en.csize && Number(big.readBigUInt64LE(8)) === en.usize) return sig + 20;
  return fail(`${what} does not repeat the entry's sizes: the file is corrupt`);
}

function crcOf(fd: number, start: number, length: number): number {
  const buf = Buffer.alloc(Math.min(CHUNK, length));
  let crc = 0;
  for (let done = 0; done < length;) {
    const n = fs.readSync(fd, buf, 0, Math.min(buf.length, length - done), start + done);
    if (n <= 0) break;   // cannot happen: the span was checked against the file's size
    crc = zlib.crc32(buf.subarray(0, n), crc);
    done += n;
  }
  return crc;
}

function inflatedCrc(en: Entry, data: Buffer, fail: (d: string) => never): number {
  let out: Buffer;
  try {
    out = zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, en.usize) });
  } catch (e) {
    return fail(`entry '${en.name}' does not inflate (${(e as Error).message}): the file is corrupt`);
  }
  if (out.length !== en.usize) fail(`entry '${en.name}' inflates to ${out.length} bytes, not the ${en.usize} its header says: the file is corrupt`);
  return zlib.crc32(out);
}
