--- nyx.report: a tree as ONE self-contained HTML file (`nyx report ID`):
-- inline CSS and JS, no network, the data embedded as JSON in a
-- <script type="application/json"> tag. The page builds a collapsible
-- tree (status, scores, each node's own and subtree figures, summed in
-- SQL by nyx.views) and a timeline (an SVG Gantt of agents, their LLM
-- calls and tool runs over wall time).
local db = require "nyx.db"
local core = require "nyx.core"
local views = require "nyx.views"

local M = {}

local array, object = views.array, views.object

local TIMED = {
  agents = [[SELECT a.id, a.thought_tree_id AS node, a.agent_class AS class, a.agent_type AS type, a.status,
    extract(epoch FROM a.created_at)::float8 AS t0, extract(epoch FROM a.completed_at)::float8 AS t1
    FROM agents a WHERE a.thought_tree_id IN (SELECT id FROM t) ORDER BY a.created_at, a.id]],
  calls = [[SELECT i.id, i.thought_tree_id AS node, i.agent_id AS agent, i.model, i.success,
    extract(epoch FROM i.request_timestamp)::float8 AS t0, extract(epoch FROM i.response_timestamp)::float8 AS t1,
    coalesce(i.token_count_input, 0) + coalesce(i.token_count_output, 0) + coalesce(i.cache_creation_input_tokens, 0)
      + coalesce(i.cache_read_input_tokens, 0) AS tokens, i.cost_usd::float8 AS cost, i.error_message AS error
    FROM llm_interactions i WHERE i.thought_tree_id IN (SELECT id FROM t) ORDER BY i.request_timestamp, i.id]],
  tools = [[SELECT x.id, x.thought_tree_id AS node, x.agent_id AS agent, x.tool_name AS name, x.success,
    extract(epoch FROM x.started_at)::float8 AS t0, extract(epoch FROM x.completed_at)::float8 AS t1
    FROM tool_executions x WHERE x.thought_tree_id IN (SELECT id FROM t) ORDER BY x.started_at, x.id]],
}

local NODE_FIELDS = { "id", "parent_id", "goal", "status", "depth", "strategy", "classes", "error",
                      "success_score", "quality_score", "speed_score", "usefulness_score",
                      "overall_weight", "importance_level", "t0", "t1", "elapsed" }

local function rows(id, what)
  local out = array()
  for i, r in ipairs(db.query(views.SUBTREE .. " " .. TIMED[what], id)) do out[i] = object(r) end
  return out
end

--- data(id): what the page shows, as a table ready for views.encode.
function M.data(id)
  local nodes = views.nodes(id)
  local list = array()
  for i, n in ipairs(nodes) do
    local o = object()
    for _, f in ipairs(NODE_FIELDS) do o[f] = n[f] end
    o.own, o.sub = object(n.own), object(n.sub)
    list[i] = o
  end
  return object {
    root = id, generated_at = core.timestamp(), nyx = core.version, nodes = list,
    agents = rows(id, "agents"), calls = rows(id, "calls"), tools = rows(id, "tools"),
  }
end

--- embed(text): JSON made safe inside a <script> element: no '<', '>' or
-- '&' left (each as its \u escape), so "</script>" in a goal cannot end it.
function M.embed(text)
  return (text:gsub("[<>&]", { ["<"] = "\\u003c", [">"] = "\\u003e", ["&"] = "\\u0026" }))
end

local function escape_html(s)
  return (tostring(s):gsub("[<>&\"']", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

--- html(id): the page.
function M.html(id)
  local data = M.data(id)
  local title = "nyx report: " .. views.cut(data.nodes[1].goal, 80)
  return (M.TEMPLATE:gsub("{{(%w+)}}", {
    title = escape_html(title),
    data = M.embed(views.encode(data)),
  }))
end

M.TEMPLATE = [==[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
:root { --ok: #2e7d32; --bad: #c62828; --run: #f9a825; --wait: #9e9e9e; --stop: #8e24aa; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 14px 20px; background: #263238; color: #eceff1; }
header h1 { font-size: 17px; margin: 0 0 4px; font-weight: 600; }
header .totals span { margin-right: 18px; }
main { padding: 10px 20px 30px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; padding: 10px 14px; }
h2 { font-size: 14px; margin: 2px 0 8px; }
.controls button { font: inherit; margin-right: 6px; padding: 2px 8px; cursor: pointer; }
ul.tree, ul.kids { list-style: none; margin: 0; padding-left: 18px; }
ul.tree { padding-left: 0; }
li.node.collapsed > ul.kids { display: none; }
.row { display: flex; flex-wrap: nowrap; white-space: nowrap; align-items: baseline; gap: 8px; padding: 2px 0; border-bottom: 1px dotted #eee; }
.toggle { width: 20px; border: none; background: none; cursor: pointer; font-size: 11px; padding: 0; color: #555; }
.toggle.leaf { visibility: hidden; }
.mark { font-weight: bold; width: 14px; text-align: center; }
.st-completed > .row .mark { color: var(--ok); } .st-failed > .row .mark { color: var(--bad); }
.st-in_progress > .row .mark { color: var(--run); } .st-pending > .row .mark { color: var(--wait); }
.st-cancelled > .row .mark { color: var(--stop); }
.goal { font-weight: 500; max-width: 420px; flex-shrink: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.kind { color: #546e7a; font-size: 12px; } .scores { color: #6a1b9a; font-size: 12px; }
.fig { font: 11px ui-monospace, "DejaVu Sans Mono", monospace; color: #37474f; }
.fig b { font-weight: 600; } .err { color: var(--bad); font-size: 12px; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: middle; }
#timeline-box { overflow-x: auto; }
</style>
</head>
<body>
<header><h1 id="title"></h1><div class="totals" id="totals"></div></header>
<main>
<section id="tree-section"><h2>Tree</h2>
<div class="controls"><button id="expand-all" type="button">Expand all</button><button id="collapse-all" type="button">Collapse all</button></div>
<ul class="tree" id="tree"></ul></section>
<section id="timeline-section"><h2>Timeline</h2>
<div class="legend"><span><i style="background:#b0bec5"></i>agent</span><span><i style="background:#1e88e5"></i>LLM call</span><span><i style="background:#e53935"></i>failed call</span><span><i style="background:#fb8c00"></i>tool run</span></div>
<div id="timeline-box"></div></section>
</main>
<script type="application/json" id="nyx-data">{{data}}</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("nyx-data").textContent);
  var MARK = { completed: "\u2713", failed: "\u2717", in_progress: "\u2026", pending: "\u25cb", cancelled: "\u2298" };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function usd(v) { return "$" + (v || 0).toFixed(6); }
  function dur(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return s.toFixed(1) + "s";
    return Math.floor(s / 60) + "m" + ("0" + Math.floor(s % 60)).slice(-2) + "s";
  }
  function figs(cls, label, f) {
    var s = el("span", "fig " + cls);
    s.dataset.calls = f.calls; s.dataset.tokens = f.tokens; s.dataset.cost = f.cost; s.dataset.saved = f.saved;
    s.appendChild(el("b", null, label + " "));
    s.appendChild(document.createTextNode(f.calls + " calls \u00b7 " + f.tokens + " tok \u00b7 " + usd(f.cost) +
      (f.saved ? " \u00b7 saved " + usd(f.saved) : "")));
    s.title = label + ": " + f.calls + " LLM calls (" + f.failed + " failed), tokens: input " + f.input + ", output " + f.output +
      ", cache write " + f.cache_write + ", cache read " + f.cache_read + "; cost " + usd(f.cost) + ", without caching " +
      usd(f.without) + ", saved " + usd(f.saved);
    return s;
  }
  var byId = {}, kids = {};
  D.nodes.forEach(function (n) { byId[n.id] = n; kids[n.id] = []; });
  D.nodes.forEach(function (n) { if (n.parent_id && kids[n.parent_id] && n.id !== D.root) kids[n.parent_id].push(n); });
  var root = byId[D.root];
  document.title = "nyx report: " + root.goal.slice(0, 80);
  document.getElementById("title").textContent = root.goal;
  var tot = document.getElementById("totals");
  [["nodes", D.nodes.length], ["LLM calls", root.sub.calls], ["tokens", root.sub.tokens], ["cost", usd(root.sub.cost)],
   ["saved by caching", usd(root.sub.saved)], ["agents", D.agents.length], ["tool runs", D.tools.length]]
    .forEach(function (p) { tot.appendChild(el("span", null, p[0] + ": " + p[1])); });
  function setOpen(li, open) {
    li.classList.toggle("collapsed", !open);
    var b = li.querySelector(":scope > .row > .toggle");
    if (b) { b.setAttribute("aria-expanded", open ? "true" : "false"); b.textContent = open ? "\u25bc" : "\u25b6"; }
  }
  var many = D.nodes.length > 200;
  function build(n) {
    var li = el("li", "node st-" + n.status);
    li.dataset.id = n.id; li.dataset.status = n.status; li.dataset.depth = n.depth;
    li.dataset.children = kids[n.id].length;
    var row = el("div", "row");
    var t = el("button", "toggle" + (kids[n.id].length ? "" : " leaf"));
    t.type = "button";
    t.addEventListener("click", function () { setOpen(li, li.classList.contains("collapsed")); });
    row.appendChild(t);
    row.appendChild(el("span", "mark", MARK[n.status] || "?"));
    var g = el("span", "goal", n.goal); g.title = n.goal; row.appendChild(g);
    row.appendChild(el("span", "kind", n.strategy || (n.classes ? "agent:" + n.classes : "-")));
    row.appendChild(el("span", "scores", "w " + (n.overall_weight || 0).toFixed(2) + " \u00b7 " + (n.importance_level || "-") +
      " \u00b7 s " + (n.success_score || 0).toFixed(2) + " q " + (n.quality_score || 0).toFixed(2) +
      " sp " + (n.speed_score || 0).toFixed(2) + " u " + (n.usefulness_score || 0).toFixed(2)));
    row.appendChild(el("span", "fig time", dur(n.elapsed)));
    row.appendChild(figs("own", "own", n.own));
    row.appendChild(figs("sub", "subtree", n.sub));
    if (n.error) row.appendChild(el("span", "err", n.error));
    li.appendChild(row);
    if (kids[n.id].length) {
      var ul = el("ul", "kids");
      kids[n.id].forEach(function (k) { ul.appendChild(build(k)); });
      li.appendChild(ul);
      setOpen(li, !(many && n.depth - root.depth >= 2));
    }
    return li;
  }
  document.getElementById("tree").appendChild(build(root));
  function all(open) { document.querySelectorAll("li.node").forEach(function (li) { if (li.dataset.children !== "0") setOpen(li, open); }); }
  document.getElementById("expand-all").addEventListener("click", function () { all(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { all(false); });

  // The timeline: a row per agent (its life, its calls and tool runs on
  // it), then a row per node for calls made without an agent.
  var NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) { var t = document.createElementNS(NS, "title"); t.textContent = text; e.appendChild(t); }
    return e;
  }
  var t0 = Infinity, t1 = -Infinity;
  function span(x) { if (x.t0 !== null && x.t0 !== undefined) { t0 = Math.min(t0, x.t0); t1 = Math.max(t1, x.t1 || x.t0); } }
  D.agents.forEach(span); D.calls.forEach(span); D.tools.forEach(span); D.nodes.forEach(span);
  if (!(t1 > t0)) t1 = t0 + 1;
  var rows = [], rowOf = {};
  D.agents.forEach(function (a) { rowOf[a.id] = rows.length; rows.push({ label: a.class + " \u00b7 " + (byId[a.node] ? byId[a.node].goal : a.node), agent: a, items: [] }); });
  var loose = {};
  D.calls.concat(D.tools).forEach(function (x) {
    var r = x.agent && rowOf[x.agent] !== undefined ? rows[rowOf[x.agent]] : null;
    if (!r) {
      if (loose[x.node] === undefined) { loose[x.node] = rows.length; rows.push({ label: "(no agent) \u00b7 " + (byId[x.node] ? byId[x.node].goal : x.node), items: [] }); }
      r = rows[loose[x.node]];
    }
    r.items.push(x);
  });
  var LW = 300, W = Math.max(900, document.getElementById("timeline-box").clientWidth - 10), RH = 16, TOP = 22;
  var H = TOP + rows.length * RH + 6;
  var svg = s("svg", { width: W, height: H, id: "timeline", viewBox: "0 0 " + W + " " + H });
  function x(t) { return LW + (t - t0) / (t1 - t0) * (W - LW - 10); }
  for (var i = 0; i <= 10; i++) {
    var tt = t0 + (t1 - t0) * i / 10;
    svg.appendChild(s("line", { x1: x(tt), x2: x(tt), y1: TOP - 6, y2: H, stroke: "#eee" }));
    svg.appendChild(s("text", { x: x(tt), y: 12, "text-anchor": i === 0 ? "start" : i === 10 ? "end" : "middle" })).textContent = (tt - t0).toFixed(2) + "s";
  }
  rows.forEach(function (r, i) {
    var y = TOP + i * RH;
    var lab = r.label.length > 48 ? r.label.slice(0, 47) + "\u2026" : r.label;
    svg.appendChild(s("text", { x: 4, y: y + 11 })).textContent = lab;
    if (r.agent) {
      var a = r.agent, end = a.t1 || t1;
      svg.appendChild(s("rect", { "class": "bar agent", x: x(a.t0), y: y + 2, width: Math.max(1, x(end) - x(a.t0)), height: RH - 4,
        fill: "#b0bec5", "data-id": a.id }, a.class + " (" + a.status + "), " + dur(end - a.t0)));
    }
    r.items.forEach(function (it) {
      var end = it.t1 || it.t0, call = it.model !== undefined;
      svg.appendChild(s("rect", { "class": "bar " + (call ? "call" : "tool"), x: x(it.t0), y: y + (call ? 4 : 6),
        width: Math.max(2, x(end) - x(it.t0)), height: call ? RH - 8 : RH - 12,
        fill: call ? (it.success ? "#1e88e5" : "#e53935") : "#fb8c00", "data-id": it.id },
        call ? it.model + ": " + it.tokens + " tok, " + usd(it.cost) + ", " + dur(end - it.t0) + (it.error ? " \u2014 " + it.error : "")
             : "tool " + it.name + (it.success ? "" : " (failed)") + ", " + dur(end - it.t0)));
    });
  });
  document.getElementById("timeline-box").appendChild(svg);
  document.body.dataset.rendered = "yes";
})();
</script>
</body>
</html>
]==]

return M
