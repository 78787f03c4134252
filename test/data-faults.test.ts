// Faults in a dataset that must not pass silently: uids that leave data_root, one file under two spellings, one
// picture under two uids, contradictory fields, and EXIF orientation (a phone photo must not decode sideways).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadConfig, type ModelKey, type TrainingConfig } from '../src/config/config.js';
import { buildIndex, type DatasetIndex } from '../src/data/dataset.js';
import { decode } from '../src/data/images.js';
import { splitOf, type Split } from '../src/data/split.js';
import { DataError } from '../src/errors.js';
import { ROOT } from './helpers.js';

const CONFIG = path.join(ROOT, 'configs', 'training_config.yaml');
const OBVERSE = { side: 'obverse', angle: 0, year: 1990, mint_mark: 'D' };
const ROIS = { date_roi: { x: 1, y: 1, width: 8, height: 8 }, mint_mark_roi: { x: 2, y: 2, width: 6, height: 6 } };

let colour = 0;
/** A small solid PNG of a colour no other call gives: no two images share bytes unless a test makes them. */
function png(): Promise<Buffer> {
  colour++;
  return sharp({ create: { width: 16, height: 16, channels: 3, background: { r: colour % 256, g: colour >> 8, b: 77 } } }).png().toBuffer();
}

/** The `skip`-th uid `<prefix><i>.png` that the UID hash puts in `split`. */
function uidIn(split: Split, prefix: string, skip = 0): string {
  for (let i = 0; ; i++) {
    const uid = `${prefix}${i}.png`;
    if (splitOf(uid) === split && skip-- === 0) return uid;
  }
}

/**
 * A dataset in a temp dir: `dir/data` is data_root, `images` are written at their paths relative to it (`../x`
 * lands beside it), then `prepare` may add links; `dir/metadata.json` (`metadata` may be made from data_root's path)
 * and `dir/rois.json`. A train and a val filler sample keep the splits non-empty.
 */
async function dataset(model: ModelKey, metadata: object[] | ((root: string) => object[]), images: Record<string, Buffer>,
  rois: Record<string, unknown> = {}, prepare: (root: string) => void = () => {}): Promise<TrainingConfig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-faults-'));
  const root = path.join(dir, 'data');
  fs.mkdirSync(root);
  const fillers = [uidIn('train', 'fill'), uidIn('val', 'fill')];
  for (const uid of fillers) fs.writeFileSync(path.join(root, uid), await png());
  for (const [name, bytes] of Object.entries(images)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), bytes);
  }
  prepare(root);
  if (typeof metadata === 'function') metadata = metadata(root);
  const allRois = { ...Object.fromEntries(fillers.map((u) => [u.replace(/\.png$/, ''), ROIS])), ...rois };
  fs.writeFileSync(path.join(dir, 'metadata.json'), JSON.stringify([...fillers.map((uid) => ({ uid, ...OBVERSE })), ...metadata]));
  fs.writeFileSync(path.join(dir, 'rois.json'), JSON.stringify(allRois));
  return { ...loadConfig(model, CONFIG), data_root: root, metadata_json_path: path.join(dir, 'metadata.json'), roi_json_path: path.join(dir, 'rois.json') };
}

async function errorOf(cfg: TrainingConfig): Promise<string> {
  let index: DatasetIndex;
  try {
    index = await buildIndex(cfg);
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return (e as Error).message;
  }
  throw new Error(`no DataError; indexed ${JSON.stringify(index)}`);
}

const all = (index: DatasetIndex) => [...index.train, ...index.val, ...index.test];

describe('uids stay inside data_root', () => {
  const SECRET = '../outside/secret.png';   // a decodable image beside data_root

  it('refuses a uid that climbs out with ..', async () => {
    const cfg = await dataset('side', [
      { uid: SECRET, side: 'reverse', type: 'wheat' },
      { uid: 'sub/../../outside/secret.png', side: 'reverse', type: 'wheat' },
    ], { [SECRET]: await png() });
    const msg = await errorOf(cfg);
    expect(msg).toMatch(/\(2 problems\)/);
    expect(msg).toMatch(/metadata\.json: UID \.\.\/outside\/secret\.png: leads outside data_root/);
    expect(msg).toMatch(/metadata\.json: UID sub\/\.\.\/\.\.\/outside\/secret\.png: leads outside data_root/);
  });

  it('refuses an absolute uid, even one that names a file inside data_root', async () => {
    const cfg = await dataset('side', (root) => [
      { uid: path.join(root, SECRET), side: 'reverse', type: 'wheat' },
      { uid: path.join(root, 'in.png'), side: 'reverse', type: 'wheat' },
    ], { [SECRET]: await png(), 'in.png': await png() });
    const [abs, inRoot] = [path.join(cfg.data_root, SECRET), path.join(cfg.data_root, 'in.png')];
    const msg = await errorOf(cfg);
    expect(msg).toMatch(/\(2 problems\)/);
    expect(msg).toContain(`UID ${abs}: is an absolute path`);
    expect(msg).toContain(`UID ${inRoot}: is an absolute path`);
  });

  it('refuses a symlink (to a file or through a folder) whose real path lies outside, and takes one that stays inside', async () => {
    const cfg = await dataset('side', [
      { uid: 'link.png', side: 'reverse', type: 'wheat' },
      { uid: 'linked-dir/secret.png', side: 'reverse', type: 'shield' },
      { uid: 'inner.png', side: 'reverse', type: 'memorial' },
    ], { [SECRET]: await png(), 'deep/real.png': await png() }, {}, (root) => {
      fs.symlinkSync(path.join(root, SECRET), path.join(root, 'link.png'));
      fs.symlinkSync(path.join(root, '..', 'outside'), path.join(root, 'linked-dir'));
      fs.symlinkSync(path.join(root, 'deep', 'real.png'), path.join(root, 'inner.png'));
    });
    const msg = await errorOf(cfg);
    expect(msg).toMatch(/\(2 problems\)/);
    expect(msg).toMatch(/UID link\.png: image .*link\.png resolves to .*outside\/secret\.png, outside data_root/);
    expect(msg).toMatch(/UID linked-dir\/secret\.png: image .* resolves to .*outside\/secret\.png, outside data_root/);
    expect(msg).not.toContain('inner.png');
  });
});

describe('one file under two spellings is one sample', () => {
  const uid = uidIn('train', 'UID');

  it('with the same labels: indexed once, under the normalised uid, with a warning', async () => {
    const cfg = await dataset('date', [
      { uid, ...OBVERSE },
      { uid: `./${uid}`, ...OBVERSE },
      { uid: `sub/../${uid}`, ...OBVERSE },
    ], { [uid]: await png() }, { [uid.replace(/\.png$/, '')]: ROIS });   // the ROI is found by the normalised stem
    const index = await buildIndex(cfg);
    expect(all(index).filter((s) => s.uid === uid)).toHaveLength(1);
    expect(all(index)).toHaveLength(3);   // two fillers and this one
    expect(index.warnings).toEqual([
      `${cfg.metadata_json_path}: UID ${uid}: listed as "${uid}" and "./${uid}" with the same labels; indexed once`,
      `${cfg.metadata_json_path}: UID ${uid}: listed as "${uid}" and "sub/../${uid}" with the same labels; indexed once`,
    ]);
  });

  it('split by the normalised uid', async () => {
    // './x' hashes elsewhere than 'x' for some x: find one, so a split by the spelling would show
    const odd = Array.from({ length: 200 }, (_, i) => `V${i}.png`).find((u) => splitOf(`./${u}`) !== splitOf(u))!;
    const cfg = await dataset('side', [{ uid: `./${odd}`, side: 'reverse', type: 'wheat' }], { [odd]: await png() });
    const index = await buildIndex(cfg);
    expect(index[splitOf(odd)].map((s) => s.uid)).toContain(odd);
    expect(index.warnings).toEqual([]);
  });

  it('with other labels: a problem naming both spellings and the fields that differ', async () => {
    const cfg = await dataset('side', [
      { uid, ...OBVERSE },
      { uid: `./${uid}`, ...OBVERSE, year: 1991, mint_mark: 'S' },
    ], { [uid]: await png() });
    const msg = await errorOf(cfg);
    expect(msg).toMatch(/\(1 problem\)/);
    expect(msg).toContain(`UID ${uid}: listed as "${uid}" and "./${uid}" with different year 1990 vs 1991, mint_mark "D" vs "S"`);
  });
});

describe('one picture under two uids', () => {
  it('in two splits: a problem naming both uids and their splits', async () => {
    const [a, b] = [uidIn('train', 'same'), uidIn('test', 'same')];
    const bytes = await png();
    const msg = await errorOf(await dataset('side', [
      { uid: a, side: 'reverse', type: 'wheat' },
      { uid: b, side: 'reverse', type: 'wheat' },
    ], { [a]: bytes, [b]: bytes }));
    expect(msg).toMatch(/\(1 problem\)/);
    expect(msg).toContain(`the same image under UIDs ${a} (train), ${b} (test): one picture in two splits leaks between them`);
  });

  it('in one split: a warning', async () => {
    const [a, b] = [uidIn('train', 'same'), uidIn('train', 'same', 1)];
    const bytes = await png();
    const index = await buildIndex(await dataset('side', [
      { uid: a, side: 'reverse', type: 'wheat' },
      { uid: b, side: 'reverse', type: 'wheat' },
    ], { [a]: bytes, [b]: bytes }));
    expect(index.train.map((s) => s.uid)).toEqual(expect.arrayContaining([a, b]));
    expect(index.warnings).toEqual([`the same image under UIDs ${a} (train), ${b} (train)`]);
  });
});

describe('contradictory fields', () => {
  it('an obverse with a reverse type is a problem; a reverse with a year is not a contradiction', async () => {
    const msg = await errorOf(await dataset('side', [
      { uid: 'o.png', side: 'obverse', type: 'wheat', angle: 10 },
      { uid: 'r.png', side: 'reverse', type: 'wheat', year: 1950, mint_mark: 'D' },
    ], { 'o.png': await png(), 'r.png': await png() }));
    expect(msg).toMatch(/\(1 problem\)/);
    expect(msg).toMatch(/metadata\.json: UID o\.png: type "wheat" is a reverse type, but side is obverse/);
  });
});

describe('EXIF orientation', () => {
  // Stored 40 x 20, blue, a red block top-left and a green one bottom-left. Orientation 6 displays it turned 90
  // degrees clockwise: 20 x 40, red top-right and green top-left (orientation 8 would put red bottom-left).
  const W = 40, H = 20;
  async function phoneJpeg(): Promise<Buffer> {
    const raw = Buffer.alloc(W * H * 3);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const rgb = x < 10 && y < 6 ? [230, 20, 20] : x < 10 && y >= 14 ? [20, 230, 20] : [20, 20, 230];
        raw.set(rgb, (y * W + x) * 3);
      }
    }
    return sharp(raw, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .withMetadata({ orientation: 6 }).toBuffer();
  }
  const uid = uidIn('train', 'phone');
  const colourAt = (d: { data: Uint8Array; width: number }, x: number, y: number) => {
    const p = (Math.floor(y) * d.width + Math.floor(x)) * 3;
    const [r, g, b] = d.data.subarray(p, p + 3);
    return r > 150 && g < 100 && b < 100 ? 'red' : g > 150 && r < 100 && b < 100 ? 'green' : b > 150 && r < 100 && g < 100 ? 'blue' : `${r},${g},${b}`;
  };

  it('the whole image decodes as displayed, and its size is the displayed size', async () => {
    const bytes = await phoneJpeg();
    expect((await sharp(bytes).metadata()).orientation).toBe(6);
    const cfg = await dataset('side', [{ uid, side: 'reverse', type: 'wheat' }], { [uid]: bytes });
    const s = (await buildIndex(cfg)).train.find((x) => x.uid === uid)!;
    expect([s.width, s.height]).toEqual([H, W]);
    const d = await decode(s, { width: H, height: W, fit: 'cover', mean: cfg.mean, std: cfg.std });
    const [kx, ky] = [d.width / H, d.height / W];   // decoded pixels per displayed pixel
    expect(kx).toBeCloseTo(ky);
    expect(colourAt(d, 17 * kx, 4 * ky)).toBe('red');     // displayed top-right
    expect(colourAt(d, 2 * kx, 4 * ky)).toBe('green');    // displayed top-left
    expect(colourAt(d, 10 * kx, 30 * ky)).toBe('blue');
    expect(colourAt(d, 2 * kx, 36 * ky)).toBe('blue');    // where red lies with orientation 8
  });

  it('the ROI crop is cut from the displayed image, in its coordinates', async () => {
    // red in the displayed frame: x 14..19, y 0..9; in the stored frame that box is blue
    const cfg = await dataset('date', [{ uid, ...OBVERSE }], { [uid]: await phoneJpeg() },
      { [uid.replace(/\.png$/, '')]: { date_roi: { x: 14, y: 0, width: 6, height: 10 } } });
    const s = (await buildIndex(cfg)).train.find((x) => x.uid === uid)!;
    expect(s.crop).toEqual({ x: 13, y: 0, width: 7, height: 11 });
    const d = await decode(s, { width: 16, height: 16, fit: 'letterbox', mean: cfg.mean, std: cfg.std });
    expect(colourAt(d, d.width * 0.6, d.height * 0.45)).toBe('red');
  });
});

describe('data_root', () => {
  it('a data_root that is missing or a file is one message, not one per image', async () => {
    const cfg = await dataset('side', [], {});
    expect(await errorOf({ ...cfg, data_root: path.join(cfg.data_root, 'nope') })).toMatch(/^data_root .*nope \(the side section's\) does not exist$/);
    expect(await errorOf({ ...cfg, data_root: cfg.metadata_json_path })).toMatch(/^data_root .*metadata\.json \(the side section's\) is not a folder$/);
  });
});
