// The worst misclassified validation images as one PNG: each as the model read it (its input, un-normalised), with
// the true and predicted labels and the probabilities under it.
import sharp from 'sharp';
import type { Mistake } from '../train/mistakes.js';

const TILE_H = 112;
const CAPTION_H = 46;
const GAP = 8;
const COLUMNS = 4;

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The model input [3, H, W] back to 8-bit RGB, HWC. */
function toRgb(pixels: Float32Array, height: number, width: number, mean: number[], std: number[]): Buffer {
  const out = Buffer.alloc(height * width * 3);
  const plane = height * width;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[i * 3 + c] = Math.max(0, Math.min(255, Math.round((pixels[c * plane + i] * std[c] + mean[c]) * 255)));
  }
  return out;
}

export async function contactSheet(mistakes: readonly Mistake[], labels: Record<string, string>,
  input: { height: number; width: number; mean: number[]; std: number[] }): Promise<Buffer> {
  const tileW = Math.max(TILE_H, Math.round((TILE_H * input.width) / input.height));
  const cols = Math.min(COLUMNS, mistakes.length);
  const rows = Math.ceil(mistakes.length / cols);
  const W = cols * (tileW + GAP) + GAP, H = rows * (TILE_H + CAPTION_H + GAP) + GAP;
  const tiles = await Promise.all(mistakes.map(async (m, i) => {
    const img = await sharp(toRgb(m.pixels, input.height, input.width, input.mean, input.std), { raw: { width: input.width, height: input.height, channels: 3 } })
      .resize(tileW, TILE_H, { fit: 'contain', background: '#ffffff' }).png().toBuffer();
    return { input: img, left: GAP + (i % cols) * (tileW + GAP), top: GAP + Math.floor(i / cols) * (TILE_H + CAPTION_H + GAP) };
  }));
  const captions = mistakes.map((m, i) => {
    const x = GAP + (i % cols) * (tileW + GAP), y = GAP + Math.floor(i / cols) * (TILE_H + CAPTION_H + GAP) + TILE_H;
    const line = (dy: number, text: string, fill = '#222') =>
      `<text x="${x}" y="${y + dy}" font-family="DejaVu Sans, sans-serif" font-size="11" fill="${fill}">${escapeXml(text)}</text>`;
    return line(13, m.uid) + line(27, `true ${labels[String(m.truth)]} (${(100 * m.pTruth).toFixed(1)}%)`, '#1a7f37') +
      line(41, `pred ${labels[String(m.pred)]} (${(100 * m.pPred).toFixed(1)}%)`, '#c62828');
  }).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${captions}</svg>`;
  return sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } })
    .composite([...tiles, { input: Buffer.from(svg), left: 0, top: 0 }]).png().toBuffer();
}
