// Synthetic US one-cent generator: writes JPEG pennies plus metadata.json / roi_coordinates.json in the dataset format
// penny-train reads (ARCHITECTURE.md, "Data").
//
//   node --import tsx scripts/synth-pennies.ts --count 5000 --out DIR --seed N [--size 256] [--metadata-dir DIR]
//        [--obverse 0.6] [--year-min 1909] [--year-max 2024] [--concurrency N]
//   node --import tsx scripts/synth-pennies.ts --check --out DIR [--metadata-dir DIR]     (split counts only)
//
// Each coin is composed as SVG in "coin units" (centre 0,0, radius 100, y down), rasterised by sharp (librsvg), then
// blurred, given Gaussian noise and JPEG-encoded. Everything is drawn from seeded streams (one per image, keyed by its
// uid), so the same seed gives byte-identical files whatever the concurrency. The glyphs that decide labels (year digits
// and mint mark) are our own stroke paths, never font text, so they look the same on every machine.
//
// --concurrency N (default: the available cores) renders in N worker threads, each given a next job as it finishes
// one; the main thread only hands out jobs and writes the metadata in job order. librsvg's rasterising is most of the
// time (~40 of ~55 ms a 256 px coin on one core; the JPEG noise ~11): 2 cores make ~35 coins/s. sharp runs on libuv's
// pool, 4 threads unless UV_THREADPOOL_SIZE is set before node starts: past 4 workers, set it to twice their number.
//
// `angle` (obverse) is the counter-clockwise rotation of the coin in the image, degrees in [0, 360): at 0 the bust is
// upright, at 90 its top points left. date_roi / mint_mark_roi are the axis-aligned bounding boxes (integer pixels,
// clipped to the image) of the rotated year / mint-mark glyph boxes; 'nomint' coins get the box where a mark would be.
// compose() also returns those glyph boxes exactly (`glyphs`, for tests): rotated corners, the stroke's reach but no
// ROI padding.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { MINT_MARKS, type REVERSE_TYPES } from '../src/data/labels.js';
import { splitOf } from '../src/data/split.js';
import { Rng, hashSeed } from '../src/util/rng.js';

type Side = 'obverse' | 'reverse';
type ReverseType = (typeof REVERSE_TYPES)[number];
type Mint = (typeof MINT_MARKS)[number];
/** the order reverses are dealt to the images (not the label order: changing it would change every generated set) */
const DESIGN_CYCLE: ReverseType[] = ['wheat', 'memorial', 'bicentennial', 'shield'];
const MINTS: readonly Mint[] = MINT_MARKS;

interface Meta {
  uid: string;
  side: Side;
  type?: ReverseType;
  angle?: number;
  year?: number;
  mint_mark?: Mint;
}
interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}
interface Rois {
  date_roi: Box;
  mint_mark_roi: Box;
}
export interface Job {
  uid: string;
  kind: ReverseType | 'obverse';
  year: number;
  mint: Mint;
}

// ---------------------------------------------------------------- stroke font (cell 6 x 10, y down)
const GLYPHS: Record<string, string> = {
  '0': 'M3,0 Q6,0 6,3.2 L6,6.8 Q6,10 3,10 Q0,10 0,6.8 L0,3.2 Q0,0 3,0 Z',
  '1': 'M1.2,2.2 L3.6,0 L3.6,10 M1.4,10 L5.8,10',
  '2': 'M0.4,2.6 Q0.6,0 3,0 Q5.7,0 5.7,2.6 Q5.7,4.6 3.2,6.6 L0.2,10 L6,10',
  '3': 'M0.6,1.2 Q1.6,0 3,0 Q5.6,0 5.6,2.5 Q5.6,4.7 2.6,4.7 Q6,4.7 6,7.3 Q6,10 3,10 Q1,10 0.2,8.6',
  '4': 'M4.4,10 L4.4,0 L0,7 L6,7',
  '5': 'M5.6,0 L1,0 L0.5,4.6 Q1.6,3.8 3.2,3.8 Q6,3.8 6,6.9 Q6,10 3,10 Q1,10 0.2,8.6',
  '6': 'M5.2,0.9 Q4.3,0 3,0 Q0,0 0,5.5 L0,6.9 Q0,10 3,10 Q6,10 6,7 Q6,4 3,4 Q0.6,4 0,6',
  '7': 'M0,0 L6,0 Q3.2,4 2.2,10',
  '8': 'M3,4.6 Q0.5,4.6 0.5,2.3 Q0.5,0 3,0 Q5.5,0 5.5,2.3 Q5.5,4.6 3,4.6 Q0,4.6 0,7.3 Q0,10 3,10 Q6,10 6,7.3 Q6,4.6 3,4.6 Z',
  '9': 'M0.8,9.1 Q1.7,10 3,10 Q6,10 6,4.5 L6,3.1 Q6,0 3,0 Q0,0 0,3 Q0,6 3,6 Q5.4,6 6,4',
  D: 'M0.5,0 L0.5,10 L2.4,10 Q6,10 6,5 Q6,0 2.4,0 Z',
  S: 'M5.4,1.3 Q4.6,0 3,0 Q0.4,0 0.4,2.5 Q0.4,4.3 3,5 Q5.8,5.7 5.8,7.6 Q5.8,10 3,10 Q1.1,10 0.2,8.5',
  P: 'M0.5,10 L0.5,0 L3.2,0 Q5.8,0 5.8,2.7 Q5.8,5.4 3.2,5.4 L0.5,5.4',
};
const CELL_W = 6;
const CELL_H = 10;
const GLYPH_STROKE = 1.4; // cell units

// Layout of the label glyphs on the obverse, coin units (radius 100). Small per-coin jitter is added.
const DATE = { x: 34, y: 26, h: 15, advance: 10.5 };
const MINT = { h: 12, gap: 5 };
const ROI_PAD = 2.5; // coin units around the glyph box: stroke half-width and relief

// ---------------------------------------------------------------- small helpers
const f = (v: number): string => (Math.round(v * 100) / 100).toString();
const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));
type RGB = [number, number, number];
const rgb = (c: RGB, k = 1): string =>
  `rgb(${c.map((v) => Math.round(clamp(v * k, 0, 255))).join(',')})`;
const mix = (a: RGB, b: RGB, t: number): RGB => [0, 1, 2].map((i) => a[i] + (b[i] - a[i]) * t) as RGB;
const uni = (r: Rng, lo: number, hi: number): number => lo + (hi - lo) * r.next();
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)];

function shuffle<T>(r: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r.next() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

function charW(ch: string): number {
  if (ch === ' ') return 0.36;
  if ('IJ1.,'.includes(ch)) return 0.46;
  if ('MW'.includes(ch)) return 0.98;
  return 0.74;
}

const FONT = `font-family="DejaVu Serif" font-weight="bold"`;

/** Letters one by one along a circle; top text reads clockwise, bottom text reads anticlockwise (both left to right). */
function arcText(text: string, R: number, centerDeg: number, fs: number, color: string, bottom = false): string {
  const w = [...text].map((c) => (charW(c) + 0.08) * fs);
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  let out = '';
  [...text].forEach((ch, i) => {
    const mid = acc + w[i] / 2;
    acc += w[i];
    if (ch === ' ') return;
    const off = ((mid - total / 2) / R) * (180 / Math.PI);
    const th = bottom ? centerDeg - off : centerDeg + off;
    const rot = bottom ? th - 90 : th + 90;
    const a = (th * Math.PI) / 180;
    out += `<text transform="translate(${f(R * Math.cos(a))} ${f(R * Math.sin(a))}) rotate(${f(rot)})" text-anchor="middle" font-size="${fs}" ${FONT} fill="${color}">${ch}</text>`;
  });
  return out;
}

/** Straight text with a fixed advance per letter (keeps widths independent of the installed font). */
function lineText(text: string, cx: number, y: number, fs: number, color: string): string {
  const w = [...text].map((c) => (charW(c) + 0.06) * fs);
  const total = w.reduce((a, b) => a + b, 0);
  let acc = -total / 2;
  let out = '';
  [...text].forEach((ch, i) => {
    const mid = acc + w[i] / 2;
    acc += w[i];
    if (ch !== ' ')
      out += `<text x="${f(cx + mid)}" y="${f(y)}" text-anchor="middle" font-size="${fs}" ${FONT} fill="${color}">${ch}</text>`;
  });
  return out;
}

function glyphs(str: string, x: number, y: number, h: number, advance: number, color: string): string {
  const s = h / CELL_H;
  let d = '';
  [...str].forEach((ch, i) => {
    d += `<path transform="translate(${f(x + i * advance)} ${f(y)}) scale(${f(s)})" d="${GLYPHS[ch]}"/>`;
  });
  return `<g fill="none" stroke="${color}" stroke-width="${f(GLYPH_STROKE)}" stroke-linecap="round" stroke-linejoin="round">${d}</g>`;
}

// ---------------------------------------------------------------- designs (coin units)
interface Design {
  /** raised parts, drawn three times: shadow, highlight, face */
  relief: (c: string) => string;
  /** incised lines over the face */
  detail: (c: string) => string;
}

const BUST =
  'M-40,78 C-42,60 -36,48 -30,38 C-32,25 -36,12 -38,-2 C-44,-30 -30,-58 -2,-60 C22,-61 34,-48 36,-32 ' +
  'L37,-24 L46,-12 L38,-8 L39,-2 C41,8 36,18 26,22 C20,24 16,28 17,34 C22,44 24,60 20,80 Z';

// Lincoln's chin beard: short strokes along the jaw, from the sideburn to the chin.
const BEARD = Array.from({ length: 11 }, (_, i) => {
  const t = i / 10;
  const x = (1 - t) * (1 - t) * -3 + 2 * (1 - t) * t * 6 + t * t * 30;
  const y = (1 - t) * (1 - t) * -4 + 2 * (1 - t) * t * 20 + t * t * 14;
  return `M${f(x)},${f(y)} l${f(2 + 2 * t)},${f(-5 + t)}`;
}).join(' ');

function obverse(year: number, mint: Mint, dx: number, dy: number): Design {
  const ys = String(year);
  const dateW = 3 * DATE.advance + (CELL_W * DATE.h) / CELL_H;
  const mw = (CELL_W * MINT.h) / CELL_H;
  const mx = DATE.x + dx + dateW / 2 - mw / 2;
  const my = DATE.y + dy + DATE.h + MINT.gap;
  return {
    relief: (c) =>
      `<path d="${BUST}" fill="${c}"/>` +
      arcText('IN GOD WE TRUST', 80, -90, 10, c) +
      lineText('LIBERTY', -63, 24, 9, c) +
      glyphs(ys, DATE.x + dx, DATE.y + dy, DATE.h, DATE.advance, c) +
      (mint === 'nomint' ? '' : glyphs(mint, mx, my, MINT.h, 0, c)),
    detail: (c) =>
      `<g fill="none" stroke="${c}" stroke-width="1.3" stroke-linecap="round">` +
      `<ellipse cx="-6" cy="-14" rx="5.5" ry="9"/><path d="M-4,-18 Q-8,-14 -4,-9"/>` +
      `<path d="M20,-31 Q27,-35 34,-30"/><path d="M23,-26 L30,-25.5"/><path d="M36,-9 Q33,-6 37,-4"/>` +
      `<path d="M-25,-50 Q-5,-58 20,-50 M-33,-38 Q-12,-50 12,-45 M-36,-25 Q-24,-35 -12,-32"/>` +
      `<path d="${BEARD}" stroke-width="1"/><path d="M32,2.5 L37.5,2"/>` +
      `<path d="M-30,38 Q-6,30 17,34 M-2,33 L10,80 M6,37 L0,48 L12,41"/>` +
      `</g>`,
  };
}

function wheatEar(mirror: boolean, c: string): string {
  const sx = mirror ? -1 : 1;
  const R = 70;
  let stalk = '';
  let kernels = '';
  const a0 = 122;
  const a1 = 205;
  for (let i = 0; i <= 24; i++) {
    const a = ((a0 + ((a1 - a0) * i) / 24) * Math.PI) / 180;
    stalk += `${i ? 'L' : 'M'}${f(sx * R * Math.cos(a))},${f(R * Math.sin(a))} `;
  }
  for (let k = 0; k < 9; k++) {
    const deg = a1 - 4 - k * 6.2;
    const a = (deg * Math.PI) / 180;
    const tx = -Math.sin(a);
    const ty = Math.cos(a); // tangent, pointing to increasing angle (toward the tip)
    for (const side of [-1, 1]) {
      const rr = R + side * 5.5;
      const x = rr * Math.cos(a) + tx * 2;
      const y = rr * Math.sin(a) + ty * 2;
      const rot = (Math.atan2(ty, tx) * 180) / Math.PI + side * -28;
      kernels += `<ellipse transform="translate(${f(sx * x)} ${f(y)}) rotate(${f(sx < 0 ? 180 - rot : rot)})" rx="5" ry="2.6" fill="${c}"/>`;
    }
  }
  const ta = (a1 * Math.PI) / 180;
  const tipx = R * Math.cos(ta);
  const tipy = R * Math.sin(ta);
  let awns = '';
  for (const d of [-8, 0, 8]) awns += `M${f(sx * tipx)},${f(tipy)} l${f(sx * (d + 4))},-16 `;
  return `<path d="${stalk}" fill="none" stroke="${c}" stroke-width="3"/>${kernels}<path d="${awns}" stroke="${c}" stroke-width="1" fill="none"/>`;
}

function reverse(type: ReverseType): Design {
  switch (type) {
    case 'wheat':
      return {
        relief: (c) =>
          arcText('E PLURIBUS UNUM', 80, -90, 9, c) +
          lineText('ONE', 0, -4, 22, c) +
          lineText('CENT', 0, 22, 22, c) +
          lineText('UNITED STATES', 0, 36, 7.5, c) +
          lineText('OF AMERICA', 0, 46, 7.5, c) +
          wheatEar(false, c) +
          wheatEar(true, c),
        detail: () => '',
      };
    case 'memorial': {
      const cols = Array.from({ length: 12 }, (_, i) => -47 + i * 8.4);
      return {
        relief: (c) =>
          arcText('UNITED STATES OF AMERICA', 80, -90, 8.5, c) +
          lineText('E PLURIBUS UNUM', 0, -40, 7, c) +
          arcText('ONE CENT', 88, 90, 10, c, true) +
          `<g fill="${c}"><rect x="-52" y="-32" width="104" height="12"/><rect x="-55" y="-20" width="110" height="3"/>` +
          cols.map((x) => `<rect x="${f(x)}" y="-17" width="4.6" height="38"/>`).join('') +
          `<rect x="-56" y="21" width="112" height="4"/><rect x="-62" y="26" width="124" height="4"/>` +
          `<rect x="-68" y="31" width="136" height="4"/><rect x="-72" y="36" width="144" height="4"/></g>`,
        detail: (c) =>
          `<g stroke="${c}" stroke-width="0.8" fill="none"><path d="M-52,-26 L52,-26"/></g>` +
          `<path d="M-2.5,-4 L2.5,-4 L3.5,4 L5,4 L5,20 L-5,20 L-5,4 L-3.5,4 Z" fill="${c}" opacity="0.7"/>`,
      };
    }
    case 'bicentennial': {
      const logs = Array.from({ length: 9 }, (_, i) => -2 + i * 5);
      return {
        relief: (c) =>
          arcText('UNITED STATES OF AMERICA', 80, -90, 8.5, c) +
          lineText('E PLURIBUS UNUM', 0, -54, 7, c) +
          arcText('ONE CENT', 88, 90, 10, c, true) +
          `<g fill="${c}"><path d="M-52,-4 L52,-4 L36,-32 L-36,-32 Z"/><rect x="20" y="-46" width="11" height="18"/>` +
          `<rect x="-42" y="-4" width="84" height="44"/>` +
          logs.map((y) => `<circle cx="-44" cy="${y + 2.5}" r="2.6"/><circle cx="44" cy="${y + 2.5}" r="2.6"/>`).join('') +
          `<rect x="-66" y="41" width="132" height="4"/></g>`,
        detail: (c) =>
          `<g stroke="${c}" stroke-width="1" fill="none">` +
          logs.map((y) => `<path d="M-42,${y} L42,${y}"/>`).join('') +
          `<path d="M-44,-18 L44,-18 M-40,-11 L40,-11 M20,-40 L31,-40 M20,-34 L31,-34"/></g>` +
          `<rect x="-9" y="12" width="16" height="28" fill="${c}" opacity="0.8"/>` +
          `<rect x="17" y="10" width="14" height="12" fill="${c}" opacity="0.8"/>` +
          `<path d="M24,10 L24,22 M17,16 L31,16" stroke="${c}" stroke-width="0.8" opacity="0.4"/>`,
      };
    }
    case 'shield': {
      const stripes = Array.from({ length: 13 }, (_, i) => -36 + i * 6);
      return {
        relief: (c) =>
          arcText('UNITED STATES OF AMERICA', 80, -90, 8.5, c) +
          `<path d="M-42,-50 L42,-50 L42,12 Q42,42 0,64 Q-42,42 -42,12 Z" fill="none" stroke="${c}" stroke-width="3.5"/>` +
          `<rect x="-42" y="-50" width="84" height="24" fill="${c}"/>` +
          `<g clip-path="url(#shieldclip)" stroke="${c}" stroke-width="3">` +
          stripes.map((x) => `<path d="M${x},-26 L${x},70"/>`).join('') +
          `</g>` +
          `<path d="M-62,2 L-48,-2 L-48,14 L-62,18 L-56,10 Z M62,2 L48,-2 L48,14 L62,18 L56,10 Z" fill="${c}"/>` +
          `<path d="M-50,-4 Q0,6 50,-4 L50,14 Q0,24 -50,14 Z" fill="${c}"/>`,
        detail: (c) =>
          lineText('E PLURIBUS UNUM', 0, -35, 7.5, c) +
          `<g transform="translate(0 11)">${lineText('ONE CENT', 0, 0, 11, c)}</g>` +
          `<path d="M-50,-4 Q0,6 50,-4 M-50,14 Q0,24 50,14" stroke="${c}" stroke-width="1" fill="none"/>`,
      };
    }
  }
}

// ---------------------------------------------------------------- one coin
const COPPER: RGB[] = [
  [232, 150, 100], // fresh, bright
  [214, 128, 82],
  [188, 108, 68],
  [156, 92, 58], // brown
  [122, 74, 50],
  [92, 60, 44], // dark, worn
];
const BACKGROUNDS: RGB[] = [
  [235, 235, 230], [200, 200, 195], [150, 150, 150], [70, 70, 72], [30, 30, 32], [205, 180, 140],
  [140, 100, 65], [90, 60, 40], [40, 60, 110], [40, 90, 60], [120, 30, 35], [240, 240, 250],
];

/** Corners in image pixels (x right, y down): top-left, top-right, bottom-right, bottom-left of the upright box. */
export type Quad = [number, number][];

export interface Rendered {
  svg: string;
  rois: Rois | null;
  /** obverse: the date / mint-mark glyph boxes (cell box plus half the stroke, no ROI_PAD), unclipped; null: reverse */
  glyphs: { date: Quad; mint: Quad } | null;
  angle: number;
  blur: number;
  noise: number;
  quality: number;
}

/** The SVG of one coin and its ROIs; `angleOverride` (tests, previews) replaces the drawn angle. */
export function compose(job: Job, size: number, seed: number, angleOverride?: number): Rendered {
  const r = new Rng(hashSeed(seed, job.uid));
  const S = size;
  const drawn = Math.round(r.next() * 36000) / 100; // [0, 360), 2 decimals, as recorded
  const angle = angleOverride ?? drawn;
  const diam = S * uni(r, 0.7, 0.95);
  const rad = diam / 2;
  const slack = Math.max((S - diam) / 2, 0.015 * S);
  const cx = S / 2 + uni(r, -1, 1) * slack;
  const cy = S / 2 + uni(r, -1, 1) * slack;
  const k = rad / 100;
  const phi = (-angle * Math.PI) / 180; // SVG rotate(-angle): counter-clockwise on screen
  const coinT = `translate(${f(cx)} ${f(cy)}) rotate(${f(-angle)}) scale(${k.toFixed(5)})`;

  // colours and light
  const ci = r.next() * (COPPER.length - 1);
  let base = mix(COPPER[Math.floor(ci)], COPPER[Math.ceil(ci)], ci - Math.floor(ci));
  base = base.map((v) => v * uni(r, 0.93, 1.07)) as RGB;
  const bright = uni(r, 0.8, 1.15);
  const worn = r.next();
  const relief = 1 - 0.5 * worn; // contrast of the relief
  const lightDir = r.next() * 2 * Math.PI;
  const lx = Math.cos(lightDir);
  const ly = Math.sin(lightDir);
  const sh = Math.max(0.7, 1.3 * k) * uni(r, 0.8, 1.4); // relief shadow offset, px

  const bg = mix(pick(r, BACKGROUNDS), [r.next() * 255, r.next() * 255, r.next() * 255], uni(r, 0, 0.25));
  const bg2 = bg.map((v) => v * uni(r, 0.6, 1.2)) as RGB;
  const bgA = r.next() * 360;

  const defs =
    `<linearGradient id="bg" gradientTransform="rotate(${f(bgA)} 0.5 0.5)"><stop offset="0" stop-color="${rgb(bg)}"/><stop offset="1" stop-color="${rgb(bg2)}"/></linearGradient>` +
    `<radialGradient id="field" cx="${f(0.5 + 0.25 * lx)}" cy="${f(0.5 + 0.25 * ly)}" r="0.75"><stop offset="0" stop-color="${rgb(base, bright * 1.12)}"/><stop offset="1" stop-color="${rgb(base, bright * 0.78)}"/></radialGradient>` +
    `<radialGradient id="drop"><stop offset="0.86" stop-color="#000" stop-opacity="${f(uni(r, 0.25, 0.6))}"/><stop offset="1" stop-color="#000" stop-opacity="0"/></radialGradient>` +
    `<radialGradient id="spec"><stop offset="0" stop-color="#fff" stop-opacity="${f(uni(r, 0.05, 0.4))}"/><stop offset="1" stop-color="#fff" stop-opacity="0"/></radialGradient>` +
    `<radialGradient id="patina"><stop offset="0" stop-color="${pick(r, ['#3a2010', '#40301c', '#2a2a1a'])}" stop-opacity="0.5"/><stop offset="1" stop-color="#000" stop-opacity="0"/></radialGradient>` +
    `<linearGradient id="light" gradientTransform="rotate(${f((lightDir * 180) / Math.PI)} 0.5 0.5)"><stop offset="0" stop-color="#fff" stop-opacity="${f(uni(r, 0, 0.2))}"/><stop offset="1" stop-color="#000" stop-opacity="${f(uni(r, 0, 0.3))}"/></linearGradient>` +
    `<clipPath id="coinclip"><circle cx="${f(cx)}" cy="${f(cy)}" r="${f(rad)}"/></clipPath>` +
    `<clipPath id="shieldclip"><path d="M-42,-50 L42,-50 L42,12 Q42,42 0,64 Q-42,42 -42,12 Z"/></clipPath>`;

  // background texture
  let tex = '';
  const texKind = pick(r, ['plain', 'wood', 'cloth', 'speckle'] as const);
  const texCol = rgb(bg, r.next() < 0.5 ? 0.6 : 1.35);
  if (texKind === 'wood') {
    const rot = r.next() * 180;
    let d = '';
    for (let i = 0; i < 26; i++) {
      const y = -S * 0.3 + (i / 26) * S * 1.6 + uni(r, -3, 3);
      d += `M${f(-S * 0.3)},${f(y)} Q${f(S * 0.5)},${f(y + uni(r, -12, 12))} ${f(S * 1.3)},${f(y + uni(r, -6, 6))} `;
    }
    tex = `<path transform="rotate(${f(rot)} ${S / 2} ${S / 2})" d="${d}" stroke="${texCol}" stroke-width="${f(uni(r, 0.6, 2.2))}" fill="none" opacity="${f(uni(r, 0.2, 0.5))}"/>`;
  } else if (texKind === 'cloth') {
    const step = uni(r, 2.5, 5) * (S / 256);
    let d = '';
    for (let v = 0; v <= S; v += step) d += `M0,${f(v)} L${S},${f(v)} M${f(v)},0 L${f(v)},${S} `;
    tex = `<path transform="rotate(${f(r.next() * 90)} ${S / 2} ${S / 2}) scale(1.5) translate(${-S / 6} ${-S / 6})" d="${d}" stroke="${texCol}" stroke-width="0.6" fill="none" opacity="${f(uni(r, 0.15, 0.4))}"/>`;
  } else if (texKind === 'speckle') {
    let dots = '';
    for (let i = 0; i < 160; i++) dots += `<circle cx="${f(r.next() * S)}" cy="${f(r.next() * S)}" r="${f(uni(r, 0.4, 1.6))}"/>`;
    tex = `<g fill="${texCol}" opacity="${f(uni(r, 0.25, 0.6))}">${dots}</g>`;
  }

  // design and the label glyph boxes
  let design: Design;
  let rois: Rois | null = null;
  let glyphBoxes: Rendered['glyphs'] = null;
  if (job.kind === 'obverse') {
    const dx = uni(r, -1.5, 1.5);
    const dy = uni(r, -1.5, 1.5);
    design = obverse(job.year, job.mint, dx, dy);
    const dateW = 3 * DATE.advance + (CELL_W * DATE.h) / CELL_H;
    const mw = (CELL_W * MINT.h) / CELL_H;
    const dateBox = { x: DATE.x + dx, y: DATE.y + dy, w: dateW, h: DATE.h };
    const mintBox = { x: DATE.x + dx + dateW / 2 - mw / 2, y: DATE.y + dy + DATE.h + MINT.gap, w: mw, h: MINT.h };
    const px = (u: number, v: number): [number, number] => [
      cx + k * (u * Math.cos(phi) - v * Math.sin(phi)),
      cy + k * (u * Math.sin(phi) + v * Math.cos(phi)),
    ];
    const toPx = (b: { x: number; y: number; w: number; h: number }): Box => {
      const xs: number[] = [];
      const ys: number[] = [];
      for (const [u, v] of [
        [b.x - ROI_PAD, b.y - ROI_PAD],
        [b.x + b.w + ROI_PAD, b.y - ROI_PAD],
        [b.x - ROI_PAD, b.y + b.h + ROI_PAD],
        [b.x + b.w + ROI_PAD, b.y + b.h + ROI_PAD],
      ]) {
        const [x, y] = px(u, v);
        xs.push(x);
        ys.push(y);
      }
      const x0 = clamp(Math.floor(Math.min(...xs)), 0, S - 1);
      const y0 = clamp(Math.floor(Math.min(...ys)), 0, S - 1);
      const x1 = clamp(Math.ceil(Math.max(...xs)), x0 + 1, S);
      const y1 = clamp(Math.ceil(Math.max(...ys)), y0 + 1, S);
      return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    };
    rois = { date_roi: toPx(dateBox), mint_mark_roi: toPx(mintBox) };
    // round caps reach half the stroke (GLYPH_STROKE cell units, scaled like the glyph) past the cell
    const toQuad = (b: { x: number; y: number; w: number; h: number }): Quad => {
      const p = (GLYPH_STROKE * b.h) / CELL_H / 2;
      return [px(b.x - p, b.y - p), px(b.x + b.w + p, b.y - p), px(b.x + b.w + p, b.y + b.h + p), px(b.x - p, b.y + b.h + p)];
    };
    glyphBoxes = { date: toQuad(dateBox), mint: toQuad(mintBox) };
  } else {
    design = reverse(job.kind);
  }

  // wear: patina blotches and scratches, coin units
  let wear = '';
  const blotches = Math.floor(worn * worn * 5);
  for (let i = 0; i < blotches; i++) {
    const a = r.next() * 2 * Math.PI;
    const d = Math.sqrt(r.next()) * 80;
    wear += `<circle cx="${f(d * Math.cos(a))}" cy="${f(d * Math.sin(a))}" r="${f(uni(r, 8, 30))}" fill="url(#patina)" opacity="${f(uni(r, 0.2, 0.6))}"/>`;
  }
  const scratches = Math.floor(r.next() * r.next() * 8);
  for (let i = 0; i < scratches; i++) {
    const a = r.next() * 2 * Math.PI;
    const d = Math.sqrt(r.next()) * 70;
    const b = r.next() * Math.PI;
    const len = uni(r, 10, 50);
    const x = d * Math.cos(a);
    const y = d * Math.sin(a);
    wear += `<path d="M${f(x)},${f(y)} l${f(len * Math.cos(b))},${f(len * Math.sin(b))}" stroke="${r.next() < 0.5 ? '#fff' : '#000'}" stroke-width="${f(uni(r, 0.4, 1.2))}" opacity="${f(uni(r, 0.1, 0.3))}"/>`;
  }

  const raised = rgb(base, bright * 1.08);
  const shadowC = rgb(base, bright * 0.42);
  const hiC = rgb(mix(base, [255, 235, 215], 0.35), bright * 1.2);
  const darkC = rgb(base, bright * 0.5);
  const rim =
    `<circle r="96" fill="none" stroke="${rgb(base, bright * 1.02)}" stroke-width="8"/>` +
    `<circle r="99.3" fill="none" stroke="${rgb(base, bright * 0.55)}" stroke-width="1.4"/>`;
  const rimShadow = `<circle r="91.6" fill="none" stroke="${shadowC}" stroke-width="1.3"/>`;

  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}" viewBox="0 0 ${S} ${S}"><defs>${defs}</defs>` +
    `<rect width="${S}" height="${S}" fill="url(#bg)"/>${tex}` +
    `<circle cx="${f(cx - lx * sh * 2.5)}" cy="${f(cy - ly * sh * 2.5)}" r="${f(rad * 1.07)}" fill="url(#drop)"/>` +
    `<circle cx="${f(cx)}" cy="${f(cy)}" r="${f(rad)}" fill="url(#field)"/>` +
    `<g transform="translate(${f(-lx * sh)} ${f(-ly * sh)})" opacity="${f(0.9 * relief)}"><g transform="${coinT}">${rimShadow}${design.relief(shadowC)}</g></g>` +
    `<g transform="translate(${f(lx * sh * 0.6)} ${f(ly * sh * 0.6)})" opacity="${f(0.8 * relief)}"><g transform="${coinT}">${design.relief(hiC)}</g></g>` +
    `<g transform="${coinT}">${rim}${design.relief(raised)}<g opacity="${f(0.35 + 0.4 * relief)}">${design.detail(darkC)}</g>${wear}</g>` +
    `<g clip-path="url(#coinclip)"><circle cx="${f(cx + lx * rad * 0.35)}" cy="${f(cy + ly * rad * 0.35)}" r="${f(rad)}" fill="url(#spec)"/></g>` +
    `<rect width="${S}" height="${S}" fill="url(#light)"/></svg>`;

  const blur = r.next() < 0.35 ? 0 : uni(r, 0.3, 1.1) * (S / 256);
  const noise = uni(r, 0, 7);
  const quality = 70 + Math.floor(r.next() * 26);
  return { svg, rois, glyphs: glyphBoxes, angle, blur, noise, quality };
}

export async function renderJpeg(rend: Rendered, S: number, seed: number, uid: string): Promise<Buffer> {
  let img = sharp(Buffer.from(rend.svg)).removeAlpha();
  if (rend.blur >= 0.3) img = img.blur(rend.blur);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== S || info.height !== S || info.channels !== 3) throw new Error(`unexpected raster ${JSON.stringify(info)}`);
  if (rend.noise > 0.2) {
    const nr = new Rng(hashSeed(seed ^ 0x5bd1e995, uid));
    for (let i = 0; i < data.length; i++) data[i] = clamp(Math.round(data[i] + rend.noise * nr.normal()), 0, 255);
  }
  return sharp(data, { raw: { width: S, height: S, channels: 3 } }).jpeg({ quality: rend.quality }).toBuffer();
}

// ---------------------------------------------------------------- split check (src/data/split.ts's splitOf)

/** Prints per-model split counts; returns false when a split is empty or a side/mint class is missing from train. */
export function checkSplits(meta: Meta[], log: (s: string) => void = console.log): boolean {
  let ok = true;
  const sideOf = (m: Meta): string => (m.side === 'obverse' ? 'obverse' : String(m.type));
  const models: [string, (m: Meta) => string | null][] = [
    ['side', (m) => sideOf(m)],
    ['orientation', (m) => (m.side === 'obverse' && m.angle !== undefined ? String(Math.floor(m.angle / 3)) : null)],
    ['date', (m) => (m.side === 'obverse' && m.year !== undefined ? String(m.year) : null)],
    ['mint', (m) => (m.side === 'obverse' && m.mint_mark !== undefined ? m.mint_mark : null)],
  ];
  for (const [name, label] of models) {
    const n = { train: 0, val: 0, test: 0 };
    const trainClasses = new Set<string>();
    for (const m of meta) {
      const l = label(m);
      if (l === null) continue;
      const s = splitOf(m.uid);
      n[s]++;
      if (s === 'train') trainClasses.add(l);
    }
    const notes: string[] = [];
    for (const s of ['train', 'val', 'test'] as const) if (n[s] === 0) notes.push(`EMPTY ${s}`);
    const need = name === 'side' ? ['obverse', ...DESIGN_CYCLE] : name === 'mint' ? MINTS : [];
    const missing = need.filter((c) => !trainClasses.has(c));
    if (missing.length) notes.push(`missing in train: ${missing.join(',')}`);
    if (notes.length) ok = false;
    log(
      `  ${name.padEnd(12)} train ${String(n.train).padStart(5)}  val ${String(n.val).padStart(4)}  test ${String(n.test).padStart(4)}` +
        `  (${trainClasses.size} classes in train)${notes.length ? '  ' + notes.join('; ') : ''}`,
    );
  }
  log(ok ? 'split check: OK' : 'split check: FAILED');
  return ok;
}

// ---------------------------------------------------------------- render workers
interface WorkerInit {
  synthPennies: true; // tells our workers from other code's (this module imported inside someone else's worker)
  size: number;
  seed: number;
  out: string;
}
type Task = { i: number; job: Job } | null; // null: no more jobs, exit
// Jobs in flight per worker: one's JS (compose, noise) runs while the other's sharp work is on libuv's pool. With one,
// the hand-offs between the worker's thread and the pool left a sixth of 2 cores idle (400 coins: 15.1 s, not 12.3 s).
const IN_FLIGHT = 2;
interface Done {
  i: number;
  meta: Meta;
  rois: Rois | null;
}

/** Composes, rasterises and writes one coin; its metadata entry and (obverse) ROIs. */
async function renderJob(job: Job, S: number, seed: number, out: string): Promise<Omit<Done, 'i'>> {
  const rend = compose(job, S, seed);
  fs.writeFileSync(path.join(out, job.uid), await renderJpeg(rend, S, seed, job.uid));
  return job.kind === 'obverse'
    ? { meta: { uid: job.uid, side: 'obverse', angle: rend.angle, year: job.year, mint_mark: job.mint }, rois: rend.rois }
    : { meta: { uid: job.uid, side: 'reverse', type: job.kind }, rois: null };
}

function startWorker(init: WorkerInit): Worker {
  // Node 20 does not carry tsx's loader (--import tsx) into worker threads: the worker imports this file through
  // tsx's API instead, found from here so that the cwd does not matter.
  const self = JSON.stringify(import.meta.url);
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => m.tsImport(${self}, ${self}))`;
  return new Worker(boot, { eval: true, workerData: init });
}

function workerMain(): void {
  const { size, seed, out } = workerData as WorkerInit;
  sharp.concurrency(1); // one libvips thread a render: the workers are the parallelism
  const port = parentPort!;
  port.on('message', async (t: Task) => {
    if (!t) return port.close();
    const done: Done = { i: t.i, ...(await renderJob(t.job, size, seed, out)) };
    port.postMessage(done);
  });
}

/** Renders every job in `conc` workers, IN_FLIGHT jobs at a time each; the metadata and ROIs in job order. */
async function renderAll(jobs: Job[], conc: number, init: WorkerInit): Promise<{ meta: Meta[]; rois: (Rois | null)[] }> {
  const meta: Meta[] = new Array(jobs.length);
  const rois: (Rois | null)[] = new Array(jobs.length);
  let next = 0;
  let done = 0;
  const run = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = startWorker(init);
      let inFlight = 0;
      const feed = (): void => {
        if (next < jobs.length) {
          w.postMessage({ i: next, job: jobs[next++] } satisfies Task);
          inFlight++;
        } else if (inFlight === 0) w.postMessage(null satisfies Task);
      };
      w.on('message', (d: Done) => {
        inFlight--;
        meta[d.i] = d.meta;
        rois[d.i] = d.rois;
        if (++done % 500 === 0 && jobs.length > 500) process.stderr.write(`  ${done}/${jobs.length}\n`);
        feed();
      });
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`render worker exited with code ${code}`))));
      for (let k = 0; k < IN_FLIGHT; k++) feed();
    });
  // every worker's first feed finds a job, so none is started idle or told to exit twice
  await Promise.all(Array.from({ length: Math.min(conc, Math.ceil(jobs.length / IN_FLIGHT)) }, run));
  if (done !== jobs.length) throw new Error(`rendered ${done} of ${jobs.length} images`);
  return { meta, rois };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '5000' },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      size: { type: 'string', default: '256' },
      'metadata-dir': { type: 'string' },
      obverse: { type: 'string', default: '0.6' },
      'year-min': { type: 'string', default: '1909' },
      'year-max': { type: 'string', default: '2024' },
      concurrency: { type: 'string', default: String(Math.min(os.availableParallelism(), 64)) },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help || !values.out) {
    console.log(
      'usage: node --import tsx scripts/synth-pennies.ts --count N --out DIR --seed N [--size 256] [--metadata-dir DIR]\n' +
        '       [--obverse 0.6] [--year-min 1909] [--year-max 2024] [--concurrency N worker threads, default: cores] [--check]',
    );
    process.exit(values.help ? 0 : 2);
  }
  const out = values.out;
  const metaDir = values['metadata-dir'] ?? out;
  const int = (name: string, v: string, lo: number, hi: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`--${name} must be an integer in [${lo}, ${hi}], got ${v}`);
    return n;
  };

  if (values.check) {
    const meta = JSON.parse(fs.readFileSync(path.join(metaDir, 'metadata.json'), 'utf8')) as Meta[] | Record<string, Omit<Meta, 'uid'>>;
    const list = Array.isArray(meta) ? meta : Object.entries(meta).map(([uid, m]) => ({ uid, ...m }));
    process.exit(checkSplits(list) ? 0 : 1);
  }

  const count = int('count', values.count, 1, 10_000_000);
  const seed = int('seed', values.seed, 0, 0xffffffff);
  const S = int('size', values.size, 64, 4096);
  const yMin = int('year-min', values['year-min'], 1909, 2024);
  const yMax = int('year-max', values['year-max'], yMin, 2024);
  const conc = int('concurrency', values.concurrency, 1, 64);
  const obvFrac = Number(values.obverse);
  if (!(obvFrac >= 0 && obvFrac <= 1)) throw new Error('--obverse must be in [0, 1]');

  // Stratified class assignment: exact proportions, shuffled by the seed.
  const t0 = performance.now();
  const master = new Rng(hashSeed(seed, 'classes'));
  const nObv = Math.round(count * obvFrac);
  const kinds: Job['kind'][] = [];
  for (let i = 0; i < count; i++) kinds.push(i < nObv ? 'obverse' : DESIGN_CYCLE[(i - nObv) % 4]);
  shuffle(master, kinds);
  const mints = shuffle(master, Array.from({ length: nObv }, (_, i) => MINTS[i % 4]));
  const span = yMax - yMin + 1;
  const years: number[] = [];
  while (years.length < nObv) years.push(...shuffle(master, Array.from({ length: span }, (_, i) => yMin + i)));
  const digits = Math.max(6, String(count).length);
  let o = 0;
  const jobs: Job[] = kinds.map((kind, i) => {
    const uid = `UID${String(i + 1).padStart(digits, '0')}.jpg`;
    if (kind !== 'obverse') return { uid, kind, year: 0, mint: 'nomint' };
    const j = o++;
    return { uid, kind, year: years[j], mint: mints[j] };
  });

  fs.mkdirSync(out, { recursive: true });
  fs.mkdirSync(metaDir, { recursive: true });
  const stale = fs.readdirSync(out).filter((n) => /^UID\d+\.jpg$/.test(n) && !jobs.some((j) => j.uid === n));
  if (stale.length) console.warn(`warning: ${stale.length} other UID*.jpg files already in ${out} (not described by the new metadata)`);

  if (conc > 4 && !process.env.UV_THREADPOOL_SIZE)
    console.warn(`note: ${conc} workers share libuv's 4 threads for sharp; set UV_THREADPOOL_SIZE=${conc * IN_FLIGHT}`);
  const { meta, rois } = await renderAll(jobs, conc, { synthPennies: true, size: S, seed, out });
  const roisOrdered: Record<string, Rois> = {};
  meta.forEach((m, i) => {
    if (rois[i]) roisOrdered[m.uid.replace(/\.jpg$/, '')] = rois[i];
  });
  fs.writeFileSync(path.join(metaDir, 'metadata.json'), JSON.stringify(meta, null, 1) + '\n');
  fs.writeFileSync(path.join(metaDir, 'roi_coordinates.json'), JSON.stringify(roisOrdered, null, 1) + '\n');

  console.log('split counts (sha256(uid) split, src/data/split.ts):');
  const ok = checkSplits(meta);
  const secs = (performance.now() - t0) / 1000;
  console.log(`synth-pennies: ${count} images (${nObv} obverse, ${count - nObv} reverse) ${S}x${S} -> ${out} (metadata in ${metaDir}) in ${secs.toFixed(1)} s`);
  if (!ok) process.exitCode = 1;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (!isMainThread && (workerData as Partial<WorkerInit> | null)?.synthPennies) workerMain();
else if (isMainThread && isMain) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
