// Fails when a route the API serves is not described in docs/openapi.json.
// The served routes come from the API itself: `flashsale-api --routes` prints the route
// table it dispatches through (command-api/src/routes.h), one JSON object per line.
//   node check-routes.mjs DOC FLASHSALE_API
import { execFileSync } from 'node:child_process';
import { loadDoc, shape, METHODS } from './openapi-lib.mjs';

const [docFile, api] = process.argv.slice(2);
if (!docFile || !api) {
  console.error('usage: check-routes.mjs DOC FLASHSALE_API');
  process.exit(2);
}
const doc = loadDoc(docFile);
const out = execFileSync(api, ['--routes'], { encoding: 'utf8' });
const served = out.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
if (served.length === 0) {
  console.error('flashsale-api --routes printed no routes');
  process.exit(1);
}
const documented = new Map(); // "GET /api/products/{}" -> template as written in the document
for (const [tmpl, item] of Object.entries(doc.paths)) {
  for (const m of METHODS) if (item[m]) documented.set(`${m.toUpperCase()} ${shape(tmpl)}`, tmpl);
}
const missing = [];
const seen = new Set();
for (const r of served) {
  const key = `${r.method} ${shape(r.path)}`;
  seen.add(key);
  if (!documented.has(key)) missing.push(`${r.method} ${r.path}`);
}
const extra = [...documented.keys()].filter((k) => !seen.has(k));
console.log(`${served.length} routes served, ${documented.size} operations documented`);
if (extra.length) console.log(`documented but not in this build's route table: ${extra.join(', ')}`);
if (missing.length) {
  console.error(`served but missing from ${docFile}:\n  ${missing.join('\n  ')}`);
  process.exit(1);
}
console.log('every served route is documented');
