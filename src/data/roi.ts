// Where a date or mint ROI is read from. The ROI file gives an axis-aligned box in image pixels; on a coin lying at
// angle a (counter-clockwise, degrees, as metadata's `angle`) the glyphs it holds are an upright box (w, h) turned by
// a, and the file's box is that turned box's bounds. The model reads either the padded bounds as they lie
// (align_roi: false) or the upright box itself, turned back (align_roi: true):
//
//   centre   the ROI's centre (a turned box and its bounds share it)
//   size     (w, h) from W = w|cos a| + h|sin a|, H = w|sin a| + h|cos a|; near 45 degrees those say little about
//            w / h, so there the aspect is the median of the training ROIs that do say it, and the scale the best fit
//   padding  5% of the width / height on each side, as the original pads its crops (the config's roi_pad)
//   angle    the coin's: the view's x axis runs along the reading direction of the upright glyphs
import type { Box } from './dataset.js';

/** The region of an image that a sample shows: an upright box (centre, size) lying at `angle` degrees CCW. */
export interface View {
  cx: number;
  cy: number;
  width: number;
  height: number;
  angle: number;
}

export const ROI_PAD = 0.05;
/** |cos 2a| at and above which the bounds give the upright box's aspect well (a within 30 degrees of an axis) */
const WELL_POSED = 0.5;

const abscs = (angle: number) => {
  const r = (angle * Math.PI) / 180;
  return [Math.abs(Math.cos(r)), Math.abs(Math.sin(r))];
};

/** The upright (w, h) whose turn by `angle` has bounds W x H, when the bounds decide it; else null. */
export function exactUprightSize(W: number, H: number, angle: number): [number, number] | null {
  const [c, s] = abscs(angle);
  const det = c * c - s * s;
  if (Math.abs(det) < WELL_POSED) return null;
  const w = (c * W - s * H) / det, h = (c * H - s * W) / det;
  return w > 0 && h > 0 ? [w, h] : null;
}

/** The upright (w, h): exact where the bounds decide it, else of aspect `aspect` (w / h) fitted to the bounds. */
export function uprightSize(W: number, H: number, angle: number, aspect: number): [number, number] {
  const exact = exactUprightSize(W, H, angle);
  if (exact) return exact;
  const [c, s] = abscs(angle);
  const a1 = c * aspect + s, a2 = s * aspect + c;   // W = h a1, H = h a2: least squares in h
  const h = (W * a1 + H * a2) / (a1 * a1 + a2 * a2);
  return [aspect * h, h];
}

/** The median upright aspect (w / h) of the boxes whose angle lets the bounds decide it; 1 when none does. */
export function medianAspect(boxes: readonly { roi: Box; angle: number }[]): number {
  const ratios = boxes.flatMap(({ roi, angle }) => {
    const e = exactUprightSize(roi.width, roi.height, angle);
    return e ? [e[0] / e[1]] : [];
  }).sort((a, b) => a - b);
  return ratios.length ? ratios[Math.floor(ratios.length / 2)] : 1;
}

/** The upright view of `roi` on a coin at `angle`, each side padded by `pad` of its size, in image pixels. */
export function alignedView(roi: Box, angle: number, aspect: number, pad = ROI_PAD): View {
  const [w, h] = uprightSize(roi.width, roi.height, angle, aspect);
  return { cx: roi.x + roi.width / 2, cy: roi.y + roi.height / 2, width: w * (1 + 2 * pad), height: h * (1 + 2 * pad), angle };
}

/** A view's corners in image pixels (x right, y down), upright top-left first, clockwise on screen. */
export function viewCorners(v: View): [number, number][] {
  const r = (v.angle * Math.PI) / 180, c = Math.cos(r), s = Math.sin(r);
  return ([[-1, -1], [1, -1], [1, 1], [-1, 1]] as const).map(([i, j]) => {
    const p = (i * v.width) / 2, q = (j * v.height) / 2;
    return [v.cx + p * c + q * s, v.cy - p * s + q * c];   // turned counter-clockwise on screen (y down)
  });
}

/** Integer pixel bounds of a view, clipped to the image: the region to decode. */
export function viewBounds(v: View, imageWidth: number, imageHeight: number): Box {
  const pts = viewCorners(v);
  const x0 = Math.max(0, Math.floor(Math.min(...pts.map((p) => p[0]))));
  const y0 = Math.max(0, Math.floor(Math.min(...pts.map((p) => p[1]))));
  const x1 = Math.min(imageWidth, Math.ceil(Math.max(...pts.map((p) => p[0]))));
  const y1 = Math.min(imageHeight, Math.ceil(Math.max(...pts.map((p) => p[1]))));
  return { x: x0, y: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0) };
}

/** The ROI padded by `pad` of its width/height on each side, clipped to the image; integer pixels. */
export function padRoi(roi: Box, imageWidth: number, imageHeight: number, pad = ROI_PAD): Box {
  const x0 = Math.max(0, Math.floor(roi.x - pad * roi.width));
  const y0 = Math.max(0, Math.floor(roi.y - pad * roi.height));
  const x1 = Math.min(imageWidth, Math.ceil(roi.x + roi.width + pad * roi.width));
  const y1 = Math.min(imageHeight, Math.ceil(roi.y + roi.height + pad * roi.height));
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/**
 * What of an image a date or mint model reads, given the ROI file's box: the region to decode (`crop`) and, when
 * read upright (`align`: the coin's angle and the fallback aspect), the view in that region's pixels; `pad`: the
 * config's roi_pad. Training, evaluation and prediction all place their ROIs through here.
 */
export function roiRegion(roi: Box, imageWidth: number, imageHeight: number, align?: { angle: number; aspect: number }, pad = ROI_PAD): { crop: Box; view?: View } {
  if (!align) return { crop: padRoi(roi, imageWidth, imageHeight, pad) };
  const v = alignedView(roi, align.angle, align.aspect, pad);
  const crop = viewBounds(v, imageWidth, imageHeight);
  return { crop, view: { ...v, cx: v.cx - crop.x, cy: v.cy - crop.y } };
}

