// Live updates: GET /api/events read with fetch() and a ReadableStream (EventSource cannot
// send the Authorization header that brings the member's own orders), parsed as
// server-sent events, reconnected with Last-Event-ID after the server's `retry`.
//
// When the stream is unavailable (no such route, refused, the network gone, too many streams)
// the feed falls back to polling: `poll()` is called every few seconds until a reconnect
// succeeds. Callers see one interface either way: onEvent(name, data) for `stock` and `order`
// events, and onMode('connecting'|'live'|'polling'|'off').

import { currentSession, refresh } from './api.js';

const POLL_MS = 3000;

/** Parses SSE text incrementally; calls emit({event, data, id}) per dispatched event and
 * retry(ms) on a retry field. Comments (heartbeats) are skipped. Returns push(text). */
export function sseParser(emit, retry) {
  let buf = '';
  let ev = { event: '', data: [], id: null };
  let afterCR = false; // the last chunk ended in CR: a LF starting the next one belongs to it
  return (chunk) => {
    if (afterCR && chunk[0] === '\n') chunk = chunk.slice(1);
    afterCR = false;
    buf += chunk;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      const crlf = buf[nl] === '\r' && buf[nl + 1] === '\n';
      if (buf[nl] === '\r' && nl === buf.length - 1) afterCR = true;
      buf = buf.slice(nl + (crlf ? 2 : 1));
      if (line === '') {
        if (ev.data.length) emit({ event: ev.event || 'message', data: ev.data.join('\n'), id: ev.id });
        ev = { event: '', data: [], id: null };
        continue;
      }
      if (line[0] === ':') continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'event') ev.event = value;
      else if (field === 'data') ev.data.push(value);
      else if (field === 'id' && !value.includes('\0')) ev.id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) retry(Number(value));
    }
  };
}

export class LiveFeed {
  /**
   * products: ids to follow (at most 50); withOrders: send the access token so that the
   * member's orders come too; poll: async () => void, the fallback.
   */
  constructor({ products = [], withOrders = false, onEvent, onMode = () => {}, poll = null }) {
    this.products = products.slice(0, 50);
    this.withOrders = withOrders;
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.poll = poll;
    this.lastId = null;
    this.retryMs = 2000;
    this.failures = 0;
    this.stopped = false;
    this.ctrl = null;
    this.pollTimer = null;
    this.mode = 'off';
    this.run();
  }

  setMode(m) {
    if (this.mode !== m) {
      this.mode = m;
      this.onMode(m);
    }
  }

  stop() {
    this.stopped = true;
    if (this.ctrl) this.ctrl.abort();
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.setMode('off');
  }

  startPolling() {
    if (!this.poll || this.pollTimer || this.stopped) return;
    this.setMode('polling');
    const tick = async () => {
      try {
        await this.poll();
      } catch {
        /* the next tick tries again */
      }
      if (!this.stopped && this.pollTimer) this.pollTimer = setTimeout(tick, POLL_MS);
    };
    this.pollTimer = setTimeout(tick, 0);
  }

  stopPolling() {
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  async run() {
    while (!this.stopped) {
      const [wait, failed] = await this.connectOnce();
      if (this.stopped) return;
      // unavailable (404, 5xx, network, too many streams): poll meanwhile, try again later;
      // a stream that ended reconnects after the server's retry, resuming from the last id
      if (failed) this.startPolling();
      else this.setMode('connecting');
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** One connection; returns [ms to wait before the next one, whether it failed]. */
  async connectOnce() {
    const q = this.products.map((p) => `product=${encodeURIComponent(p)}`).join('&');
    const h = { Accept: 'text/event-stream' };
    const s = currentSession();
    if (this.withOrders && s) h.Authorization = `Bearer ${s.access_token}`;
    if (this.lastId) h['Last-Event-ID'] = this.lastId;
    this.ctrl = new AbortController();
    if (this.mode !== 'polling') this.setMode('connecting');
    let r;
    try {
      r = await fetch(`/api/events${q ? `?${q}` : ''}`, { headers: h, signal: this.ctrl.signal, cache: 'no-store' });
    } catch {
      return [this.backoff(), true];
    }
    if (r.status === 401 && h.Authorization) {
      // an ended access token: rotate; logged out meanwhile: the public stream still serves stock
      if (!(await refresh())) this.withOrders = false;
      return [0, false];
    }
    if (r.status === 429) {
      const after = Number(r.headers.get('Retry-After')) || 5;
      return [after * 1000, true];
    }
    if (!r.ok || !r.body || !(r.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
      return [this.backoff(r.status === 404 ? 30000 : 0), true];
    }
    this.failures = 0;
    this.stopPolling();
    this.setMode('live');
    const push = sseParser(
      (e) => {
        if (e.id !== null) this.lastId = e.id;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.onEvent(e.event, data);
      },
      (ms) => {
        this.retryMs = ms;
      },
    );
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        push(value);
      }
    } catch {
      /* aborted or cut: reconnect */
    }
    return [this.retryMs, false];
  }

  backoff(floor = 0) {
    this.failures += 1;
    return Math.max(floor, Math.min(30000, this.retryMs * 2 ** Math.min(this.failures - 1, 4)));
  }
}
