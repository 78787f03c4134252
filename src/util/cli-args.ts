// Argument parsers shared by penny-train's commands (commander's custom option processing).
import { InvalidArgumentError } from 'commander';

/** A parser that takes an integer >= `min` and refuses anything else, naming the flag. */
const intFrom = (min: number, what: string) => (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be ${what}`);
  return n;
};

export const positiveInt = intFrom(1, 'a positive integer');
export const nonNegativeInt = intFrom(0, 'an integer >= 0');
