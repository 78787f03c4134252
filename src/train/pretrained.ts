// Where the backbone's pretrained weights come from: the config's local path; else the Hugging Face repo, from the
// cache or downloaded from ${HF_ENDPOINT:-https://huggingface.co}; else none, and training starts from random init
// with a loud warning (console, log, checkpoint and ONNX metadata all record it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getBackbone } from '../model/backbones.js';
import { writeAtomic } from '../util/atomic.js';

const FILES = ['model.safetensors', 'pytorch_model.bin'];

export function cacheDir(): string {
  return process.env.PENNY_TRAIN_CACHE ?? path.join(os.homedir(), '.cache', 'penny-train');
}

async function download(url: string, file: string): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000), redirect: 'follow' });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status} for ${url}`);
  await writeAtomic(file, (tmp) => pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), fs.createWriteStream(tmp, { flags: 'wx' })));
}

export interface PretrainedChoice {
  /** a file or folder to load, or null for random init */
  weights: string | null;
  /** why there are none, when weights is null */
  reason?: string;
  /** the file was just downloaded */
  downloaded?: boolean;
}

export async function resolvePretrained(backbone: string, configured: string | null): Promise<PretrainedChoice> {
  if (configured && fs.existsSync(configured)) return { weights: configured };
  const why: string[] = [configured ? `${configured} not found` : 'no pretrained_weights in the config'];
  const repo = getBackbone(backbone).hfRepo;
  if (!repo) return { weights: null, reason: `${why[0]}, and ${backbone} has no published weights` };
  const dir = path.join(cacheDir(), 'hf', repo);
  const cached = FILES.map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (cached) return { weights: cached };
  const endpoint = (process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/$/, '');
  for (const f of FILES) {
    const url = `${endpoint}/${repo}/resolve/main/${f}`;
    try {
      await download(url, path.join(dir, f));
      return { weights: path.join(dir, f), downloaded: true };
    } catch (e) {
      why.push(`${url}: ${(e as Error).cause ? String((e as Error & { cause: Error }).cause.message ?? (e as Error).cause) : (e as Error).message}`);
    }
  }
  return { weights: null, reason: why.join('; ') };
}
