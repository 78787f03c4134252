// What the CPU can do for bf16: whether it has instructions that compute in it (x86 avx512_bf16 / amx_bf16, Arm's
// bf16 extension). Without them LibTorch emulates bf16, and autocast to it is far slower than float32.
import fs from 'node:fs';

/** Whether /proc/cpuinfo's text lists bf16 instructions (x86 `flags`, Arm `Features`). */
export function bf16Instructions(cpuinfo: string): boolean {
  return /^(flags|Features)\s*:.*\b(avx512_bf16|amx_bf16|bf16)\b/m.test(cpuinfo);
}

/** This machine's answer; false where /proc/cpuinfo cannot be read (not Linux): unknown is treated as absent. */
export function cpuHasBf16(): boolean {
  try {
    return bf16Instructions(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}
