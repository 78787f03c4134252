// Each test worker keeps, in a file named by its pid, the test it is running (global-setup.ts reads it when a worker
// dies mid-file, which vitest reports without the file, the test or the signal).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, expect } from 'vitest';

const dir = process.env.PENNY_TEST_WORKERS;
const marker = dir && path.join(dir, String(process.pid));
const mark = (what: string) => marker && fs.writeFileSync(marker, what);

mark(`${path.relative(process.cwd(), expect.getState().testPath ?? '')} (outside its tests)`);
beforeEach(({ task }) => mark(`${task.file.name} > ${task.name}`));
afterAll(() => marker && fs.rmSync(marker, { force: true }));
