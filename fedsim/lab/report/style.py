"""Inline stylesheet of report.html (no external fonts or assets)."""

CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f7f8fa; --card:#fff; --blue:#2563eb;
  --red:#c2410c; --green:#15803d; --amber:#b45309; --purple:#7c3aed; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin:0; background:var(--bg); color:var(--ink); line-height:1.55; font-size:16px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "DejaVu Sans",
  Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 64px; }
header.top { background: linear-gradient(135deg, #111827, #1e3a8a); color: #fff; }
header.top .inner { max-width:1100px; margin:0 auto; padding: 34px 24px 28px; }
header.top h1 { margin:0 0 6px; font-size: 30px; letter-spacing:-0.01em; line-height:1.2; }
header.top p { margin: 0; color:#cbd5e1; max-width: 60em; }
header.top .kicker { text-transform:uppercase; letter-spacing:.12em; font-size:12px; color:#93c5fd;
  font-weight:700; margin-bottom:8px; }
h2 { font-size: 22px; margin: 44px 0 10px; padding-top: 6px; letter-spacing:-0.01em; }
h2 .num { color: var(--muted); font-weight: 400; margin-right: 6px; }
h3 { font-size: 17px; margin: 26px 0 8px; }
p.lead { color: var(--muted); margin: 0 0 14px; max-width: 62em; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
  box-shadow: 0 1px 2px rgba(16,24,40,.04); }
.figure { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px; margin: 10px 0; }
.figure img { display:block; width:100%; height:auto; }
.figure.narrow img { max-width: 860px; margin: 0 auto; }
.notice { border-left: 4px solid var(--amber); background:#fffbeb; padding: 12px 16px; border-radius: 6px;
  margin: 14px 0; }
.notice.lost { border-color: var(--red); background: #fef2f2; font-size: 17px; }
.notice.lost a { color: var(--blue); }
.stages { display:grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 240px), 1fr)); gap: 12px; }
.stage { padding: 14px; }
p.story { font-size: 17px; max-width: 62em; margin: 4px 0 12px; }
.stage h4 { margin: 0 0 8px; font-size: 16px; }
.stage p { margin: 6px 0; font-size: 14px; }
.stage .gallery { grid-template-columns: 1fr; }
.stage .gallery figure { border: 0; padding: 0; }
.notice.empty { border-color: var(--red); background: #fff7ed; font-size: 17px; }
.howto { display:grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 14px; margin-top:14px; }
.howto div { background:#fff; border:1px solid var(--line); border-radius:10px; padding: 12px 14px; font-size:14.5px; }
.howto b { display:block; margin-bottom: 2px; }
.cfg { display:grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 0; margin-top: 18px;
  background:#fff; border:1px solid var(--line); border-radius:10px; overflow:hidden; }
.cfg div { padding: 10px 14px; border-right:1px solid var(--line); border-bottom:1px solid var(--line); }
.cfg div.wide { grid-column: 1 / -1; }
.cfg .k { display:block; font-size: 11.5px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
.cfg .v { font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap:anywhere; }
.stats { display:grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 14px; }
.stat { background:#fff; border:1px solid var(--line); border-radius:10px; padding: 14px 16px; }
.stat .label { font-size: 12px; text-transform: uppercase; letter-spacing:.06em; color: var(--muted); }
.stat .value { font-size: 30px; font-weight: 700; line-height:1.15; font-variant-numeric: tabular-nums; }
.stat .sub { font-size: 13.5px; color: var(--muted); }
.stat.alarm .value { color: var(--red); }
.stat.alarm { border-left: 4px solid var(--red); }
.stat.warn .value { color: var(--amber); }
.stat.warn { border-left: 4px solid var(--amber); }
.stat.chance { border-left: 4px solid #cbd2d9; }
.stat.good .value { color: var(--green); }
.verdict { display:inline-block; font-size: 12.5px; font-weight: 600; border-radius: 5px; padding: 0 6px;
  margin: 2px 0 4px; background:#eef2f7; color: var(--muted); }
.verdict.warn { background:#fef3c7; color:#78350f; }
.verdict.alarm { background:#fee2e2; color:#7f1d1d; }
.grid-more { font-size: 13px; }
table.fit td, table.fit th { white-space: normal; }
table.fit .ci { display:block; font-size: 12px; color: var(--muted); font-weight: 400; }
.best { display:grid; grid-template-columns: minmax(0, 1.3fr) minmax(0, 1fr); gap: 18px; align-items:center; }
.best img { display:block; max-width:100%; max-height:300px; width:auto; height:auto; margin:0 auto;
  image-rendering: pixelated; border:1px solid var(--line); border-radius:6px; }
@media (max-width: 760px) { .best { grid-template-columns: 1fr; } header.top h1 { font-size: 24px; } }
table { border-collapse: collapse; width: 100%; font-size: 14px; background:#fff; }
th, td { text-align:left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); background:#f9fafb;
  position: sticky; top: 0; }
td.n, th.n { text-align:right; font-variant-numeric: tabular-nums; white-space:nowrap; }
.tablewrap { overflow-x:auto; border:1px solid var(--line); border-radius:10px; max-height: 900px; }
.chip { display:inline-block; padding: 0 6px; margin: 1px 2px 1px 0; border-radius: 5px; font-size: 12.5px;
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; white-space:nowrap;
  border:1px solid transparent; }
.chip.t { background:#eef2f7; color:#334155; }
.chip.hit { background:#dcfce7; color:#14532d; border-color:#86efac; }
.chip.off { background:#fef3c7; color:#78350f; border-color:#fcd34d; }
.chip.bad { background:#fee2e2; color:#7f1d1d; border-color:#fca5a5; }
.chip.miss { background:#fff; color:#6b7280; border:1px dashed #9ca3af; text-decoration: line-through; }
.score { font-weight: 700; font-variant-numeric: tabular-nums; margin-left: 4px; }
.score.hi { color: var(--green); } .score.mid { color: var(--amber); } .score.lo { color: var(--red); }
.legend { font-size: 13.5px; color: var(--muted); margin: 6px 0 10px; }
.gallery { display:grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 420px), 1fr)); gap: 14px; }
.gallery figure { margin:0; background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px; }
.gallery img { max-width:100%; max-height:300px; width:auto; height:auto; image-rendering: pixelated;
  display:block; margin: 0 auto; }
.gallery figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
.gallery figcaption b { color: var(--ink); font-variant-numeric: tabular-nums; }
.rank { display:inline-block; min-width: 1.8em; font-weight:700; color:#fff; background:var(--ink);
  border-radius: 4px; text-align:center; font-size:12px; margin-right:6px; }
.placeholder { padding: 30px 10px; text-align:center; color: var(--muted); background: #f3f4f6; border-radius:6px; }
.err { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px;
  color:#7f1d1d; overflow-wrap:anywhere; }
.muted { color: var(--muted); }
details { margin-top: 12px; }
details summary { cursor: pointer; color: var(--blue); }
pre { background:#0f172a; color:#e2e8f0; padding: 14px; border-radius: 8px; overflow:auto; font-size: 12.5px; }
nav.toc { font-size: 14px; margin-top: 16px; display:flex; flex-wrap: wrap; gap: 6px 16px; }
nav.toc a { color: #bfdbfe; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
footer { margin-top: 50px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 14px; }
"""
