// Argument parsers shared by penny-train's commands (commander's custom option processing).
import { InvalidArgumentError } from 'commander';

/** A parser that takes a positive integer and refuses anything else, naming the flag. */
export const positiveInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
