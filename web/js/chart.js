// Line charts on a canvas, no library: series of (time, value) drawn over a shared time
// axis, redrawn whole on every change (a few hundred points at most).

export const COLORS = { available: '#14804a', reserved: '#b26b00', sold: '#e4322b', dps: '#1f5fbf' };

/** points: [{t: ms, ...values}], keys: the series to draw; opts.max: fixed y top. */
export function drawLines(canvas, points, keys, opts = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const hgt = canvas.clientHeight || 150;
  if (canvas.width !== w * dpr || canvas.height !== hgt * dpr) {
    canvas.width = w * dpr;
    canvas.height = hgt * dpr;
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  const pad = opts.axes === false ? { l: 2, r: 2, t: 4, b: 2 } : { l: 40, r: 8, t: 8, b: 20 };
  if (!points.length) return;
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1000);
  let top = opts.max || 0;
  for (const p of points) for (const k of keys) top = Math.max(top, p[k] || 0);
  top = top <= 0 ? 1 : top * 1.1;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v) => hgt - pad.b - (v / top) * (hgt - pad.t - pad.b);
  if (opts.axes !== false) {
    g.strokeStyle = '#e1e4e8';
    g.fillStyle = '#636b76';
    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (top / 1.1) * (i / 4);
      g.beginPath();
      g.moveTo(pad.l, y(v));
      g.lineTo(w - pad.r, y(v));
      g.stroke();
      g.fillText(String(Math.round(v)), 4, y(v) + 4);
    }
    g.fillText(new Date(t0).toLocaleTimeString(), pad.l, hgt - 4);
    const end = new Date(t1).toLocaleTimeString();
    g.fillText(end, w - pad.r - g.measureText(end).width, hgt - 4);
  }
  g.lineWidth = 2;
  for (const k of keys) {
    g.strokeStyle = COLORS[k] || '#333';
    g.beginPath();
    points.forEach((p, i) => {
      // a step line: a count holds until the next change
      const px = x(p.t);
      const py = y(p[k] || 0);
      if (i === 0) g.moveTo(px, py);
      else {
        g.lineTo(px, y(points[i - 1][k] || 0));
        g.lineTo(px, py);
      }
    });
    g.lineTo(w - pad.r, y(points[points.length - 1][k] || 0));
    g.stroke();
  }
}

/** A stacked bar (available | reserved | sold) as an inline SVG element. */
export function stackedBar(p, width = 120) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', '12');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `available ${p.available}, reserved ${p.reserved}, sold ${p.sold}`);
  const total = Math.max(1, p.stock || p.available + p.reserved + p.sold);
  let at = 0;
  for (const k of ['available', 'reserved', 'sold']) {
    const r = document.createElementNS(ns, 'rect');
    const w = (width * (p[k] || 0)) / total;
    r.setAttribute('x', String(at));
    r.setAttribute('y', '0');
    r.setAttribute('width', String(w));
    r.setAttribute('height', '12');
    r.setAttribute('fill', COLORS[k]);
    svg.append(r);
    at += w;
  }
  return svg;
}
