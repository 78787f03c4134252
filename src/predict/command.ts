// `penny-train predict`: images or folders in, one line per image out (a table, or JSON lines with --json).
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Box } from '../data/dataset.js';
import { listImages } from '../data/image-files.js';
import { UsageError } from '../errors.js';
import { positiveInt } from '../util/cli-args.js';
import type { Classification } from './model.js';
import { loadModels, readCoins, type CoinReading } from './read-coin.js';

/** `x,y,w,h`, or `date=x,y,w,h` / `mint=x,y,w,h` */
function parseRoi(v: string, prev: Record<string, Box> = {}): Record<string, Box> {
  const m = /^(?:(date|mint)=)?([^=]+)$/.exec(v);
  const nums = m ? m[2].split(',').map(Number) : [];
  if (!m || nums.length !== 4 || !nums.every(Number.isFinite) || nums[0] < 0 || nums[1] < 0 || nums[2] <= 0 || nums[3] <= 0) {
    throw new InvalidArgumentError('an ROI is x,y,width,height in pixels (x, y >= 0, a positive size), optionally prefixed date= or mint=');
  }
  const key = m[1] ?? 'any';
  if (prev[key]) throw new InvalidArgumentError(`--roi ${key === 'any' ? '' : `${key}=`}given twice`);
  return { ...prev, [key]: { x: nums[0], y: nums[1], width: nums[2], height: nums[3] } };
}

const angle = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('the angle is a number of degrees (counter-clockwise)');
  return ((n % 360) + 360) % 360;
};


const pct = (c?: Classification) => (c ? `${c.label} (${(100 * c.probability).toFixed(1)}%)` : '-');

function row(r: CoinReading): string[] {
  const angleText = r.angle === undefined ? '-' : `${r.angle.toFixed(1)}${r.angleSource === 'given' ? ' (given)' : ` (${(100 * r.orientation!.probability).toFixed(1)}%)`}`;
  return [r.image, pct(r.side), angleText, pct(r.date), pct(r.mint), r.error ? `error: ${r.error}` : ''];
}

export function addPredictCommand(program: Command): void {
  program.command('predict')
    .description('read coins with trained models: side, then (obverse) orientation, date and mint mark')
    .argument('<images...>', 'image files and folders of images')
    .requiredOption('--models <paths...>', 'a folder of exported models (the newest <model>_<stamp>_<precision>.onnx of each model, two levels down, as models/<model>/), or model files (.onnx, .pt)')
    .addOption(new Option('--precision <p>', 'which exports to take from a models folder').choices(['fp32', 'int8']).default('fp32'))
    .option('--roi <x,y,w,h>', 'the date or mint ROI of every image, instead of locating it (date=x,y,w,h / mint=x,y,w,h when both models are loaded; repeatable)', parseRoi)
    .option('--angle <degrees>', "the coins' angle (counter-clockwise), instead of the orientation model's", angle)
    .option('--top-k <n>', 'labels listed per model in --json output', positiveInt('--top-k'), 3)
    .option('--batch <n>', 'images per model call', positiveInt('--batch'), 16)
    .option('--json', 'one JSON object per image (JSON lines) instead of a table')
    .option('--threads <n>', 'onnxruntime / LibTorch threads (default: all cores)', positiveInt('--threads'))
    .addHelpText('after', `
Each image: the side model (if loaded) says obverse or a reverse design; for obverses the orientation model gives the
coin's angle, and the date and mint models read their ROIs turned upright by it. Without --roi, an ROI is located on
the coin found in the image (its rim), where the date/mint model's metadata says it lies.
Exit status: 0 every image read; 2 bad usage, a model that cannot be used, or a named image that cannot be read
(images in a folder that cannot be read are reported and skipped).

Example:
  penny-train predict data_examples --models models --precision int8`)
    .action(async (inputs: string[], o) => {
      const images = listImages(inputs);
      const models = await loadModels(o.models, { precision: o.precision, threads: o.threads });
      try {
        const roi: Record<string, Box> = o.roi ?? {};
        if (roi.any) {
          const roiModels = (['date', 'mint'] as const).filter((k) => models[k]);
          if (roiModels.length !== 1) throw new UsageError(`--roi x,y,w,h is for one date or mint model; ${roiModels.length ? 'two are loaded: say --roi date=... --roi mint=...' : 'none is loaded'}`);
          roi[roiModels[0]] = roi.any;
        }
        const t0 = performance.now();
        const readings = await readCoins(images.map((i) => i.file), models, { roi, angle: o.angle, topK: o.topK, batchSize: o.batch });
        const seconds = (performance.now() - t0) / 1000;
        if (o.json) {
          for (const r of readings) console.log(JSON.stringify(r));
        } else {
          const rows = [['image', 'side', 'angle', 'date', 'mint', ''], ...readings.map(row)];
          const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
          for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd());
        }
        const failed = readings.filter((r) => r.error);
        console.error(`${readings.length - failed.length} of ${readings.length} images read in ${seconds.toFixed(2)} s (${(readings.length / seconds).toFixed(1)} images/s)` +
          (failed.length ? `; ${failed.length} could not be: ${failed.map((r) => r.image).join(', ')}` : ''));
        const namedFailed = failed.filter((r) => images.find((i) => i.file === r.image)?.named);
        if (namedFailed.length) throw new UsageError(`could not read ${namedFailed.map((r) => `${r.image} (${r.error})`).join('; ')}`);
      } finally {
        await Promise.all(Object.values(models).map((m) => m.close()));
      }
    });
}
