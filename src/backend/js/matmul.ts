// General matrix multiply, C = alpha * op(A) op(B) (+ C), in the GotoBLAS shape: B is packed in KC x NC panels,
// A in MC x KC blocks, both into reusable float64 scratch, and a 4x4 register-blocked micro-kernel runs over the
// packed panels. Transposes and strided views (leading dimensions, offsets) are handled while packing, so callers
// multiply sub-matrices in place (attention heads, conv im2col columns) without copies.
import type { Floats } from '../types.js';

const MR = 4;
const NR = 4;
const KC = 256;
const MC = 96;
const NC = 2048;

let packA = new Float64Array(MC * KC);
let packB = new Float64Array(KC * NC);

export interface MatView {
  data: Floats;
  /** offset of element (0, 0) */
  off: number;
  /** leading dimension: distance between rows of the stored matrix */
  ld: number;
  /** read as the transpose of the stored matrix */
  trans: boolean;
}

/** A view of the stored row-major matrix at `off` with row stride `ld`, optionally read transposed. */
export function mat(data: Floats, off = 0, ld: number, trans = false): MatView {
  return { data, off, ld, trans };
}

/**
 * C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N], added to C when `accumulate`, else overwriting it.
 * op(A) is A (element (i, k) at off + i * ld + k) or, with trans, its transpose (at off + k * ld + i).
 */
export function gemm(M: number, N: number, K: number, A: MatView, B: MatView, C: Floats, cOff: number, ldc: number,
                     accumulate = false, alpha = 1): void {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate) for (let i = 0; i < M; i++) C.fill(0, cOff + i * ldc, cOff + i * ldc + N);
    return;
  }
  const ncMax = Math.min(NC, N);
  if (packB.length < KC * (ncMax + NR)) packB = new Float64Array(KC * (ncMax + NR));
  if (packA.length < (MC + MR) * KC) packA = new Float64Array((MC + MR) * KC);
  for (let jc = 0; jc < N; jc += NC) {
    const nc = Math.min(NC, N - jc);
    for (let pc = 0; pc < K; pc += KC) {
      const kc = Math.min(KC, K - pc);
      packPanelB(B, pc, kc, jc, nc, packB);
      const acc = accumulate || pc > 0;
      for (let ic = 0; ic < M; ic += MC) {
        const mc = Math.min(MC, M - ic);
        packBlockA(A, ic, mc, pc, kc, packA);
        macroKernel(mc, nc, kc, packA, packB, C, cOff + ic * ldc + jc, ldc, acc, alpha);
      }
    }
  }
}

/** Packs op(B)[pc:pc+kc, jc:jc+nc] as consecutive kc x NR micro-panels (zero-padded at the right edge). */
function packPanelB(B: MatView, pc: number, kc: number, jc: number, nc: number, dst: Float64Array): void {
  const src = B.data, ld = B.ld;
  let p = 0;
  for (let jr = 0; jr < nc; jr += NR) {
    const nr = Math.min(NR, nc - jr);
    const j0 = jc + jr;
    if (!B.trans) {
      // element (k, j) at off + k * ld + j
      let s = B.off + pc * ld + j0;
      if (nr === NR) {
        for (let k = 0; k < kc; k++, s += ld, p += NR) {
          dst[p] = src[s]; dst[p + 1] = src[s + 1]; dst[p + 2] = src[s + 2]; dst[p + 3] = src[s + 3];
        }
      } else {
        for (let k = 0; k < kc; k++, s += ld, p += NR) {
          for (let c = 0; c < NR; c++) dst[p + c] = c < nr ? src[s + c] : 0;
        }
      }
    } else {
      // element (k, j) at off + j * ld + k
      for (let c = 0; c < NR; c++) {
        if (c < nr) {
          let s = B.off + (j0 + c) * ld + pc;
          for (let k = 0, q = p + c; k < kc; k++, q += NR) dst[q] = src[s++];
        } else {
          for (let k = 0, q = p + c; k < kc; k++, q += NR) dst[q] = 0;
        }
      }
      p += kc * NR;
    }
  }
}

/** Packs op(A)[ic:ic+mc, pc:pc+kc] as consecutive MR x kc micro-panels, k-major (zero-padded at the bottom). */
function packBlockA(A: MatView, ic: number, mc: number, pc: number, kc: number, dst: Float64Array): void {
  const src = A.data, ld = A.ld;
  let p = 0;
  for (let ir = 0; ir < mc; ir += MR) {
    const mr = Math.min(MR, mc - ir);
    const i0 = ic + ir;
    if (A.trans) {
      // element (i, k) at off + k * ld + i
      let s = A.off + pc * ld + i0;
      if (mr === MR) {
        for (let k = 0; k < kc; k++, s += ld, p += MR) {
          dst[p] = src[s]; dst[p + 1] = src[s + 1]; dst[p + 2] = src[s + 2]; dst[p + 3] = src[s + 3];
        }
      } else {
        for (let k = 0; k < kc; k++, s += ld, p += MR) {
          for (let r = 0; r < MR; r++) dst[p + r] = r < mr ? src[s + r] : 0;
        }
      }
    } else {
      // element (i, k) at off + i * ld + k
      for (let r = 0; r < MR; r++) {
        if (r < mr) {
          let s = A.off + (i0 + r) * ld + pc;
          for (let k = 0, q = p + r; k < kc; k++, q += MR) dst[q] = src[s++];
        } else {
          for (let k = 0, q = p + r; k < kc; k++, q += MR) dst[q] = 0;
        }
      }
      p += kc * MR;
    }
  }
}

function macroKernel(mc: number, nc: number, kc: number, pa: Float64Array, pb: Float64Array,
                     C: Floats, cOff: number, ldc: number, acc: boolean, alpha: number): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const nr = Math.min(NR, nc - jr);
    const bBase = jr * kc;
    for (let ir = 0; ir < mc; ir += MR) {
      const mr = Math.min(MR, mc - ir);
      microKernel(kc, pa, ir * kc, pb, bBase, C, cOff + ir * ldc + jr, ldc, mr, nr, acc, alpha);
    }
  }
}

/** One MR x NR tile of C from an MR x kc panel of A and a kc x NR panel of B, accumulated in 16 registers. */
function microKernel(kc: number, pa: Float64Array, a: number, pb: Float64Array, b: number,
                     C: Floats, c: number, ldc: number, mr: number, nr: number, acc: boolean, alpha: number): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let k = 0; k < kc; k++, a += MR, b += NR) {
    const b0 = pb[b], b1 = pb[b + 1], b2 = pb[b + 2], b3 = pb[b + 3];
    let x = pa[a];
    c00 += x * b0; c01 += x * b1; c02 += x * b2; c03 += x * b3;
    x = pa[a + 1];
    c10 += x * b0; c11 += x * b1; c12 += x * b2; c13 += x * b3;
    x = pa[a + 2];
    c20 += x * b0; c21 += x * b1; c22 += x * b2; c23 += x * b3;
    x = pa[a + 3];
    c30 += x * b0; c31 += x * b1; c32 += x * b2; c33 += x * b3;
  }
  if (mr === MR && nr === NR) {
    if (acc) {
      C[c] += alpha * c00; C[c + 1] += alpha * c01; C[c + 2] += alpha * c02; C[c + 3] += alpha * c03; c += ldc;
      C[c] += alpha * c10; C[c + 1] += alpha * c11; C[c + 2] += alpha * c12; C[c + 3] += alpha * c13; c += ldc;
      C[c] += alpha * c20; C[c + 1] += alpha * c21; C[c + 2] += alpha * c22; C[c + 3] += alpha * c23; c += ldc;
      C[c] += alpha * c30; C[c + 1] += alpha * c31; C[c + 2] += alpha * c32; C[c + 3] += alpha * c33;
    } else {
      C[c] = alpha * c00; C[c + 1] = alpha * c01; C[c + 2] = alpha * c02; C[c + 3] = alpha * c03; c += ldc;
      C[c] = alpha * c10; C[c + 1] = alpha * c11; C[c + 2] = alpha * c12; C[c + 3] = alpha * c13; c += ldc;
      C[c] = alpha * c20; C[c + 1] = alpha * c21; C[c + 2] = alpha * c22; C[c + 3] = alpha * c23; c += ldc;
      C[c] = alpha * c30; C[c + 1] = alpha * c31; C[c + 2] = alpha * c32; C[c + 3] = alpha * c33;
    }
    return;
  }
  // edge tile: store the valid mr x nr corner
  const t = edge;
  t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03;
  t[4] = c10; t[5] = c11; t[6] = c12; t[7] = c13;
  t[8] = c20; t[9] = c21; t[10] = c22; t[11] = c23;
  t[12] = c30; t[13] = c31; t[14] = c32; t[15] = c33;
  for (let r = 0; r < mr; r++, c += ldc) {
    for (let j = 0; j < nr; j++) C[c + j] = (acc ? C[c + j] : 0) + alpha * t[r * NR + j];
  }
}
const edge = new Float64Array(MR * NR);

/** Reference triple loop, for tests. */
export function gemmNaive(M: number, N: number, K: number, A: MatView, B: MatView, C: Floats, cOff: number, ldc: number,
                          accumulate = false, alpha = 1): void {
  const at = (v: MatView, r: number, c: number) => v.data[v.off + (v.trans ? c * v.ld + r : r * v.ld + c)];
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += at(A, i, k) * at(B, k, j);
      const o = cOff + i * ldc + j;
      C[o] = (accumulate ? C[o] : 0) + alpha * s;
    }
  }
}
