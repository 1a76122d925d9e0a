// The verification page: hash a file (or take a pasted hash), look it up, verify the receipt
// here, and show one of three outcomes — Recorded, Not found, Error. "Recorded" is shown only
// when verifyReceipt() passed every check against the anchors embedded in the page.

import { fromHex, toHex } from "./canonical.js";
import { sha256, sha256File } from "./hashes.js";
import { applyStatic, lang, setLang, t } from "./i18n.js";
import { ed25519Available, verifyReceipt } from "./verify.js";

const $ = (id) => document.getElementById(id);
const HEX64 = /^[0-9a-f]{64}$/;
const MAX_MATCHES = 8;

let anchors = null;
let cryptoOk = false;
let lastView = null; // what the result area shows, re-rendered on a language switch
let runId = 0; // a newer lookup supersedes an older one still running

// ---- small DOM helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function pad(n, w = 2) {
  return String(n).padStart(w, "0");
}

/** "YYYY-MM-DD HH:MM:SS" of ms since the epoch at a fixed UTC offset (China has no DST). */
export function formatTime(ms, offsetHours) {
  const d = new Date(ms + offsetHours * 3600 * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

function groupHex(hex, n = 8) {
  return hex.match(new RegExp(`.{1,${n}}`, "g")).join(" ");
}

function humanSize(n) {
  if (n < 1024) return t("size.bytes", { n });
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

// ---- anchors -------------------------------------------------------------------------------

function loadAnchors() {
  const node = $("consortium");
  if (!node) return null;
  try {
    const doc = JSON.parse(node.textContent);
    fromHex(doc.chain_id, 32);
    if (!Array.isArray(doc.nodes)) return null;
    return doc;
  } catch (e) {
    return null;
  }
}

function renderAnchors() {
  const body = $("anchors-body");
  body.replaceChildren();
  if (!anchors) {
    body.append(el("p", { class: "field-error", text: t("error.noanchors") }));
    return;
  }
  $("chain-name").textContent = anchors.chain_name || "";
  const dl = el("dl", { class: "facts" },
    el("dt", { text: t("anchors.chain_name") }), el("dd", { text: anchors.chain_name || "—" }),
    el("dt", { text: t("anchors.chain_id") }),
    el("dd", { class: "mono", "data-testid": "chain-id" }, groupHex(anchors.chain_id)),
    el("dt", { text: t("anchors.hash_alg") }), el("dd", { class: "mono", text: anchors.hash_alg }),
    el("dt", { text: t("anchors.quorum") }),
    el("dd", { text: t(`quorum.${anchors.receipt_quorum}`) }));
  body.append(el("p", { class: "note", text: t("anchors.note") }), dl, keyTable(anchors.nodes.map((n) => ({
    ...n, fingerprint: toHex(sha256(fromHex(n.public_key, 32))),
  })), true));
  if (anchors.hash_alg === "sm3") body.append(el("p", { class: "note", text: t("sm3.note") }));
}

function keyTable(nodes, withRole) {
  const head = el("tr", {},
    el("th", { scope: "col", text: t("field.court") }),
    el("th", { scope: "col", text: t("anchors.node") }),
    withRole ? el("th", { scope: "col", text: t("anchors.role") }) : null,
    el("th", { scope: "col", text: t("anchors.fp") }));
  const rows = nodes.map((n) => el("tr", {},
    el("td", { text: n.court }),
    el("td", { class: "mono", text: n.id }),
    withRole ? el("td", { text: t(`role.${n.role}`) }) : null,
    el("td", { class: "mono fp", title: `${t("anchors.pk")}: ${n.public_key}` },
      groupHex(n.fingerprint.slice(0, 32), 4),
      withRole ? el("span", { class: "pk" }, `${t("anchors.pk")}: ${groupHex(n.public_key, 8)}`)
        : null)));
  return el("div", { class: "table-scroll" }, el("table", { class: "keys" }, el("thead", {}, head),
    el("tbody", {}, rows)));
}

// ---- outcomes ------------------------------------------------------------------------------

function showProgress(text, pct = null) {
  $("progress").hidden = false;
  $("progress-text").textContent = text;
  const bar = $("progress-bar");
  if (pct === null) bar.removeAttribute("value");
  else bar.value = pct;
}

function hideProgress() {
  $("progress").hidden = true;
}

function downloadButton(receiptText, entryId, verified) {
  const b = el("button", { type: "button", class: verified ? "button primary" : "button",
    "data-testid": "download" }, t(verified ? "download" : "download.unverified"));
  b.addEventListener("click", () => {
    const blob = new Blob([receiptText], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: `courtledger-receipt-${entryId.slice(0, 16)}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
  return el("div", { class: "download" }, b, el("p", { class: "note", text: t("download.hint") }));
}

function checkList(checks) {
  return el("ul", { class: "checks", "data-testid": "checks" }, checks.map((c) => el("li", {
    class: c.ok ? "ok" : "bad", "data-check": c.id, "data-ok": String(c.ok),
  }, el("span", { class: "mark", "aria-hidden": "true" }, c.ok ? "✓" : "✕"),
  el("span", {},
    el("span", { class: "visually-hidden" }, `${t(c.ok ? "check.passed" : "check.failed")}: `),
    t(c.id === "consortium" && c.ok && c.detail === "0" ? "check.consortium.none" : `check.${c.id}`),
    !c.ok && c.detail ? el("span", { class: "detail", lang: "en" }, ` — ${c.detail}`) : null))));
}

function outcomeHeader(kind, icon) {
  return el("div", { class: "outcome-head" },
    el("span", { class: "icon", "aria-hidden": "true" }, icon),
    el("div", {},
      el("h2", { "data-testid": "outcome", "data-outcome": kind }, t(`outcome.${kind}`)),
      el("p", { class: "sub" }, t(`outcome.${kind}.sub`))));
}

function hashLine(view) {
  return el("p", { class: "hashline" },
    view.fileName ? el("span", { class: "file", "data-testid": "file-name" }, t("file.of", { name: view.fileName,
      size: humanSize(view.fileSize) })) : null,
    el("span", {}, t("hash.of")), el("code", { class: "mono", "data-testid": "hash" }, view.hash));
}

function renderRecorded(view) {
  const parts = [outcomeHeader("recorded", "✓"), el("p", { class: "lead", text: t("recorded.lead") }),
    hashLine(view)];
  if (view.failedCount) parts.push(el("p", { class: "note" }, t("partial", { n: view.failedCount })));
  for (const m of view.verified) {
    const f = m.result.facts;
    const rows = [
      ["field.court", f.court],
      ["field.doc_type", f.doc_type],
      ["field.doc_no", f.doc_no],
      ["field.case", f.case],
      ["field.title", f.title],
      ["field.anchored_bj", `${formatTime(f.anchored_at, 8)} (UTC+8)`],
      ["field.anchored_utc", `${formatTime(f.anchored_at, 0)} UTC`],
      ["field.height", String(f.height)],
      ["field.cosigned", t("cosigned", { k: f.signers.length, n: f.voters, q: f.quorum })],
    ].filter(([, v]) => v !== "" && v !== undefined);
    parts.push(el("section", { class: "match", "data-testid": "match" },
      el("dl", { class: "facts" }, rows.map(([k, v]) => [el("dt", { text: t(k) }),
        el("dd", { "data-field": k.slice(6) }, v)])),
      downloadButton(m.text, f.entry_id, true),
      el("h3", { text: t("checks.title") }),
      checkList(m.result.checks),
      el("h3", { text: t("keys.title") }),
      keyTable(f.signers, false),
      el("p", { class: "note" }, `${t("anchors.chain_id")}: `,
        el("code", { class: "mono" }, groupHex(f.chain_id)), ` · ${t("anchors.hash_alg")}: ${f.hash_alg}`)));
  }
  return el("div", { class: "outcome recorded" }, parts);
}

function renderNotFound(view) {
  const asOf = view.asOf || {};
  const time = Number.isSafeInteger(asOf.time)
    ? `${formatTime(asOf.time, 8)} (UTC+8) / ${formatTime(asOf.time, 0)} UTC` : "—";
  return el("div", { class: "outcome notfound" }, outcomeHeader("notfound", "?"), hashLine(view),
    el("p", { class: "lead", text: t("notfound.lead", { time, size: asOf.tree_size ?? "—" }) }),
    el("p", { class: "honest", text: t("notfound.note") }));
}

function renderError(view) {
  const parts = [outcomeHeader("error", "!")];
  if (view.hash) parts.push(hashLine(view));
  parts.push(el("p", { class: "lead", "data-testid": "error-message" }, t(view.message, view.vars || {})));
  if (view.extra) parts.push(el("p", { class: "note" }, t(view.extra)));
  for (const d of view.downloads || []) parts.push(downloadButton(d.text, d.entryId || "unverified", false));
  for (const m of view.failed || []) {
    parts.push(el("section", { class: "match" },
      el("h3", { text: t("checks.title") }), checkList(m.result.checks),
      m.text ? downloadButton(m.text, m.entryId || "unverified", false) : null));
  }
  return el("div", { class: "outcome error" }, parts);
}

function render() {
  const area = $("result");
  if (!lastView) {
    area.hidden = true;
    return;
  }
  const view = lastView;
  const node = view.kind === "recorded" ? renderRecorded(view)
    : view.kind === "notfound" ? renderNotFound(view) : renderError(view);
  area.replaceChildren(node);
  area.hidden = false;
}

function show(view, focus = true) {
  lastView = view;
  hideProgress();
  render();
  if (focus) $("result").focus({ preventScroll: false });
}

// ---- lookup --------------------------------------------------------------------------------

async function fetchJson(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store",
    credentials: "omit", referrerPolicy: "no-referrer" });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch (e) {
    body = null;
  }
  return { status: res.status, ok: res.ok, body, text };
}

function sameOrigin(url) {
  try {
    const u = new URL(url, location.href);
    return u.origin === location.origin ? u.href : null;
  } catch (e) {
    return null;
  }
}

async function lookup(hash, file = null) {
  const id = ++runId;
  const base = { hash, fileName: file ? file.name : null, fileSize: file ? file.size : 0 };
  const url = new URL(location.href);
  url.searchParams.set("h", hash);
  history.replaceState(null, "", url.pathname + url.search);
  if (!anchors) return show({ ...base, kind: "error", message: "error.noanchors" });
  showProgress(t("progress.lookup"));

  let answer;
  try {
    answer = await fetchJson(`/v1/verify/${hash}`);
  } catch (e) {
    if (id !== runId) return;
    return show({ ...base, kind: "error", message: "error.network", vars: { detail: e.message } });
  }
  if (id !== runId) return;
  if (answer.status === 503) return show({ ...base, kind: "error", message: "error.behind" });
  if (!answer.ok) {
    const detail = (answer.body && (answer.body.detail || answer.body.error)) || answer.text.slice(0, 200);
    return show({ ...base, kind: "error", message: "error.server",
      vars: { status: answer.status, detail: typeof detail === "string" ? detail : JSON.stringify(detail) } });
  }
  const body = answer.body;
  if (!body || typeof body.anchored !== "boolean" || !Array.isArray(body.matches || [])) {
    return show({ ...base, kind: "error", message: "error.badreply", vars: { detail: "anchored" } });
  }
  if (!body.anchored) return show({ ...base, kind: "notfound", asOf: body.as_of });

  // The server says it is anchored: believe nothing until a receipt verifies here.
  const expected = fromHex(hash, 32);
  const verified = [];
  const failed = [];
  const unchecked = [];
  let pending = 0;
  for (const match of (body.matches || []).slice(0, MAX_MATCHES)) {
    if (match && match.receipt_url === null) {
      pending += 1; // committed, but its checkpoint has no quorum of cosignatures yet
      continue;
    }
    const rurl = match && typeof match.receipt_url === "string" ? sameOrigin(match.receipt_url) : null;
    if (!rurl) continue;
    let r;
    try {
      r = await fetchJson(rurl);
    } catch (e) {
      failed.push({ result: { checks: [{ id: "format", ok: false, detail: e.message }] } });
      continue;
    }
    if (id !== runId) return;
    if (!r.ok || !r.body) {
      failed.push({ result: { checks: [{ id: "format", ok: false, detail: `HTTP ${r.status}` }] } });
      continue;
    }
    if (!cryptoOk) {
      // No signature checks here: offer the proof for an offline audit, claim nothing.
      unchecked.push({ text: r.text, entryId: typeof r.body.entry_id === "string" ? r.body.entry_id : "" });
      continue;
    }
    const result = await verifyReceipt(anchors, r.body, expected);
    if (id !== runId) return;
    if (result.ok) verified.push({ result, text: r.text });
    else failed.push({ result, text: r.text, entryId: typeof r.body.entry_id === "string" ? r.body.entry_id : "" });
  }
  if (!cryptoOk) {
    return show({ ...base, kind: "error", message: "error.insecure", downloads: unchecked,
      extra: globalThis.isSecureContext ? "noed25519.body" : "insecure.body" });
  }
  if (verified.length) return show({ ...base, kind: "recorded", verified, failedCount: failed.length });
  if (failed.length) return show({ ...base, kind: "error", message: "error.unverified", failed });
  if (pending) return show({ ...base, kind: "error", message: "error.pending" });
  return show({ ...base, kind: "error", message: "error.nomatch" });
}

async function onFile(file) {
  if (!file) return;
  const id = ++runId;
  $("hash-error").hidden = true;
  showProgress(t("progress.hashing", { name: file.name, pct: 0 }), 0);
  let digest;
  try {
    digest = await sha256File(file, { onProgress: (done, total) => {
      if (id !== runId) return;
      const pct = total ? Math.floor((done * 100) / total) : 100;
      showProgress(t("progress.hashing", { name: file.name, pct }), pct);
    } });
  } catch (e) {
    if (id !== runId) return;
    return show({ kind: "error", message: "error.network", vars: { detail: e.message } });
  }
  if (id !== runId) return;
  const hash = toHex(digest);
  $("hash").value = hash;
  await lookup(hash, file);
}

function onHashSubmit(ev) {
  ev.preventDefault();
  const raw = $("hash").value.trim().toLowerCase();
  const err = $("hash-error");
  if (!HEX64.test(raw)) {
    err.textContent = t("hash.invalid");
    err.hidden = false;
    $("hash").setAttribute("aria-invalid", "true");
    $("hash").focus();
    return;
  }
  err.hidden = true;
  $("hash").removeAttribute("aria-invalid");
  lookup(raw);
}

// ---- wiring --------------------------------------------------------------------------------

const PIN_KEY = "courtledger.chain_id";
let pinChange = null;

/**
 * Remember the chain id this browser saw here, and warn when it changes: trust on first use,
 * on top of the reader's comparison with the paper notice.
 */
function checkPin() {
  if (!anchors) return;
  try {
    const old = localStorage.getItem(PIN_KEY);
    if (old && old !== anchors.chain_id) pinChange = { old, new: anchors.chain_id };
    else localStorage.setItem(PIN_KEY, anchors.chain_id);
  } catch (e) {
    pinChange = null; // storage disabled: nothing to compare with
  }
}

function applyLanguage() {
  applyStatic();
  $("pin-changed").hidden = !pinChange;
  if (pinChange) {
    $("pin-body").textContent = t("pin.body", { old: groupHex(pinChange.old), new: groupHex(pinChange.new) });
  }
  $("insecure-body").textContent = t(globalThis.isSecureContext ? "noed25519.body" : "insecure.body");
  renderAnchors();
  render();
}

function wireDrop() {
  const drop = $("drop");
  const stop = (e) => { e.preventDefault(); e.stopPropagation(); };
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { stop(e); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    drop.addEventListener(type, (e) => { stop(e); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    stop(e);
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    onFile(f);
  });
  // A file dropped anywhere else must not make the browser navigate away to it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("file").addEventListener("change", (e) => onFile(e.target.files[0]));
}

async function main() {
  const params = new URLSearchParams(location.search);
  let saved = null;
  try { saved = localStorage.getItem("courtledger.lang"); } catch (e) { saved = null; }
  setLang(params.get("lang") || saved || "zh");
  anchors = loadAnchors();
  checkPin();
  applyLanguage();
  $("lang").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    try { localStorage.setItem("courtledger.lang", lang()); } catch (e) { /* private mode */ }
    applyLanguage();
  });
  $("pin-accept").addEventListener("click", () => {
    try { localStorage.setItem(PIN_KEY, anchors.chain_id); } catch (e) { /* storage disabled */ }
    pinChange = null;
    applyLanguage();
  });
  wireDrop();
  $("hash-form").addEventListener("submit", onHashSubmit);

  cryptoOk = await ed25519Available();
  $("insecure").hidden = cryptoOk;
  document.body.dataset.ready = cryptoOk ? "verify" : "no-crypto";

  const h = (params.get("h") || "").trim().toLowerCase();
  if (h) {
    $("hash").value = h;
    if (HEX64.test(h)) await lookup(h);
    else onHashSubmit(new Event("submit"));
  }
}

main();
