// Validates the responses the integration tests recorded (tests/integration/fsharness.py
// writes one JSON object per response into FLASHSALE_OPENAPI_RECORD_DIR/*.jsonl) against
// docs/openapi.json with ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1):
//   - the path must be a documented path (else the answer must be a 404 error), the method
//     one of its operations (else a 405 error);
//   - the status must be one the operation documents;
//   - the content type must be one the response documents, and a JSON body must validate
//     against its schema (required fields, types, enums, formats).
//   node validate-responses.mjs DOC [RECORD_DIR]   (default: $FLASHSALE_OPENAPI_RECORD_DIR)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { loadDoc, matchPath } from './openapi-lib.mjs';

const [docFile, dirArg] = process.argv.slice(2);
const dir = dirArg || process.env.FLASHSALE_OPENAPI_RECORD_DIR;
if (!docFile || !dir) {
  console.error('usage: validate-responses.mjs DOC [RECORD_DIR]   (default: $FLASHSALE_OPENAPI_RECORD_DIR)');
  process.exit(2);
}
if (!existsSync(dir)) {
  console.error(`no responses recorded: ${dir} does not exist (run this after the integration tests)`);
  process.exit(1);
}
const doc = loadDoc(docFile);
const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(doc, 'openapi.json');

const pointer = (parts) => '#/' + parts.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const compiled = new Map();
function validator(parts) {
  const ref = 'openapi.json' + pointer(parts);
  if (!compiled.has(ref)) compiled.set(ref, ajv.compile({ $ref: ref }));
  return compiled.get(ref);
}
function deref(obj) {
  let o = obj;
  while (o && o.$ref) {
    o = o.$ref.slice(2).split('/').reduce((x, k) => x[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  }
  return o;
}
// The response object of an operation for a status, and the path of parts to it (after
// following a $ref to components/responses).
function responseFor(op, parts, status) {
  const key = op.responses[String(status)] ? String(status) : op.responses.default ? 'default' : null;
  if (!key) return null;
  let r = op.responses[key];
  let at = [...parts, 'responses', key];
  if (r.$ref) {
    at = r.$ref.slice(2).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    r = deref(r);
  }
  return { r, at };
}

const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
const failures = new Map(); // a failure's text -> how often
const examples = new Map(); // a failure's text -> its first record's body (shortened)
let checked = 0;
const byOp = new Map();
function fail(rec, why) {
  const k = `${rec.method} ${rec.path.split('?')[0]} -> ${rec.status}: ${why}`;
  failures.set(k, (failures.get(k) || 0) + 1);
  if (!examples.has(k)) examples.set(k, JSON.stringify(rec.body).slice(0, 300));
}
function checkError(rec, want) {
  if (rec.status !== want) return fail(rec, `expected ${want}`);
  const v = validator(['components', 'schemas', 'Error']);
  if (!v(rec.body)) fail(rec, 'not the error format: ' + ajv.errorsText(v.errors));
}
for (const f of files) {
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    checked++;
    const path = rec.path.split('?')[0];
    const tmpl = matchPath(doc, path);
    if (!tmpl) {
      checkError(rec, 404);
      continue;
    }
    const m = rec.method.toLowerCase();
    const op = doc.paths[tmpl][m];
    if (!op) {
      checkError(rec, 405);
      continue;
    }
    byOp.set(`${rec.method} ${tmpl}`, (byOp.get(`${rec.method} ${tmpl}`) || 0) + 1);
    const found = responseFor(op, ['paths', tmpl, m], rec.status);
    if (!found) {
      fail(rec, `status not documented (documented: ${Object.keys(op.responses).join(', ')})`);
      continue;
    }
    const { r, at } = found;
    const ct = (rec.content_type || '').split(';')[0].trim();
    if (!r.content) {
      if (rec.body !== null && rec.body !== '') fail(rec, 'a body where none is documented');
      continue;
    }
    if (!r.content[ct]) {
      fail(rec, `content type ${ct || '(none)'} not documented (${Object.keys(r.content).join(', ')})`);
      continue;
    }
    if (ct === 'application/json') {
      const v = validator([...at, 'content', ct, 'schema']);
      if (!v(rec.body)) fail(rec, ajv.errorsText(v.errors));
    }
  }
}
console.log(`${checked} recorded responses from ${files.length} file(s), ${byOp.size} operations exercised`);
for (const [k, n] of [...byOp.entries()].sort()) console.log(`  ${String(n).padStart(7)}  ${k}`);
if (checked === 0) {
  console.error(`no responses recorded in ${dir}: run this after the integration tests`);
  process.exit(1);
}
if (failures.size) {
  console.error(`${failures.size} kind(s) of responses do not match ${docFile}:`);
  for (const [k, n] of failures) console.error(`  ${n} x ${k}\n      e.g. body ${examples.get(k)}`);
  process.exit(1);
}
console.log('every recorded response matches the document');
