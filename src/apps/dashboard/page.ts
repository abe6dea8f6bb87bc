/**
 * The dashboard's one page: a shell that loads uPlot and `dashboard.js` (served from the repo and
 * node_modules, no CDN); the script fills it from `/api/state`, `/api/history` and `/events`. The
 * CSRF token for `POST /api/action` is in a meta tag (same-origin script reads it).
 */
export function page(csrf: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${csrf.replace(/[^A-Za-z0-9_-]/g, '')}">
<title>MetaNet gateway</title>
<link rel="stylesheet" href="/static/uPlot.css">
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header><h1>MetaNet gateway</h1><span id="live" class="off">connecting…</span></header>
<main>
<section>
<h2>Guests online <span id="count">0</span></h2>
<table id="guests">
<caption>Click a MAC for its traffic history.</caption>
<thead><tr><th>MAC</th><th>IP</th><th>Hostname</th><th>Session</th><th>Up</th><th>Down</th><th>Rate now (up / down)</th><th></th></tr></thead>
<tbody></tbody>
</table>
<p id="message" role="status"></p>
</section>
<section>
<h2>Traffic</h2>
<div class="charts">
<figure><figcaption>Last hour (10 s)</figcaption><div id="chart-hour" class="chart"></div></figure>
<figure><figcaption>Last day (1 min)</figcaption><div id="chart-day" class="chart"></div></figure>
<figure><figcaption>Last 30 days (1 h)</figcaption><div id="chart-month" class="chart"></div></figure>
</div>
</section>
<section id="guest" hidden>
<h2>Guest <span id="guest-mac"></span> <select id="guest-res"><option value="hour">last hour</option><option value="day">last day</option><option value="month">last 30 days</option></select></h2>
<div id="chart-guest" class="chart"></div>
</section>
<section id="extrusion" hidden>
<h2>Extrusion detections</h2>
<table id="detections">
<thead><tr><th>When</th><th>IP</th><th>MAC</th><th>Rule</th><th>Count / threshold</th><th>Window</th><th>Action</th></tr></thead>
<tbody></tbody>
</table>
</section>
</main>
<script src="/static/uPlot.js"></script>
<script src="/static/dashboard.js"></script>
</body>
</html>
`;
}
