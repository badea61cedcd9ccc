// Shared by the checks of docs/openapi.json: loading the document and finding the
// operation a request path belongs to.
import { readFileSync } from 'node:fs';

export function loadDoc(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

// "/api/products/{product_id}" -> "/api/products/{}": routes compare by shape, not by the
// names of their parameters.
export function shape(path) {
  return path.replace(/\{[^}/]+\}/g, '{}');
}

// The document's path template a concrete path matches: a literal segment beats a
// parameter (as in OpenAPI: /api/members/me before /api/members/{id}). null: none.
export function matchPath(doc, path) {
  const segs = path.split('/');
  let best = null;
  let bestLiterals = -1;
  for (const tmpl of Object.keys(doc.paths)) {
    const t = tmpl.split('/');
    if (t.length !== segs.length) continue;
    let literals = 0;
    let ok = true;
    for (let i = 0; i < t.length && ok; i++) {
      if (/^\{[^}]+\}$/.test(t[i])) ok = segs[i].length > 0;
      else if (t[i] === segs[i]) literals++;
      else ok = false;
    }
    if (ok && literals > bestLiterals) {
      best = tmpl;
      bestLiterals = literals;
    }
  }
  return best;
}

export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
