// The synthetic penny generator: its exact glyph boxes against the drawn angle, the ROIs and the inked pixels, and
// byte-identical output whatever the number of render workers.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { compose, type Job, type Quad } from '../scripts/synth-pennies.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const S = 256;
const obverse = (n: number): Job => ({ uid: `UID${String(n).padStart(6, '0')}.jpg`, kind: 'obverse', year: 1987, mint: 'D' });

function glyphsAt(job: Job, angle?: number): { date: Quad; mint: Quad } {
  const g = compose(job, S, 7, angle).glyphs;
  expect(g).not.toBeNull();
  return g!;
}

/** Unit vector from corner 0 to corner 1: the reading direction. */
function reading(q: Quad): [number, number] {
  const dx = q[1][0] - q[0][0];
  const dy = q[1][1] - q[0][1];
  const n = Math.hypot(dx, dy);
  return [dx / n, dy / n];
}

/** Signed distance (px) of a point inside the convex quad (corners clockwise on screen): < 0 outside. */
function depth(q: Quad, x: number, y: number): number {
  let d = Infinity;
  for (let j = 0; j < 4; j++) {
    const [ax, ay] = q[j];
    const [bx, by] = q[(j + 1) % 4];
    d = Math.min(d, ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / Math.hypot(bx - ax, by - ay));
  }
  return d;
}

describe('synth-pennies glyph boxes', () => {
  it('are upright boxes reading +x at angle 0, up (-y) at 90, and turn counter-clockwise with the angle', () => {
    for (let n = 1; n <= 5; n++) {
      for (const q of Object.values(glyphsAt(obverse(n), 0))) {
        const [[x0, y0], [x1, y1], [x2, y2], [x3, y3]] = q;
        expect(y1).toBeCloseTo(y0, 9);
        expect(x2).toBeCloseTo(x1, 9);
        expect(y3).toBeCloseTo(y2, 9);
        expect(x3).toBeCloseTo(x0, 9);
        expect(x1).toBeGreaterThan(x0);
        expect(y3).toBeGreaterThan(y0);
        const [dx, dy] = reading(q);
        expect(dx).toBeCloseTo(1, 9);
        expect(dy).toBeCloseTo(0, 9);
      }
      for (const q of Object.values(glyphsAt(obverse(n), 90))) {
        const [dx, dy] = reading(q);
        expect(dx).toBeCloseTo(0, 9);
        expect(dy).toBeCloseTo(-1, 9);
      }
      for (const a of [30, 135, 222.5, 300]) {
        const [dx, dy] = reading(glyphsAt(obverse(n), a).date);
        const t = (a * Math.PI) / 180;
        expect(dx).toBeCloseTo(Math.cos(t), 9);
        expect(dy).toBeCloseTo(-Math.sin(t), 9);
      }
    }
  });

  it('include half the stroke but not the ROI padding, and lie inside the ROIs at the drawn angles', () => {
    const q = glyphsAt(obverse(1), 0).date;
    const roi = compose(obverse(1), S, 7, 0).rois!.date_roi;
    // unpadded: strictly inside the padded ROI (by ROI_PAD - half stroke coin units, over a pixel at this size)
    expect(q[0][0] - roi.x).toBeGreaterThan(1);
    expect(roi.x + roi.width - q[1][0]).toBeGreaterThan(1);
    for (let n = 1; n <= 40; n++) {
      const job: Job = { ...obverse(n), mint: n % 2 ? 'S' : 'nomint' };
      const r = compose(job, S, 11);
      for (const [quad, box] of [[r.glyphs!.date, r.rois!.date_roi], [r.glyphs!.mint, r.rois!.mint_mark_roi]] as const) {
        for (const [x, y] of quad) {
          expect(x).toBeGreaterThanOrEqual(box.x - 1);
          expect(x).toBeLessThanOrEqual(box.x + box.width + 1);
          expect(y).toBeGreaterThanOrEqual(box.y - 1);
          expect(y).toBeLessThanOrEqual(box.y + box.height + 1);
        }
      }
    }
    expect(compose({ uid: 'UID000001.jpg', kind: 'wheat', year: 0, mint: 'nomint' }, S, 7).glyphs).toBeNull();
  });

  it('hold every pixel the glyph strokes ink', async () => {
    for (const [n, angle] of [[1, 0], [2, 90], [3, 37.5], [4, 211.3]]) {
      const r = compose(obverse(n), S, 7, angle);
      const coinT = /<g transform="(translate\([^)]*\) rotate\([^)]*\) scale\([^)]*\))">/.exec(r.svg)![1];
      // date and mint-mark strokes of each of the three relief copies (shadow, highlight, face): the face's are the last
      const [date, mint] = [...r.svg.matchAll(/<g fill="none" stroke="[^"]*" stroke-width="1.4"[^>]*>(.*?)<\/g>/g)].slice(-2).map((m) => m[1]);
      for (const [paths, quad] of [[date, r.glyphs!.date], [mint, r.glyphs!.mint]] as const) {
        const svg =
          `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}"><rect width="${S}" height="${S}"/>` +
          `<g transform="${coinT}" fill="none" stroke="#fff" stroke-width="1.4" stroke-linecap="round" stroke-linejoin="round">${paths}</g></svg>`;
        const px = await sharp(Buffer.from(svg)).extractChannel(0).raw().toBuffer();
        let inked = 0;
        let worst = Infinity;
        px.forEach((v, i) => {
          if (v === 0) return;
          inked++;
          worst = Math.min(worst, depth(quad, (i % S) + 0.5, Math.floor(i / S) + 0.5));
        });
        expect(inked).toBeGreaterThan(40);
        // a pixel the antialiasing touches has its centre within half a diagonal of the ink
        expect(worst).toBeGreaterThan(-Math.SQRT1_2 - 0.05);
      }
    }
  });
});

describe('synth-pennies output', () => {
  it('is byte-identical with 1 and 2 render workers', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-synth-'));
    const files = (conc: number): Map<string, Buffer> => {
      const out = path.join(tmp, `c${conc}`);
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'scripts', 'synth-pennies.ts'), '--count', '6', '--out', out, '--seed', '5', '--concurrency', String(conc)],
        { cwd: ROOT, encoding: 'utf8' },
      );
      // 6 images leave some split empty, so the split check may fail (status 1); the summary line comes after writing
      expect(r.stdout + r.stderr).toMatch(/synth-pennies: 6 images/);
      return new Map(fs.readdirSync(out).sort().map((n) => [n, fs.readFileSync(path.join(out, n))]));
    };
    const a = files(1);
    const b = files(2);
    expect([...a.keys()]).toEqual([...Array.from({ length: 6 }, (_, i) => `UID00000${i + 1}.jpg`), 'metadata.json', 'roi_coordinates.json']);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [n, buf] of a) expect(buf.equals(b.get(n)!), n).toBe(true);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});
