// penny-train's version, from package.json (one folder up from src/ and from dist/ alike).
import { readFileSync } from 'node:fs';

export const PACKAGE_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
