// The storefront's server-sent-event parser (web/js/events.js), fed the way a ReadableStream
// delivers text: in arbitrary pieces, with any of the three line endings, comments
// (heartbeats), multi-line data, ids and retry.
import assert from 'node:assert/strict';
import test from 'node:test';
import { sseParser } from '../../web/js/events.js';

function parse(chunks) {
  const out = [];
  const retries = [];
  const push = sseParser((e) => out.push(e), (ms) => retries.push(ms));
  for (const c of chunks) push(c);
  return { out, retries };
}

const stream =
  'retry: 2000\n\n: hb 1700000000000\n\nid: 7\nevent: stock\ndata: {"product_id":"p","available":3}\n\n' +
  'id: 8\r\nevent: order\r\ndata: {"order_id":"o",\r\ndata: "status":"PAID"}\r\n\r\n' +
  ': hb 2\r\rdata: plain\r\r';

test('whole stream at once', () => {
  const { out, retries } = parse([stream]);
  assert.deepEqual(retries, [2000]);
  assert.deepEqual(out, [
    { event: 'stock', data: '{"product_id":"p","available":3}', id: '7' },
    { event: 'order', data: '{"order_id":"o",\n"status":"PAID"}', id: '8' },
    { event: 'message', data: 'plain', id: null },
  ]);
});

test('every split point gives the same events', () => {
  const whole = parse([stream]).out;
  for (let i = 1; i < stream.length; i++) {
    // a split inside "\r\n" must not produce an empty line (a premature dispatch) — except
    // that a lone "\r" at a chunk's end is a line end by itself, as the specification says;
    // the events and their data stay the same either way
    const got = parse([stream.slice(0, i), stream.slice(i)]).out;
    assert.deepEqual(got.map((e) => [e.event, JSON.stringify(e.data), e.id]), whole.map((e) => [e.event, JSON.stringify(e.data), e.id]), `split at ${i}`);
  }
});

test('one character at a time', () => {
  assert.deepEqual(parse([...stream]).out, parse([stream]).out);
});

test('no data, no event; an id with NUL is ignored; a bad retry is ignored', () => {
  const { out, retries } = parse(['event: stock\n\nid: a\0b\ndata: x\n\nretry: soon\n\n']);
  assert.deepEqual(out, [{ event: 'message', data: 'x', id: null }]);
  assert.deepEqual(retries, []);
});
