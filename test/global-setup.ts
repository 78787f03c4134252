// Every temporary file of a test run (the tests', and the CLI runs' and Python tools' they start) goes in one folder,
// removed when the run ends: a run makes ~100 scratch folders, and they used to stay in the system's temp folder.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-test-'));
  process.env.TMPDIR = dir;
  return () => fs.rmSync(dir, { recursive: true, force: true });
}
