// The UID-hash split of the original Penny AI dataset: deterministic, independent of file order and of other samples.
import { createHash } from 'node:crypto';

export type Split = 'train' | 'val' | 'test';

function hashMod(text: string, m: bigint): number {
  return Number(BigInt('0x' + createHash('sha256').update(text).digest('hex')) % m);
}

/**
 * sha256(uid) mod 100 < 80: train; otherwise sha256(uid + "_val_test_split_salt") mod 2: 0 val, 1 test. buildIndex
 * passes the normalised uid (normaliseUid), so that './a.jpg' and 'a.jpg' cannot land in two splits.
 */
export function splitOf(uid: string): Split {
  if (hashMod(uid, 100n) < 80) return 'train';
  return hashMod(`${uid}_val_test_split_salt`, 2n) === 0 ? 'val' : 'test';
}
