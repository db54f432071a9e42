// streamrec dashboard: fills each page from the dashboard's JSON. Every text from the system
// goes in with textContent (never innerHTML), so a record cannot inject markup.
"use strict";

const page = document.getElementById("page");
const kind = page.dataset.page;
const ident = page.dataset.id;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function num(value, digits) {
  if (value === null || value === undefined) return "–";
  if (digits !== undefined) return Number(value).toFixed(digits);
  return Number.isInteger(value) ? value.toLocaleString("en") : Number(value).toLocaleString("en", {maximumFractionDigits: 3});
}
function ms(seconds) { return seconds === null || seconds === undefined ? "–" : (seconds * 1000).toFixed(1) + " ms"; }
function pct(rate) { return rate === null || rate === undefined ? "–" : (100 * rate).toFixed(2) + "%"; }
function when(msValue) { return msValue ? new Date(msValue).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–"; }
function userLink(id) { return el("a", {href: "/users/" + encodeURIComponent(id)}, id); }
function itemLink(id) { return el("a", {href: "/items/" + encodeURIComponent(id)}, id); }

function status(text, bad) {
  const node = document.getElementById("status");
  if (!node) return;
  node.textContent = text;
  node.className = bad ? "status bad" : "status";
}

function card(label, value, id) {
  return el("div", {class: "card"}, el("div", {class: "label"}, label), el("div", {class: "value", id: id}, value));
}
function cards(list) { document.getElementById("cards").replaceChildren(...list.map(c => card(...c))); }

function table(id, headers, rows, empty) {
  const node = document.getElementById(id);
  const head = el("tr", {}, ...headers.map(h => el("th", {}, h)));
  const body = rows.length ? rows : [el("tr", {}, el("td", {colspan: headers.length}, empty || "none"))];
  node.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}
function row(cells, attrs) {
  return el("tr", attrs || {}, ...cells.map(c => c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)));
}
function numCell(value, digits) { return el("td", {class: "num"}, num(value, digits)); }

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  let body = null;
  try { body = await response.json(); } catch (e) { body = {error: "the answer was not JSON"}; }
  return {status: response.status, body: body};
}

function chart(id, title, series, data, opts) {
  const target = document.getElementById(id);
  const width = Math.max(300, target.clientWidth - 12);
  const colors = ["#2a6fdb", "#e8590c", "#067647"];
  const options = Object.assign({
    title: title, width: width, height: 220,
    series: [{}].concat(series.map((label, i) => ({label: label, stroke: colors[i % colors.length], width: 2}))),
  }, opts || {});
  target.replaceChildren();
  return new uPlot(options, data, target);
}

function recentUsers(users) {
  const list = document.getElementById("recent-users");
  if (!list) return;
  list.replaceChildren(...(users.length ? users.map(u => el("li", {}, userLink(u.user_id)))
                                        : [el("li", {}, "no recommendation read yet")]));
}

// --- overview ------------------------------------------------------------------------
let ratesChart = null, hitsChart = null;
async function overview() {
  let answer;
  try { answer = await getJSON("/api/overview"); } catch (e) { status("the dashboard did not answer", true); return; }
  const o = answer.body;
  if (answer.status !== 200) { status(o.error || "error " + answer.status, true); return; }
  const down = o.workers.filter(w => !w.ok);
  status(down.length ? down.map(w => "worker " + w.url + " did not answer (" + w.error + ")").join("; ")
                     : o.workers_answered + " worker(s) answered at " + when(o.scraped_ms), down.length > 0);
  cards([
    ["events consumed", num(o.events_consumed), "events-consumed"],
    ["events/s", num(o.events_per_s, 1), "events-per-s"],
    ["recommendations published", num(o.recommendations_published), "recommendations-published"],
    ["recommendations/s", num(o.recommendations_per_s, 1), "recommendations-per-s"],
    ["consumer lag (records)", num(o.lag_total), "lag-total"],
    ["freshness p50", ms(o.freshness_p50_s), "freshness-p50"],
    ["freshness p99", (o.freshness_p99_beyond ? "> " : "") + ms(o.freshness_p99_s), "freshness-p99"],
    ["online hit rate", pct(o.hit_rate), "hit-rate"],
  ]);
  table("workers", ["worker", "status", "partitions", "model version", "index version", "index items", "users", "events consumed"],
        o.workers.map(w => w.ok
          ? row([w.url, el("td", {class: w.status === "ok" ? "ok" : "bad"}, w.status), w.partitions.join(", "),
                 w.model_version || "–", w.index_version || "–", numCell(w.index_items), numCell(w.users), numCell(w.events_consumed)],
                {"data-url": w.url})
          : row([w.url, el("td", {class: "bad"}, "did not answer: " + w.error), "", "", "", "", "", ""], {"data-url": w.url})));
  table("dead-reasons", ["topic / reason", "records"],
        Object.entries(o.dead_letters).map(([reason, n]) => row([reason, numCell(n)])), "no dead letter");
  table("lag", ["partition", "records behind"], Object.entries(o.lag).map(([p, n]) => row([p, numCell(n)])));
  recentUsers(o.recent_users);
  const xs = o.history.map(p => p[0]);
  const rates = [xs, o.history.map(p => p[1]), o.history.map(p => p[2])];
  const hits = [xs, o.history.map(p => p[3])];
  if (ratesChart) ratesChart.setData(rates); else ratesChart = chart("chart-rates", "events/s and recommendations/s", ["events/s", "recommendations/s"], rates);
  if (hitsChart) hitsChart.setData(hits); else hitsChart = chart("chart-hits", "online hit rate", ["hit rate"], hits);
}

// --- users ---------------------------------------------------------------------------
async function users() {
  const answer = await getJSON("/api/users");
  if (answer.status === 200) recentUsers(answer.body.users);
}

let previousRecs = "";
async function user() {
  document.getElementById("user-id").textContent = ident;
  let answer;
  try { answer = await getJSON("/api/users/" + encodeURIComponent(ident)); } catch (e) { status("the dashboard did not answer", true); return; }
  const d = answer.body;
  if (answer.status !== 200) { status(d.error || "error " + answer.status, true); return; }
  status("answered by " + d.worker + " at " + new Date().toISOString());
  const u = d.user, rec = d.recommendation;
  cards([
    ["events in history", num(u.history.length), "history-length"],
    ["model version of the vector", u.model_version || "–", "user-model-version"],
    ["recommendation source", rec ? rec.source : "–", "rec-source"],
    ["experiment arm", rec && rec.arm ? rec.arm : "–", "rec-arm"],
  ]);
  const items = rec ? rec.items : [];
  const key = JSON.stringify(items.map(i => i.item_id));
  const changed = previousRecs !== "" && key !== previousRecs;
  previousRecs = key;
  table("recommendations", ["#", "item", "title", "score", "reason"],
        items.map((it, i) => row([String(i + 1), itemLink(it.item_id), it.title || "–", numCell(it.score, 4), it.reason || ""],
                                 {"data-item-id": it.item_id, class: changed ? "flash" : null})),
        d.recommendation_error || "no recommendation");
  document.getElementById("recommendations").dataset.version = String(u.history.length);
  table("history", ["time", "type", "item", "weight"],
        u.history.slice(0, 50).map(h => row([when(h.timestamp_ms), h.event_type, itemLink(h.item_id), numCell(h.weight, 2)],
                                             {"data-item-id": h.item_id})));
  const similar = d.similar ? d.similar.users : [];
  table("similar-users", ["user", "score"], similar.map(s => row([userLink(s.user_id), numCell(s.score, 4)])),
        d.similar_error || "none");
}

function watchUser() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/users/" + encodeURIComponent(ident) + "/stream");
  source.onopen = () => { live.textContent = "live updates: on"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "live updates: reconnecting…"; live.className = "live"; };
  source.addEventListener("recommendation", () => { user(); });
}

// --- items ---------------------------------------------------------------------------
async function item() {
  document.getElementById("item-id").textContent = ident;
  const answer = await getJSON("/api/items/" + encodeURIComponent(ident));
  const d = answer.body;
  if (answer.status !== 200) { status(d.error || "error " + answer.status, true); return; }
  status("answered by " + d.worker);
  const consumed = d.counts.consumed;
  cards([
    ["times recommended", num(d.counts.recommended), "times-recommended"],
    ["times consumed", num(Object.values(consumed).reduce((a, b) => a + b, 0)), "times-consumed"],
    ["in the served index", d.in_index ? "yes" : "no", "in-index"],
    ...Object.entries(consumed).map(([type, n]) => [type + " events", num(n)]),
  ]);
  table("metadata", ["field", "value"], Object.entries(d.item).map(([k, v]) =>
    row([k, typeof v === "string" ? v : JSON.stringify(v)])));
  const similar = d.similar ? d.similar.items : [];
  table("similar-items", ["item", "title", "score"],
        similar.map(s => row([itemLink(s.item_id), s.title || "–", numCell(s.score, 4)])), d.similar_error || "none");
}

// --- models --------------------------------------------------------------------------
let versionsChart = null;
async function models() {
  const answer = await getJSON("/api/models");
  const d = answer.body;
  if (answer.status !== 200) { status(d.error || "error " + answer.status, true); return; }
  status(d.versions.length + " version(s) published on model-updates");
  const serving = [...new Set(d.serving.map(s => s.model_version))];
  cards([
    ["serving", serving.join(", ") || "–", "serving-version"],
    ["versions published", num(d.versions.length), "versions-count"],
    ["experiment records", num(d.experiment_records.length)],
  ]);
  const metric = (v, name) => (v.metrics && v.metrics[name] !== undefined ? v.metrics[name] : null);
  table("versions", ["version", "published", "tower", "NDCG@10", "HR@10", "users", "items", "gate", "chosen over"],
        d.versions.slice().reverse().map(v => {
          const sel = v.selection || {};
          const gate = "passed: published" + (sel.vs_best_baseline !== undefined && sel.vs_best_baseline !== null
            ? " (" + (sel.vs_best_baseline >= 0 ? "+" : "") + (100 * sel.vs_best_baseline).toFixed(1) + "% vs " + sel.best_baseline + ")" : "");
          return row([v.version + (serving.includes(v.version) ? " (serving)" : ""), when(v.created_ms), v.tower || "–",
                      numCell(metric(v, "ndcg@10"), 4), numCell(metric(v, "hr@10"), 4), numCell(v.users), numCell(v.items),
                      gate, sel.winner ? "winner " + sel.winner : "–"], {"data-version": v.version});
        }), "no version published yet");
  const xs = d.versions.map((v, i) => i + 1);
  const data = [xs, d.versions.map(v => metric(v, "ndcg@10")), d.versions.map(v => metric(v, "hr@10"))];
  const opts = {scales: {x: {time: false}}, axes: [{label: "version (oldest first)"}, {}]};
  if (versionsChart) versionsChart.setData(data); else versionsChart = chart("chart-versions", "offline NDCG@10 and HR@10 by version", ["NDCG@10", "HR@10"], data, opts);
  const box = document.getElementById("experiments");
  if (d.experiments_error) box.replaceChildren(el("p", {class: "error"}, d.experiments_error));
  else {
    const found = d.experiments.experiments;
    box.replaceChildren(...(found.length ? found.map(x => {
      const t = el("table", {});
      t.append(el("thead", {}, el("tr", {}, ...["arm", "version", "share", "trials", "hits", "hit rate", "vs control", "p", "significant"].map(h => el("th", {}, h)))),
               el("tbody", {}, ...x.arms.map(a => row([a.arm, a.version, pct(a.share), numCell(a.trials), numCell(a.hits), pct(a.hit_rate),
                                                        a.difference === undefined ? "–" : pct(a.difference), num(a.p_value, 4),
                                                        a.significant === undefined ? "–" : (a.significant ? "yes" : "no")]))));
      const state = x.running ? "running" : "stopped" + (x.promoted ? ", promoted " + x.promoted : "");
      return el("div", {}, el("h3", {}, x.experiment + " (" + state + ")"), t);
    }) : [el("p", {}, "no experiment has been started")]));
  }
  table("trainer", ["result", "runs"], d.trainer_runs ? Object.entries(d.trainer_runs).map(([r, n]) => row([r, numCell(n)])) : [],
        d.trainer_error ? "the trainer at " + d.trainer_url + " did not answer (" + d.trainer_error + ")" : "no run yet");
}

// --- dead letters --------------------------------------------------------------------
async function deadLetters() {
  const answer = await getJSON("/api/dead-letters");
  const d = answer.body;
  if (answer.status !== 200) { status(d.error || "error " + answer.status, true); return; }
  status(d.dead_letters.length + " shown of " + num(d.read) + " read from the dead-letter topic");
  table("dead-letters", ["rejected", "reason", "detail", "from", "key", "value (prefix)"],
        d.dead_letters.map(x => row([when(x.rejected_ms), x.reason, x.detail, x.topic + "[" + x.partition + "]@" + x.offset,
                                     el("td", {class: "payload"}, x.key === null ? "null" : x.key),
                                     el("td", {class: "payload"}, x.value === null ? "null" : x.value + " (" + x.value_size + " bytes)")])),
        "no dead letter");
}

const pages = {"overview": [overview, 2000], "users": [users, 5000], "user": [user, 0], "item": [item, 0],
               "models": [models, 10000], "dead-letters": [deadLetters, 5000]};
if (pages[kind]) {
  const [load, every] = pages[kind];
  load();
  if (every) setInterval(load, every);
  if (kind === "user") watchUser();
}
