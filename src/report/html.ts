// report.html: one self-contained page (styles inline, plots as data: URIs, no script) that shows a whole run.
import type { EpochRow, ResultsJson } from './record.js';

const esc = (s: unknown) => String(s).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(2)}%`);
const fix = (x: number | undefined | null, d: number) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

export function reportHtml(o: { results: ResultsJson; rows: EpochRow[]; config: string; plots: { caption: string; png: Buffer }[] }): string {
  const r = o.results;
  const t = r.test;
  const q = r.export?.int8_vs_fp32;
  const summary: [string, string][] = [
    ['model', esc(r.model)], ['backbone', esc(r.backbone)], ['device', esc(r.device)], ['run id', esc(r.run_id)],
    ['started', esc(r.started)], ['time', `${fix(r.seconds / 60, 1)} min`],
    ['data (train / val / test)', `${r.data.train} / ${r.data.val} / ${r.data.test}`],
    ['epochs', `${o.rows.length ? o.rows[o.rows.length - 1].epoch : 0} of ${r.epochs}${r.resumed_from ? `, resumed from ${esc(r.resumed_from.checkpoint)} at epoch ${r.resumed_from.epoch}` : ''}`],
    ['best epoch', `${r.best_epoch ?? '–'} (by ${esc(r.select_best_by)})`],
    [`test (${t.weights} weights, ${t.images} images)`, `acc ${pct(t.acc)}, macro-F1 ${fix(t.f1Macro, 4)}, loss ${fix(t.loss, 4)}` +
      (t.angleMae !== undefined ? `, angle MAE ${fix(t.angleMae, 2)}°` : '') + (t.accWithin1 !== undefined ? `, within ±1 ${pct(t.accWithin1)}` : '')],
    ['ONNX parity (max |diff|)', r.export?.parity_max_abs_diff === null || r.export === null ? 'not checked' : r.export.parity_max_abs_diff.toExponential(2)],
    ['INT8 vs fp32', q ? `acc ${pct(q.int8.acc)} vs ${pct(q.fp32.acc)}, top-1 agreement ${pct(q.top1Agreement)} on ${q.images} test images` : 'not compared'],
    ['IMX500 (own check)', r.export?.imx500 ? esc(r.export.imx500.statement) : 'not checked'],
    ['IMX500 (imx500-converter)', !r.imx500_converter ? 'not run' : r.imx500_converter.error ? `refused: ${esc(r.imx500_converter.error.split('\n').pop())}`
      : `${r.imx500_converter.memory_bytes === null ? '?' : (r.imx500_converter.memory_bytes / 1024).toFixed(1)} KB of 8 MB, ${r.imx500_converter.fits ? 'fits' : 'does not fit'}` +
        (r.imx500_converter.mct_int8_vs_fp32 ? `; MCT int8 acc ${pct(r.imx500_converter.mct_int8_vs_fp32.int8.acc)} vs fp32 ${pct(r.imx500_converter.mct_int8_vs_fp32.fp32.acc)}` : '')],
    ['versions', Object.entries(r.versions).map(([k, v]) => `${esc(k)} ${esc(v)}`).join(', ')],
  ];
  const epochs = table(['epoch', 'train loss', 'train acc', 'val loss', 'val acc', 'val F1', 'val angle MAE', 'val ±1', 'lr', 's', 'img/s', ''],
    o.rows.map((e) => [String(e.epoch), fix(e.train_loss, 4), pct(e.train_acc), fix(e.val_loss, 4), pct(e.val_acc), fix(e.val_f1, 4),
      fix(e.val_angle_mae, 2), pct(e.val_acc_within1), e.lr.toExponential(2), fix(e.seconds, 1), fix(e.img_per_s, 1), e.best ? 'best' : '']), 'num');
  const classes = table(['class', 'precision', 'recall', 'F1', 'support'],
    t.per_class.filter((c) => c.support > 0 || c.precision > 0).map((c) => [esc(c.label), pct(c.precision), pct(c.recall), fix(c.f1, 4), String(c.support)]), 'num');
  const plots = o.plots.map((p) => `<figure><img alt="${esc(p.caption)}" src="data:image/png;base64,${p.png.toString('base64')}"><figcaption>${esc(p.caption)}</figcaption></figure>`).join('\n');
  const files = table(['what', 'path'], Object.entries(r.files).map(([k, v]) => [esc(k), `<code>${esc(v)}</code>`]));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>penny-train: ${esc(r.model)} run ${esc(r.run_id)}</title>
<style>
body { font: 14px/1.45 system-ui, 'DejaVu Sans', sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
table.num td { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f6f6f6; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #666; font-size: 12px; }
</style></head>
<body>
<h1>penny-train · ${esc(r.model)} · ${esc(r.started)}</h1>
${table(['', ''], summary.map(([k, v]) => [esc(k), v]))}
<h2>Plots</h2>
${plots || '<p>No epochs ran in this process.</p>'}
<h2>Test figures per class</h2>
<div class="scroll">${classes}</div>
<h2>Epochs</h2>
<div class="scroll">${epochs}</div>
<h2>Files</h2>
${files}
<h2>Config</h2>
<pre>${esc(o.config)}</pre>
</body></html>
`;
}
