// Summarizes a V8 heap snapshot (as bench/mem-probe.mjs writes): self size by node type and
// constructor name, and the largest single objects with who holds them (two steps up).
//   node bench/heap-summary.mjs FILE.heapsnapshot [--top 40] [--big 25]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' }, big: { type: 'string', default: '25' }, holders: { type: 'string', multiple: true } }, allowPositionals: true });
const snap = JSON.parse(readFileSync(positionals[0], 'utf8'));
const meta = snap.snapshot.meta;
const NF = meta.node_fields.length;
const EF = meta.edge_fields.length;
const nTypes = meta.node_types[0];
const eTypes = meta.edge_types[0];
const iType = meta.node_fields.indexOf('type');
const iName = meta.node_fields.indexOf('name');
const iSize = meta.node_fields.indexOf('self_size');
const iEdges = meta.node_fields.indexOf('edge_count');
const eType = meta.edge_fields.indexOf('type');
const eName = meta.edge_fields.indexOf('name_or_index');
const eTo = meta.edge_fields.indexOf('to_node');
const { nodes, edges, strings } = snap;
const count = nodes.length / NF;

const groups = new Map();
let total = 0;
for (let i = 0; i < count; i++) {
  const type = nTypes[nodes[i * NF + iType]];
  const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : strings[nodes[i * NF + iName]];
  const key = `${type} ${name.slice(0, 60)}`;
  const size = nodes[i * NF + iSize];
  total += size;
  const g = groups.get(key) ?? { n: 0, size: 0 };
  g.n++;
  g.size += size;
  groups.set(key, g);
}
const mib = (b) => (b / 1048576).toFixed(2);
console.log(`${count} nodes, ${mib(total)} MiB self size in all`);
console.log('| MiB | count | type name |');
for (const [key, g] of [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, Number(opt.top))) console.log(`| ${mib(g.size)} | ${g.n} | ${key} |`);

// Reverse edges: who points at each node.
const firstEdge = new Uint32Array(count + 1);
for (let i = 0; i < count; i++) firstEdge[i + 1] = firstEdge[i] + nodes[i * NF + iEdges];
const retainers = new Map();
const big = [];
for (let i = 0; i < count; i++) big.push([nodes[i * NF + iSize], i]);
big.sort((a, b) => b[0] - a[0]);
const wanted = new Set(big.slice(0, Number(opt.big)).map(([, i]) => i));
const label = (i) => `${nTypes[nodes[i * NF + iType]]} ${String(strings[nodes[i * NF + iName]]).slice(0, 50)} (${nodes[i * NF + iSize]} B)`;
const collect = (targets) => {
  const out = new Map();
  for (let from = 0; from < count; from++) {
    for (let e = firstEdge[from]; e < firstEdge[from + 1]; e++) {
      const to = edges[e * EF + eTo] / NF;
      if (!targets.has(to)) continue;
      const t = eTypes[edges[e * EF + eType]];
      if (t === 'weak') continue;
      const nm = t === 'element' || t === 'hidden' ? `[${edges[e * EF + eName]}]` : strings[edges[e * EF + eName]];
      const list = out.get(to) ?? [];
      if (list.length < 3) list.push([from, `${t}:${nm}`]);
      out.set(to, list);
    }
  }
  return out;
};
const up1 = collect(wanted);
const up2 = collect(new Set([...up1.values()].flat().map(([f]) => f)));
console.log('\nlargest objects and their holders:');
for (const [, i] of big.slice(0, Number(opt.big))) {
  console.log(`- ${label(i)}`);
  for (const [f, via] of up1.get(i) ?? []) {
    console.log(`    <- ${via} of ${label(f)}`);
    for (const [g, via2] of up2.get(f) ?? []) console.log(`        <- ${via2} of ${label(g)}`);
  }
}

// --holders 'TYPE NAME': the objects of that group by who holds them (holder's name . edge).
for (const want of opt.holders ?? []) {
  const byHolder = new Map();
  for (let from = 0; from < count; from++) {
    for (let e = firstEdge[from]; e < firstEdge[from + 1]; e++) {
      const t = eTypes[edges[e * EF + eType]];
      if (t === 'weak') continue;
      const to = edges[e * EF + eTo] / NF;
      const type = nTypes[nodes[to * NF + iType]];
      const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : strings[nodes[to * NF + iName]];
      if (`${type} ${name.slice(0, 60)}` !== want) continue;
      const nm = t === 'element' || t === 'hidden' ? '[]' : strings[edges[e * EF + eName]];
      const key = `${strings[nodes[from * NF + iName]].slice(0, 40)} .${t}:${nm}`;
      const g = byHolder.get(key) ?? { n: 0, size: 0 };
      g.n++;
      g.size += nodes[to * NF + iSize];
      byHolder.set(key, g);
    }
  }
  console.log(`\nwho holds '${want}' (an object held twice counts twice):`);
  for (const [key, g] of [...byHolder].sort((a, b) => b[1].size - a[1].size).slice(0, 25)) console.log(`| ${mib(g.size)} | ${g.n} | ${key} |`);
}
void retainers;
