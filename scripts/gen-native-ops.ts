// Generates native/ops.generated.h from the op table (src/model/ops.ts): the Op enum, each op's IR name, and each op's
// attributes as a struct read from the slots src/model/lower.ts packs them into. test/op-table.test.ts fails while the
// checked-in header differs from what this writes.
//
//   npm run gen:ops
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OP_NAMES, OPS, type AttrType } from '../src/model/ops.js';

export const HEADER = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'native', 'ops.generated.h');

const pascal = (name: string) => name.replace(/(^|_)([a-z0-9])/g, (_, _sep, c: string) => c.toUpperCase());

const CXX_TYPE: Record<AttrType, string> = { int: 'int64_t', float: 'double', ints: 'c10::IntArrayRef' };

/** The Attrs<Op::X> specialization of an op with attributes: its fields and how read() fills them. */
function attrsStruct(name: string, attrs: Record<string, AttrType>): string[] {
  const fields = Object.entries(attrs);
  if (fields.length === 0) return [];
  const lists = fields.filter(([, t]) => t === 'ints');
  if (lists.length > 1) throw new Error(`op '${name}': only one 'ints' attribute fits the packing (it runs to the end of ints)`);
  let int = 0, float = 0;
  const scalarInts = fields.filter(([, t]) => t === 'int').length;
  const values = fields.map(([, t]) => {
    if (t === 'int') return `ints[${int++}]`;
    if (t === 'float') return `floats[${float++}]`;
    return scalarInts ? `c10::IntArrayRef(ints).slice(${scalarInts})` : 'c10::IntArrayRef(ints)';
  });
  const param = (type: string, used: boolean, id: string) => `const std::vector<${type}>&${used ? ` ${id}` : ''}`;
  const signature = `static Attrs read(${param('int64_t', int > 0 || lists.length > 0, 'ints')}, ${param('double', float > 0, 'floats')})`;
  return [
    '',
    'template <>',
    `struct Attrs<Op::${pascal(name)}> {`,
    ...fields.map(([field, t]) => `  ${CXX_TYPE[t]} ${field};`),
    ...oneLineOrBody(`  ${signature}`, `return {${values.join(', ')}};`),
    '};',
  ];
}

/** A function on one line if it fits in clang-format's 120 columns, as clang-format would leave it. */
function oneLineOrBody(head: string, body: string): string[] {
  const line = `${head} { ${body} }`;
  return line.length <= 120 ? [line] : [`${head} {`, `    ${body}`, '  }'];
}

export function nativeOpsHeader(): string {
  return [
    '// Generated from the op table (src/model/ops.ts) by scripts/gen-native-ops.ts; `npm run gen:ops` rewrites it.',
    '#pragma once',
    '#include <c10/util/ArrayRef.h>',
    '',
    '#include <cstdint>',
    '#include <string>',
    '#include <unordered_map>',
    '#include <vector>',
    '',
    'namespace penny {',
    '',
    'enum class Op {',
    ...OP_NAMES.map((n) => `  ${pascal(n)},`),
    '};',
    '',
    '// Each op by its IR name.',
    'inline const std::unordered_map<std::string, Op> kOpsByName = {',
    ...OP_NAMES.map((n) => `    {"${n}", Op::${pascal(n)}},`),
    '};',
    '',
    "// An op's attributes, read from a node's ints and floats (scalars in table order, then its one list).",
    'template <Op>',
    'struct Attrs;',
    ...OP_NAMES.flatMap((n) => attrsStruct(n, OPS[n].attrs)),
    '',
    '}  // namespace penny',
    '',
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  fs.writeFileSync(HEADER, nativeOpsHeader());
  console.log(`wrote ${path.relative(process.cwd(), HEADER)}`);
}
