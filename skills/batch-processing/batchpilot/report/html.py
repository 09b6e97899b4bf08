"""The self-contained report page: inline CSS and JS, no network, no external URL, safe with hostile output.

Safety, in layers (item and model text is untrusted):

* everything rendered on the server goes through `html.escape`;
* the table data travels as JSON inside `<script type="application/json">`, with `<`, `>` and `&` written
  as `\\u003c`, `\\u003e`, `\\u0026`, so no text can close the element;
* the script builds cells with `textContent`, never `innerHTML`;
* a Content-Security-Policy allows only this page's own script (by its hash) and no network at all, so
  even an injected `<script>` or `onerror=` attribute would not run.

The page honours a URL fragment so a link can open it sorted and filtered:
`report.html#sort=severity` (enum columns sort in the schema's order), `#sort=line_start:desc`,
`#q=sql` (text filter on every table), `#status=invalid` (exact match on an enum column).
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from typing import Any

from batchpilot.results.summary import parse_at

EMULATED_BANNER = ("Emulated rehearsal: these results come from the local emulator, not from Claude. The findings are "
                   "placeholders that show the shape of the output; do not present them as a review.")


def readable_time(value: Any) -> str:
    """An ISO timestamp as `2026-01-01 12:00:05 UTC` (no microseconds); anything else as it is."""
    parsed = parse_at(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else str(value if value is not None else "n/a")


CSS = """
:root{--fg:#1d2330;--muted:#5d6678;--line:#dde2ea;--bg:#fff;--soft:#f5f7fa;--ok:#2e8540;--bad:#c0392b;--warn:#d68910;--info:#2874a6}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:24px 32px;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.banner{background:#fff3cd;color:#5c4400;border:1px solid #e0b300;padding:8px 12px;border-radius:6px}.meta{color:var(--muted);margin:0 0 2px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(320px,100%),1fr));gap:24px}
.bars{display:grid;grid-template-columns:110px 1fr 70px;gap:6px 10px;align-items:center}
.bar{height:14px;border-radius:3px;background:var(--info);min-width:1px}.n{text-align:right;font-variant-numeric:tabular-nums}
.s-ok{background:var(--ok)}.s-invalid{background:var(--warn)}.s-errored{background:var(--bad)}.s-expired,.s-canceled,.s-missing{background:#8e99ab}
.v-critical{background:#7b1e1e}.v-high{background:var(--bad)}.v-medium{background:var(--warn)}.v-low{background:var(--info)}.v-info{background:#8e99ab}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);position:sticky;top:0;cursor:pointer;user-select:none;white-space:nowrap}th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td{max-width:520px;overflow-wrap:anywhere}.money td:last-child{text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:normal}
.tools{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:6px 0}.tools input{padding:4px 8px;width:280px;max-width:100%}.count{color:var(--muted)}
.wrap{max-height:640px;overflow:auto;border:1px solid var(--line)}ul.fail li{margin:3px 0}code{background:var(--soft);padding:1px 4px}
@media (max-width:600px){body{padding:12px 14px}}
"""

JS = """"use strict";
(function () {
  var data = JSON.parse(document.getElementById("bp-data").textContent);
  var params = {};
  window.location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    if (!pair) { return; }
    var at = pair.indexOf("=");
    try {
      params[decodeURIComponent(at < 0 ? pair : pair.slice(0, at))] = at < 0 ? "" : decodeURIComponent(pair.slice(at + 1));
    } catch (e) { /* a malformed fragment is ignored */ }
  });
  function text(v) { return v === null || v === undefined ? "" : String(v); }
  function setup(name, spec) {
    var table = document.getElementById(name + "-table");
    if (!table || !spec) { return; }
    var head = table.tHead.rows[0], body = table.tBodies[0];
    var filter = document.getElementById(name + "-filter"), count = document.getElementById(name + "-count");
    var state = { col: -1, desc: false };
    var enums = spec.enums || {};
    function key(row, i) {
      var v = row[i], order = enums[spec.columns[i]];
      if (v === null || v === undefined || v === "") { return [2, 0]; }
      if (order) { var at = order.indexOf(v); return at < 0 ? [1, text(v)] : [0, at]; }
      if (typeof v === "number") { return [0, v]; }
      return [1, text(v).toLowerCase()];
    }
    function compare(a, b) {
      var x = key(a, state.col), y = key(b, state.col), r = 0;
      if (x[0] !== y[0]) { return x[0] - y[0]; }
      if (x[1] < y[1]) { r = -1; } else if (x[1] > y[1]) { r = 1; }
      return state.desc ? -r : r;
    }
    function render() {
      var q = (filter.value || "").toLowerCase(), exact = [];
      spec.columns.forEach(function (c, i) { if (enums[c] && params[c] !== undefined) { exact.push([i, params[c]]); } });
      var rows = spec.rows.filter(function (r) {
        for (var k = 0; k < exact.length; k++) { if (text(r[exact[k][0]]) !== exact[k][1]) { return false; } }
        return !q || r.some(function (c) { return text(c).toLowerCase().indexOf(q) >= 0; });
      });
      if (state.col >= 0) { rows.sort(compare); }
      var frag = document.createDocumentFragment();
      rows.forEach(function (r) {
        var tr = document.createElement("tr");
        r.forEach(function (c, i) {
          var td = document.createElement("td");
          td.textContent = text(c);
          td.setAttribute("data-col", spec.columns[i]);
          tr.appendChild(td);
        });
        frag.appendChild(tr);
      });
      while (body.firstChild) { body.removeChild(body.firstChild); }
      body.appendChild(frag);
      count.textContent = "showing " + rows.length + " of " + spec.total + (spec.rows.length < spec.total ? " (the first " + spec.rows.length + " are in this page; all are in merged.jsonl)" : "");
      // A filter set by the link's fragment is otherwise invisible: name it beside the count.
      if (exact.length) { count.textContent += " · filtered by the link: " + exact.map(function (e) { return spec.columns[e[0]] + "=" + e[1]; }).join(", "); }
      Array.prototype.forEach.call(head.cells, function (th, i) {
        if (i === state.col) { th.setAttribute("aria-sort", state.desc ? "descending" : "ascending"); } else { th.removeAttribute("aria-sort"); }
      });
    }
    spec.columns.forEach(function (c, i) {
      var th = document.createElement("th");
      th.textContent = c;
      th.tabIndex = 0;
      th.addEventListener("click", function () { state.desc = state.col === i ? !state.desc : false; state.col = i; render(); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { th.click(); } });
      head.appendChild(th);
    });
    var wanted = (params.sort || "").split(":");
    var at = spec.columns.indexOf(wanted[0]);
    if (at >= 0) { state.col = at; state.desc = wanted[1] === "desc"; }
    filter.value = params.q || "";
    filter.addEventListener("input", render);
    render();
  }
  setup("items", data.items);
  setup("findings", data.findings);
  document.body.setAttribute("data-rendered", "yes");
})();
"""


def _json_for_script(value: Any) -> str:
    """JSON that cannot end its <script> element or open markup: <, > and & become \\u escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _money(value: Any) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _took(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    if seconds < 120:
        return f" ({seconds:.0f} s after prepare)"
    return f" ({seconds / 3600:.1f} h after prepare)" if seconds >= 7200 else f" ({seconds / 60:.0f} min after prepare)"


def _bars(counts: dict, order: list, css_prefix: str) -> str:
    total = sum(counts.values()) or 1
    rows = []
    for name in order:
        n = counts.get(name, 0)
        safe_class = f"{css_prefix}{name}" if str(name).replace("-", "").isalnum() else ""
        rows.append(f'<span>{_e(name)}</span><div><div class="bar {_e(safe_class)}" style="width:{100 * n / total:.2f}%"></div></div>'
                    f'<span class="n">{n:,}</span>')
    return '<div class="bars">' + "".join(rows) + "</div>"


def _table(name: str, title: str, hint: str) -> str:
    return (f'<h2 id="{name}">{_e(title)}</h2><div class="tools"><input id="{name}-filter" type="search" '
            f'placeholder="filter {name}" aria-label="filter {name}"><span class="count" id="{name}-count"></span>'
            f'<span class="count">{_e(hint)}</span></div><div class="wrap"><table id="{name}-table"><thead><tr></tr></thead>'
            f'<tbody></tbody></table></div><noscript><p>The {name} table needs JavaScript; the same data is in merged.jsonl.</p></noscript>')


def render_html(manifest: dict, summary: dict, data: dict) -> str:
    """The whole page as one string."""
    template = manifest.get("template") or {}
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    duration = summary.get("duration") or {}
    usage = summary.get("usage") or {}
    savings = summary.get("savings_usd") or {}
    money_rows = [("cost", _money(summary.get("cost_usd"))),
                  ("at standard prices (no batch, no caching)", _money(summary.get("standard_cost_usd"))),
                  ("saved by batch", _money(savings.get("batch"))), ("saved by prompt caching", _money(savings.get("caching")))]
    money_rows += [(k.replace("_", " "), f"{v:,}") for k, v in usage.items()]
    for mode, totals in (summary.get("by_mode") or {}).items():
        money_rows.append((f"{mode}: {totals['attempts']:,} attempts", _money(totals.get("cost_usd"))))
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>batchpilot report: {_e(template.get('name'))}</title><style>{CSS}</style></head><body>",
        f"<h1>Batch report: {_e(template.get('name'))}</h1>",
        f'<p class="banner" role="alert"><b>{_e(EMULATED_BANNER)}</b></p>' if summary.get("emulated") else "",
        f'<p class="meta">Model <b>{_e(manifest.get("model"))}</b> · output style {_e(manifest.get("output_style"))} · '
        f'modes {_e(", ".join(summary.get("by_mode") or {}) or "none yet")} · {summary.get("items", 0):,} items</p>',
        f'<p class="meta">Prepared {_e(readable_time(manifest.get("created_at")))} · results '
        f'{_e(readable_time(duration.get("first_result_at")))} → {_e(readable_time(duration.get("last_result_at")))}'
        f'{_took(duration.get("seconds"))} · merged {_e(readable_time(summary.get("merged_at")))}</p>',
        '<div class="grid"><section><h2>Status</h2>',
        _bars(summary.get("counts") or {}, list(summary.get("counts") or {}), "s-"),
        "</section><section><h2>Cost and tokens</h2><table class=\"money\"><tbody>",
        "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in money_rows),
        "</tbody></table></section>",
    ]
    estimate = data.get("estimate")
    if estimate:  # report/estimate.py computes the rows report.md shows too
        parts += [f'<section id="estimate"><h2>{_e(estimate["title"])}</h2><table class="money"><tbody>',
                  "".join(f"<tr><td>{_e(label)}</td><td>{_e(text)}</td></tr>" for label, text in estimate["rows"]),
                  f'</tbody></table><p class="meta">{_e(estimate["note"])}</p></section>']
    if data.get("findings"):
        order = data["severity_order"] + sorted(set(data["severity"]) - set(data["severity_order"]))
        if data["severity"]:
            parts += ["<section><h2>Findings by severity</h2>", _bars(data["severity"], order, "v-"), "</section>"]
    parts.append("</div>")
    parts.append(_table("items", "Items", "click a column to sort"))
    if data.get("findings"):
        parts.append(_table("findings", f"Findings ({data['findings']['total']:,})", "click a column to sort"))
    failures = summary.get("failures") or []
    if failures:
        parts.append(f"<h2>Failures ({summary.get('failures_total', len(failures)):,})</h2><ul class=\"fail\">")
        parts += [f"<li><code>{_e(f['custom_id'])}</code> <b>{_e(f['status'])}</b> {_e(f['type'])}: {_e(f['message'])}</li>" for f in failures]
        if summary.get("failures_total", 0) > len(failures):
            parts.append(f"<li>… {summary['failures_total'] - len(failures):,} more in merged.jsonl</li>")
        parts.append("</ul>")
    if summary.get("next") and " report " not in f"{summary['next']} ":
        parts.append(f"<p class=\"meta\">Next: <code>{_e(summary['next'])}</code></p>")
    payload = {"items": data["items"], "findings": data.get("findings")}
    parts.append(f'<script type="application/json" id="bp-data">{_json_for_script(payload)}</script>')
    parts.append(f"<script>{JS}</script></body></html>\n")
    return "".join(parts)
