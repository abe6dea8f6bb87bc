// The dashboard page's script (served as /static/dashboard.js): fills the guest table and the
// charts, follows /events (Server-Sent Events) and posts operator actions with the CSRF token.
// Data from guests (hostnames) only ever goes in through textContent.
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const charts = {};
  let guests = [];
  let selected = '';
  let guestChart;

  const bytes = (n) => {
    const u = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) {
      n /= 1000;
      i++;
    }
    return `${i ? n.toFixed(1) : n} ${u[i]}`;
  };
  const bits = (n) => `${bytes(n / 8).replace(/B$/, 'b')}/s`.replace(/ b\/s$/, ' bit/s');
  const duration = (s) => {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
  };
  const cell = (tr, text, cls) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  };
  const say = (text) => {
    document.getElementById('message').textContent = text;
  };

  async function act(action, target, label) {
    if (action !== 'deauth' && !confirm(`${action} ${label}?`)) return;
    const r = await fetch('/api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ action, target }),
      credentials: 'same-origin',
    });
    const body = await r.json().catch(() => ({}));
    say(r.ok ? `${action} ${label}: done` : `${action} ${label}: ${body.error || r.status}`);
  }

  function renderGuests() {
    const now = Date.now() / 1000;
    const tbody = document.querySelector('#guests tbody');
    tbody.replaceChildren();
    document.getElementById('count').textContent = String(guests.length);
    for (const g of guests) {
      const tr = document.createElement('tr');
      tr.dataset.mac = g.mac;
      tr.dataset.ip = g.ip;
      const m = cell(tr, g.mac, 'mac');
      m.title = 'history of this guest';
      m.addEventListener('click', () => {
        selected = g.mac;
        void drawGuest();
      });
      cell(tr, g.ip, 'ip');
      cell(tr, g.hostname || '—', 'hostname');
      cell(tr, duration(Math.max(0, now - g.since)), 'num');
      cell(tr, bytes(g.up), 'num');
      cell(tr, bytes(g.down), 'num');
      cell(tr, `${bits(g.rateUp)} / ${bits(g.rateDown)}`, 'num');
      const td = cell(tr, '');
      for (const [action, target] of [
        ['deauth', g.ip],
        ['block', g.mac],
        ['trust', g.mac],
      ]) {
        const b = document.createElement('button');
        b.textContent = action;
        b.className = action;
        b.addEventListener('click', () => act(action, target, `${g.ip} (${g.mac})`));
        td.appendChild(b);
      }
      tbody.appendChild(tr);
    }
  }

  function renderDetection(d, first) {
    document.getElementById('extrusion').hidden = false;
    const tbody = document.querySelector('#detections tbody');
    const tr = document.createElement('tr');
    cell(tr, new Date(d.at).toLocaleTimeString());
    cell(tr, d.ip);
    cell(tr, d.mac || '—');
    cell(tr, d.rule);
    cell(tr, `${d.count} / ${d.threshold}`, 'num');
    cell(tr, `${d.window} s`, 'num');
    cell(tr, d.action);
    if (first) tbody.prepend(tr);
    else tbody.appendChild(tr);
  }

  async function drawChart(res) {
    const r = await fetch(`/api/history?res=${res}`, { credentials: 'same-origin' });
    if (!r.ok) return;
    const h = await r.json();
    const rate = (a) => a.map((v) => (v === null ? null : (v * 8) / h.step));
    const data = [h.t, h.online, rate(h.up), rate(h.down)];
    const el = document.getElementById(`chart-${res}`);
    if (charts[res]) {
      charts[res].setData(data);
      return;
    }
    charts[res] = new uPlot(
      {
        width: 420,
        height: 220,
        series: [
          {},
          {
            label: 'guests',
            stroke: '#6a1b9a',
            scale: 'n',
            value: (_u, v) => (v === null ? '—' : v.toFixed(1)),
          },
          {
            label: 'up',
            stroke: '#1565c0',
            fill: '#1565c022',
            value: (_u, v) => (v === null ? '—' : bits(v)),
          },
          {
            label: 'down',
            stroke: '#2e7d32',
            fill: '#2e7d3222',
            value: (_u, v) => (v === null ? '—' : bits(v)),
          },
        ],
        axes: [{}, { values: (_u, vs) => vs.map((v) => bits(v)), size: 80 }, { scale: 'n', side: 1 }],
        scales: {
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1000] },
          n: { range: (_u, _min, max) => [0, Math.max(1, max)] },
        },
      },
      data,
      el,
    );
    el.dataset.points = String(h.online.filter((v) => v !== null).length);
  }
  const drawCharts = () => Promise.all(['hour', 'day', 'month'].map(drawChart));

  async function drawGuest() {
    if (!selected) return;
    const res = document.getElementById('guest-res').value;
    const r = await fetch(`/api/guest?mac=${encodeURIComponent(selected)}&res=${res}`, {
      credentials: 'same-origin',
    });
    if (!r.ok) return;
    const h = await r.json();
    const rate = (a) => a.map((v) => (v === null ? null : (v * 8) / h.step));
    const data = [h.t, rate(h.up), rate(h.down)];
    document.getElementById('guest').hidden = false;
    document.getElementById('guest-mac').textContent = selected;
    guestChart?.destroy();
    guestChart = new uPlot(
      {
        width: 900,
        height: 200,
        series: [
          {},
          {
            label: 'up',
            stroke: '#1565c0',
            fill: '#1565c022',
            value: (_u, v) => (v === null ? '—' : bits(v)),
          },
          {
            label: 'down',
            stroke: '#2e7d32',
            fill: '#2e7d3222',
            value: (_u, v) => (v === null ? '—' : bits(v)),
          },
        ],
        axes: [{}, { values: (_u, vs) => vs.map((v) => bits(v)), size: 80 }],
        scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1000] } },
      },
      data,
      document.getElementById('chart-guest'),
    );
  }
  document.getElementById('guest-res').addEventListener('change', () => void drawGuest());

  async function start() {
    const r = await fetch('/api/state', { credentials: 'same-origin' });
    const s = await r.json();
    guests = s.guests;
    renderGuests();
    for (const d of s.detections) renderDetection(d, false);
    if (s.extrusion) document.getElementById('extrusion').hidden = false;
    await drawCharts();
    const live = document.getElementById('live');
    const ev = new EventSource('/events');
    ev.onopen = () => {
      live.textContent = 'live';
      live.className = '';
    };
    ev.onerror = () => {
      live.textContent = 'reconnecting…';
      live.className = 'off';
    };
    ev.addEventListener('guests', (e) => {
      guests = JSON.parse(e.data).guests;
      renderGuests();
    });
    ev.addEventListener('tick', () => {
      void drawGuest();
      void drawCharts().then(() => {
        for (const res of Object.keys(charts))
          document.getElementById(`chart-${res}`).dataset.points = String(
            charts[res].data[1].filter((v) => v !== null).length,
          );
      });
    });
    ev.addEventListener('detection', (e) => renderDetection(JSON.parse(e.data), true));
  }
  void start();
})();
